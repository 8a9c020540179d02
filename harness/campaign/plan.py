"""`--plan`: every run of a campaign, and from `--estimate` of each distinct setting on the campaign's executor, the
device-hours and wall time it will take. Nothing trains. Estimates are kept under
CAMPAIGN_ROOT/estimates/EXECUTOR/SETTING/, so a second --plan reuses them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.campaign import launch, rundirs
from harness.campaign.executors import make_executor
from harness.campaign.grid import GridRun
from harness.campaign.spec import Campaign
from harness.campaign.state import RunState
from harness.config import ConfigError

ESTIMATE = "estimate.json"
ESTIMATE_JOB_MINUTES = 30
# submitit's warning before SLURM's time limit, which a requeued segment gives up (its default signal delay).
SIGNAL_DELAY_S = 90
# A time limit is refused when the warning and the start-up leave a job no time to train, and warned of when they
# take more than this share of each job.
TIGHT_SHARE = 0.5


def estimate_folder(root: Path, campaign: Campaign, spec: GridRun) -> Path:
    return root / "estimates" / campaign.executor / spec.setting


def read_estimate(folder: Path) -> dict | None:
    found = sorted(folder.rglob(ESTIMATE), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else None


def _estimate_argv(spec: GridRun, folder: Path) -> list[str]:
    return [*spec.argv, "--estimate", "--output", str(folder)]


def run_estimates(campaign: Campaign, root: Path, settings: list[GridRun], env: dict) -> dict[str, dict | str]:
    """Each setting's estimate.json (run now where none is kept), or the last line of why it failed."""
    missing = [s for s in settings if read_estimate(estimate_folder(root, campaign, s)) is None]
    if campaign.executor == "local":
        for spec in missing:
            folder = estimate_folder(root, campaign, spec)
            folder.mkdir(parents=True, exist_ok=True)
            command = launch.accelerate_command(
                _estimate_argv(spec, folder), campaign.launch.processes, port=launch.free_port(), cuda=launch.has_cuda()
            )
            print(f"timing {spec.setting} (--estimate) ...", flush=True)
            with (folder / "estimate.log").open("w") as log:
                launch.start(command, env, log).wait()
    elif missing:
        _estimate_with_submitit(campaign, root, missing, env)
    return {spec.setting: _result(root, campaign, spec) for spec in settings}


def _estimate_with_submitit(campaign: Campaign, root: Path, missing: list[GridRun], env: dict) -> None:
    from harness.campaign.jobs import estimate_job

    executor = make_executor(campaign, root)
    executor.update_parameters(timeout_min=min(ESTIMATE_JOB_MINUTES, campaign.slurm.time or ESTIMATE_JOB_MINUTES))
    jobs = []
    for spec in missing:
        folder = estimate_folder(root, campaign, spec)
        folder.mkdir(parents=True, exist_ok=True)
        executor.update_parameters(name=f"{campaign.name}.estimate.{spec.setting}")
        jobs.append(executor.submit(estimate_job, _estimate_argv(spec, folder), campaign.launch.processes, env))
        print(f"timing {spec.setting} (--estimate) as job {jobs[-1].job_id} ...", flush=True)
    for job, spec in zip(jobs, missing, strict=True):
        if job.exception() is not None:
            (estimate_folder(root, campaign, spec) / "estimate.log").write_text(f"{job.stdout()}\n{job.stderr()}")


def _result(root: Path, campaign: Campaign, spec: GridRun) -> dict | str:
    folder = estimate_folder(root, campaign, spec)
    record = read_estimate(folder)
    if record is not None:
        return record
    log = folder / "estimate.log"
    return "estimate failed: " + rundirs.last_error_line(log.read_text() if log.is_file() else "")


def startup_s(estimates: dict[str, dict | str]) -> float:
    """The longest start-up (process start to the first update) of the settings estimated so far; 0 if none was."""
    return max((e.get("startup_s") or 0.0 for e in estimates.values() if isinstance(e, dict)), default=0.0)


def kept_estimates(campaign: Campaign, root: Path, specs: list[GridRun]) -> dict[str, dict | str]:
    """The estimates --plan has kept for the campaign's settings (none run now)."""
    found = {s.setting: read_estimate(estimate_folder(root, campaign, s)) for s in specs}
    return {setting: e for setting, e in found.items() if e is not None}


