"""Every run of a campaign planned as harness/run.py plans it, before anything starts or is submitted.

A run the harness would refuse (an unknown recipe, a bad --set, a missing dataset, a micro-batch that does not
divide the batch over the launched processes) refuses the whole campaign with the harness's own one-line reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.arguments import parse_options
from harness.campaign.grid import GridRun
from harness.campaign.spec import Campaign
from harness.config import ConfigError
from harness.data import DataError
from harness.plan import RunSpec, plan
from harness.results import check_writable as writable

SUBMITIT_INSTALL = "pip install 'recipe-harness[campaign]' (or pip install 'submitit>=1.5')"


def plan_runs(runs: list[GridRun], root: Path, processes: int, estimate: bool = False) -> list[RunSpec]:
    """The RunSpec of every run on `processes` processes, as harness/run.py plans it (with --estimate: as an
    estimate plans it); ConfigError for the first refusal."""
    specs = []
    for run in runs:
        argv = [*run.argv, "--output", str(run.output(root)), *(["--estimate"] if estimate else [])]
        try:
            spec = plan(parse_options(argv), world=processes)
        except SystemExit as e:  # the harness's one-line usage errors
            reason = str(e.code).removeprefix("error: ").removesuffix("; see --help")
            raise ConfigError(f"run {run.id}: {reason} (see recipe-harness --help)") from None
        except (ConfigError, DataError, OSError) as e:
            raise ConfigError(f"run {run.id}: {e}") from None
        specs.append(spec)
    return specs


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
