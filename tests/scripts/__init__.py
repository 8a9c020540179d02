"""What the tests run as scripts (under `accelerate launch`, as a one-node SLURM cluster) and the data they write."""
