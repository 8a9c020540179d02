"""Every start of a run directory is an attempt; `RUN_DIR/attempts.json` keeps them all.

    {"attempts": [{"started_at", "ended_at", "processes", "nodes", "host", "hosts", "resumed_from",
                   "resumed_at_update", "stopped", "exit_status", "checkpoint", "trackers"}, ...]}

`stopped` is "complete", "signal SIGTERM" / "signal SIGUSR1" / "signal SIGUSR2" (stopped after writing a
checkpoint; exit status 3, continue with --resume), "error: <one line>", or null while the attempt runs and after
one killed without a chance to write (SIGKILL, a lost node). The main process writes the file atomically at the
start and at the end of each attempt.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import gather_object

from harness.checkpoint import CheckpointError, complete_checkpoints
from harness.results import atomic_write_json

ATTEMPTS = "attempts.json"


def read_attempts(run_dir: Path) -> list[dict]:
    """The attempts recorded so far (none for a run directory that predates the record)."""
    path = run_dir / ATTEMPTS
    if not path.is_file():
        return []
    try:
        attempts = json.loads(path.read_text())["attempts"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is not readable ({type(e).__name__}: {e}); move it away to resume") from None
    if not isinstance(attempts, list):
        raise CheckpointError(f"{path} holds no list of attempts; move it away to resume")
    return attempts


def run_status(run_dir: Path) -> str:
    """'complete', 'preempted' (stopped on a signal with a checkpoint), 'failed', 'unknown' (running, or killed
    without a record) or 'not started', from the run directory alone, whatever the launcher returned."""
    if (run_dir / "summary.json").is_file():
        return "complete"
    attempts = read_attempts(run_dir) if run_dir.is_dir() else []
    if not attempts:
        return "unknown" if complete_checkpoints(run_dir) else "not started"
    stopped = attempts[-1].get("stopped") or ""
    if stopped.startswith("signal "):
        return "preempted"
    return "failed" if stopped.startswith("error: ") else "unknown"


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut to `limit` characters."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class AttemptLog:
    """This attempt's entry in attempts.json (written on the main process only)."""

    def __init__(self, run_dir: Path, write: bool, earlier: list[dict], entry: dict):
        self.run_dir, self.write, self.earlier, self.entry = run_dir, write, earlier, entry

    @classmethod
    def begin(
        cls, accelerator: Accelerator, run_dir: Path, resumed_from: Path | None, trackers: dict | None = None
    ) -> AttemptLog:
        """Record the start of an attempt; every process calls it (the host names are gathered)."""
        hosts = gather_object([socket.gethostname()])
        entry = {
            "started_at": _now(),
            "ended_at": None,
            "processes": accelerator.num_processes,
            "nodes": len(set(hosts)),
            "host": hosts[0],
            "hosts": sorted(set(hosts)),
            "resumed_from": str(resumed_from) if resumed_from is not None else None,
            "resumed_at_update": None,
            "stopped": None,
            "exit_status": None,
            "checkpoint": None,
            "trackers": trackers or {},
        }
        earlier = read_attempts(run_dir) if accelerator.is_main_process else []
        log = cls(run_dir, accelerator.is_main_process, earlier, entry)
        log._save()
        return log

    @property
    def attempts(self) -> list[dict]:
        return [*self.earlier, self.entry]

    def resumed_at(self, update: int) -> None:
        self.entry["resumed_at_update"] = update
        self._save()

    def end(self, stopped: str, exit_status: int | None) -> None:
        """How the attempt ended, with the checkpoint a resume would continue from."""
        latest = complete_checkpoints(self.run_dir)
        self.entry.update(
            ended_at=_now(),
            stopped=stopped,
            exit_status=exit_status,
            checkpoint=str(latest[-1]) if latest else None,
        )
        self._save()

    def _save(self) -> None:
        if self.write:
            atomic_write_json(self.run_dir / ATTEMPTS, {"attempts": self.attempts})
