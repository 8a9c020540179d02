"""Every run of a campaign planned as harness/run.py plans it, before anything starts or is submitted.

A run the harness would refuse (an unknown recipe, a bad --set, a missing dataset, a micro-batch that does not
divide the batch over the launched processes) refuses the whole campaign with the harness's own one-line reason.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from harness.campaign.grid import RunSpec
from harness.campaign.spec import Campaign
from harness.config import ConfigError, budget_limits
from harness.data import DataError
from harness.results import check_writable as writable

SUBMITIT_INSTALL = "pip install 'recipe-harness[campaign]' (or pip install 'submitit>=1.5')"


@contextmanager
def launched_with(processes: int):
    """WORLD_SIZE as `accelerate launch` sets it, for the checks that depend on the number of processes."""
    before = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = str(processes)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("WORLD_SIZE", None)
        else:
            os.environ["WORLD_SIZE"] = before


def plan_runs(runs: list[RunSpec], root: Path, processes: int, estimate: bool = False) -> list:
    """harness.run's Plan of every run (with --estimate: as an estimate plans it); ConfigError for the first refusal."""
    from harness.run import parse_args, plan_run

    plans = []
    with launched_with(processes):
        for run in runs:
            argv = [*run.argv, "--output", str(run.output(root)), *(["--estimate"] if estimate else [])]
            try:
                plan = plan_run(parse_args(argv))
                budget_limits(plan.budget)
            except SystemExit as e:  # the harness's one-line usage errors
                reason = str(e.code).removeprefix("error: ").removesuffix("; see --help")
                raise ConfigError(f"run {run.id}: {reason} (see recipe-harness --help)") from None
            except (ConfigError, DataError, OSError) as e:
                raise ConfigError(f"run {run.id}: {e}") from None
            plans.append(plan)
    return plans


def check_executor(campaign: Campaign) -> None:
    """submitit for the submitit executors, and SLURM's srun for slurm; refused with what to do otherwise."""
    if campaign.executor == "local":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"executor {campaign.executor} needs submitit, which is not installed: {SUBMITIT_INSTALL}"
        ) from None
    if campaign.executor == "slurm" and shutil.which("srun") is None:
        raise ConfigError(
            "executor slurm: SLURM's srun is not on this machine; submit from the cluster's login node, "
            "or try the campaign here with --executor submitit-local"
        )


def check_writable(root: Path) -> None:
    try:
        writable(root)
    except OSError as e:
        message = str(e).replace("output directory", "campaign root").replace("--output DIR", "output")
        raise ConfigError(message) from None