def time_limit_notes(campaign: Campaign, start_s: float) -> list[str]:
    """A SLURM time limit that leaves a job no time to train once submitit's warning (SIGNAL_DELAY_S before the
    limit) and the run's start-up (`start_s`, 0 when not estimated) are taken is refused (ConfigError); one that
    leaves less than half of each job to train is warned of."""
    if campaign.executor != "slurm":
        return []
    limit_s = campaign.slurm.time * 60
    left_s = limit_s - SIGNAL_DELAY_S - start_s
    started = f" and a run takes about {start_s:.0f} s to start (--plan's estimate)" if start_s else ""
    why = f"submitit signals each job {SIGNAL_DELAY_S} s before its time limit{started}"
    enough = math.ceil((SIGNAL_DELAY_S + start_s) / TIGHT_SHARE / 60)
    if left_s <= 0:
        raise ConfigError(
            f"slurm.time={campaign.slurm.time} min leaves a job no time to train: {why}; give at least {enough} min"
        )
    if left_s < TIGHT_SHARE * limit_s:
        return [
            f"slurm.time={campaign.slurm.time} min leaves about {left_s:.0f} s of each job to train: {why}; "
            f"{enough} min or more would train at least half of each job"
        ]
    return []


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def plan_frame(specs: list[GridRun], states: list[RunState], estimates: dict) -> pd.DataFrame:
    rows = []
    for spec, state in zip(specs, states, strict=True):
        found = estimates[spec.setting]
        timed = isinstance(found, dict)
        rows.append(
            {
                "run": spec.id,
                "status": state.status,
                "device": f"{found['device']} x {found['world_size']}" if timed else found,
                "run time": duration(found["total_s"]) if timed else "",
                "device-hours": f"{found['device_hours']:.3g}" if timed else "",
                "_s": found["total_s"] if timed else math.nan,
                "_h": found["device_hours"] if timed else math.nan,
            }
        )
    return pd.DataFrame(rows)


def wall_time(campaign: Campaign, seconds: pd.Series, start_s: float = 0.0) -> str:
    """The campaign's wall time on its executor, from each remaining run's estimated time (and, on SLURM, the
    start-up each requeued job repeats)."""
    if seconds.empty:
        return "none: every run is done"
    if seconds.isna().all():
        return "unknown: no setting could be estimated"
    total = duration(seconds.sum())
    if campaign.executor == "local":
        return f"{total} one run after another on this machine"
    if campaign.executor == "submitit-local":
        return f"about {total}: the jobs run at once, sharing this machine"
    limit_s = campaign.slurm.time * 60
    segments = math.ceil(seconds.max() / max(limit_s - SIGNAL_DELAY_S - start_s, 1))
    longest = f"{duration(seconds.max())} if the cluster runs all {len(seconds)} jobs at once, {total} one at a time"
    return longest + f"; the longest run needs {segments} job(s) of the {campaign.slurm.time}-minute limit"


def print_plan(
    campaign: Campaign, path: Path, root: Path, frame: pd.DataFrame, notes: list[str], start_s: float = 0.0
) -> None:
    launch_text = f"{campaign.launch.processes} process(es) on {campaign.launch.nodes} node(s) per run"
    print(f"campaign {campaign.name} ({path}): {len(frame)} runs, executor {campaign.executor}, {launch_text}")
    shown = root.relative_to(Path.cwd()) if root.is_relative_to(Path.cwd()) else root
    print(f"root: {shown}\n")
    print(frame.drop(columns=["_s", "_h"]).to_markdown(index=False, tablefmt="simple", disable_numparse=True))
    remaining = frame[frame["status"] != "done"]
    print(
        f"\ntotal: {frame['_h'].sum():.3g} device-hours over {len(frame)} runs; still to run: {len(remaining)} runs, "
        f"{remaining['_h'].sum():.3g} device-hours, wall time {wall_time(campaign, remaining['_s'], start_s)}"
    )
    print("Times are the estimated schedules (training and evaluation), without process start-up.")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
