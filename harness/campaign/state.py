"""campaign.json: each run's key, status, run directory, job, launches and attempts, written atomically.

Statuses: planned (not started), running (started and not known to have ended), done (its summary.json is
complete), failed (it ended otherwise; `error` holds the last line of its error), preempted (its last attempt
stopped on a signal, with a checkpoint to resume from). A status is read back from the run's folder whenever the
folder can tell, since `accelerate launch` of several processes reports a worker's exit as its own failure.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness.campaign import rundirs
from harness.campaign.grid import RunSpec
from harness.config import ConfigError
from harness.results import atomic_write_json

STATE = "campaign.json"
LOCK = ".campaign.lock"
STATUSES = ("planned", "running", "done", "failed", "preempted")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunState:
    id: str
    key: dict
    status: str = "planned"
    run_dir: str | None = None  # relative to the campaign root
    job_id: str | None = None
    logs: list[str] = field(default_factory=list)
    launches: list[dict] = field(default_factory=list)  # what the campaign started: when, how, with what outcome
    attempts: list[dict] = field(default_factory=list)  # the run's own attempts.json
    error: str | None = None
    eval_top1: float | None = None

    def launched(self, executor: str, job_id: str | None, resumed_from: str | None, logs: list[str]) -> None:
        self.status, self.job_id, self.logs, self.error = "running", job_id, logs, None
        launch = {"started_at": now(), "executor": executor, "job_id": job_id, "resumed_from": resumed_from}
        self.launches.append(launch)

    def ended(self, root: Path, exit_status: int | None, error: str | None) -> None:
        """Settle the status from the run's folder, else from how its process ended."""
        if self.launches:
            self.launches[-1] |= {"ended_at": now(), "exit_status": exit_status}
        self.observe(root)
        if self.status == "running":
            recorded = self.attempts[-1].get("stopped") if self.attempts else None
            self.status = "failed"
            if isinstance(recorded, str) and recorded.startswith("error: "):
                error = recorded  # the run's own account of its failure
            self.error = error or f"exit status {exit_status} without a finished record"
        if self.launches:
            self.launches[-1]["outcome"] = self.status

    def observe(self, root: Path) -> None:
        """Read the run directory, its attempts and, when the folder tells, the status."""
        run_dir = rundirs.latest_run_dir(root / "runs" / self.id)
        self.run_dir = run_dir.relative_to(root).as_posix() if run_dir else None
        self.attempts = rundirs.attempts(run_dir)
        record = rundirs.summary(run_dir)
        self.eval_top1 = record["eval_top1"] if record else None
        seen = rundirs.outcome(root / "runs" / self.id)
        if seen is not None:
            self.status = seen
            self.error = None if seen == "done" else self.error
        elif self.status == "done":  # its record is gone
            self.status = "planned"

    def interrupted(self, root: Path, reason: str) -> None:
        """A run whose process is gone without a word: resumable from its checkpoint, else to start again."""
        self.observe(root)
        if self.status == "running":
            resumable = rundirs.resumable(rundirs.latest_run_dir(root / "runs" / self.id))
            self.status, self.error = ("preempted" if resumable else "planned"), reason


def read_state(root: Path) -> dict[str, RunState]:
    path = root / STATE
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text())["runs"]
        known = {f.name for f in dataclasses.fields(RunState)}
        return {run["id"]: RunState(**{k: v for k, v in run.items() if k in known}) for run in runs}
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is corrupted ({e}); move it away to start the campaign's state afresh") from None


def merge(specs: list[RunSpec], previous: dict[str, RunState]) -> list[RunState]:
    """The grid's runs, each with what the campaign knew of it; a changed key starts afresh."""
    states = []
    for spec in specs:
        known = previous.get(spec.id)
        states.append(known if known is not None and known.key == spec.key else RunState(spec.id, spec.key))
    return states


def write_state(root: Path, header: dict, states: list[RunState]) -> None:
    counts = {status: sum(s.status == status for s in states) for status in STATUSES}
    runs = [dataclasses.asdict(s) for s in states]
    atomic_write_json(root / STATE, {**header, "updated_at": now(), "counts": counts, "runs": runs})


class Lock:
    """One campaign command at a time on a root: a second is refused while the first holds the lock."""

    def __init__(self, root: Path):
        self.path = root / LOCK
        self.file = None

    def __enter__(self) -> Lock:
        self.file = self.path.open("a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(f"campaign root {self.path.parent} is in use by {holder}; wait for it to end") from None
        self.file.truncate(0)
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
