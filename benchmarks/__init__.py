"""The benchmark scripts, each run from the repository root as `python -m benchmarks.NAME` (`benchmarks/gpu_check.sh`
runs the GPU check); what they share is in `benchmarks.common`."""
