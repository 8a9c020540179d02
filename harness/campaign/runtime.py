"""What a campaign sets up before its runs start: the trackers' shared store, and the state left by an earlier
invocation (runs it started that have ended since, or that are still running)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness.campaign import executors
from harness.campaign.spec import Campaign
from harness.campaign.state import RunState
from harness.trackers import parse_log_with

MLFLOW_DB = "mlflow.db"


def run_env(campaign: Campaign, root: Path, trackers: bool = True) -> dict[str, str]:
    """Environment for every run: with MLflow, one SQLite store for the campaign (MLFLOW_TRACKING_URI, unless the
    environment already names one), its experiment (the campaign's project) created once, before runs race to."""
    if not trackers or "mlflow" not in parse_log_with(campaign.log_with):
        return {}
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / MLFLOW_DB}"
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = campaign.project or campaign.name
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=(root / "mlartifacts").as_uri())
    return {"MLFLOW_TRACKING_URI": uri}


def reconcile(campaign: Campaign, root: Path, states: list[RunState]) -> list[tuple[RunState, object]]:
    """Bring each run's status up to date with its folder and its job; return the jobs still running (slurm)."""
    running = []
    for state in states:
        if state.status != "running":
            state.observe(root)
            continue
        last = state.launches[-1] if state.launches else {}
        executor = last.get("executor", "local")
        if executor == "local" or not state.job_id:
            state.interrupted(root, "the campaign command ended while this run was running")
            continue
        job = executors.rebuild_job(executor, root, state.job_id)
        while executor == "submitit-local" and executors.job_running(job):
            time.sleep(2)  # a local job outlives the command that submitted it: wait for it
        if executors.job_running(job):
            running.append((state, job))
        else:
            executors.settle(state, job, root)
    return running
