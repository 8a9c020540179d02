"""Campaigns: a grid of runs (recipes x seeds x datasets x budgets) on this machine or a SLURM cluster, resumed
after preemption, ending in one report.

    spec.py       the campaign file (pydantic)
    grid.py       its grid of runs: ids, keys, harness/run.py options
    checks.py     every run planned by harness.run before anything starts; the executor's requirements
    state.py      campaign.json: each run's key, status, run directory, job id, launches and attempts
    rundirs.py    what a run's folder says: finished, stopped on a signal, resumable; its last error line
    launch.py     `accelerate launch harness/run.py` on this machine or on each node of a SLURM job
    executors.py  local (one run after another), slurm and submitit-local (one submitit job per run)
    jobs.py       the submitit job: accelerate on every node, requeued through submitit with --resume
    slurm.py      what SLURM says of a job: why it is ending (scontrol), whether it ended (sacct, else squeue)
    runtime.py    the MLflow store shared by the runs; the state an earlier invocation left
    plan.py       --plan: the runs, estimated device-hours and wall time
    summary.py    the statuses and the report over the finished runs
    cli.py        python -m harness.campaign FILE.yaml [--plan] [--report] [--retry-failed]
"""
