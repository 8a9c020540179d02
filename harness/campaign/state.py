"""campaign.json: each run's key, status, run directory, job, launches and attempts, written atomically.

Statuses: planned (not started), running (started and not known to have ended), done (its summary.json is
complete), failed (it ended otherwise; `error` holds the last line of its error), preempted (its last attempt
stopped on a signal, with a checkpoint to resume from), cancelled (its job was cancelled, e.g. by scancel; running
the campaign again resumes it like a preempted one). A status is read back from the run's folder whenever the
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
from harness.campaign.grid import GridRun
from harness.config import ConfigError
from harness.results import atomic_write_json

STATE = "campaign.json"
LOCK = ".campaign.lock"
STATUSES = ("planned", "running", "done", "failed", "preempted", "cancelled")


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

    def ended(self, root: Path, exit_status: int | None, error: str | None, cancelled: bool = False) -> None:
        """Settle the status from the run's folder, else from how its process ended; a cancelled job's unfinished
        run is cancelled."""
        if self.launches:
            self.launches[-1] |= {"ended_at": now(), "exit_status": exit_status}
        self.observe(root)
        if cancelled and self.status != "done":
            self.status, self.error = "cancelled", None
        elif self.status == "running":
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
        if seen == "preempted" and self.status == "cancelled":  # its folder cannot tell the two apart
            seen = None
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


def merge(specs: list[GridRun], previous: dict[str, RunState]) -> list[RunState]:
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


class Held(Exception):
    """The lock is held by another process; `holder` is what that process wrote in the lock file."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


class FileLock:
    """An exclusive flock on a file, for the life of a `with` block; refused at once (Held) while another process
    holds it. The holder writes `holder` into the file, for the refusal to name it."""

    def __init__(self, path: Path, holder: str):
        self.path, self.holder, self.file = path, holder, None

    def __enter__(self) -> FileLock:
        self.file = self.path.open("a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise Held(holder) from None
        self.file.truncate(0)
        self.file.write(self.holder)
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


class Lock(FileLock):
    """One campaign command at a time on a root: a second is refused while the first holds the lock."""

    def __init__(self, root: Path):
        super().__init__(root / LOCK, f"pid {os.getpid()}")

    def __enter__(self) -> Lock:
        try:
            return super().__enter__()
        except Held as e:
            raise ConfigError(f"campaign root {self.path.parent} is in use by {e.holder}; wait for it to end") from None
