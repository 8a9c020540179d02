"""What a run's folder says about it: its run directory, whether it finished, stopped on a signal or can resume.

Each campaign run has its own --output folder (CAMPAIGN_ROOT/runs/RUN/), so the run directory harness/run.py
creates there is the newest folder holding a run.json. A finished run has a complete summary.json; a run stopped by
a signal says so in the last attempt of its attempts.json; a run with a complete checkpoint can resume.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.attempts import read_attempts, run_status
from harness.checkpoint import CheckpointError, complete_checkpoints

# The last lines of a log that say why a run failed: the harness's one-line errors and exception lines.
_ERROR_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?(error: .+|[A-Za-z_][\w.]*(?:Error|Exception|Interrupt)\b.*)$")
# Lines a launcher or the job around the run adds after the run's own error.
_LAUNCHER_LINES = ("CalledProcessError", "ChildFailedError", "torch.distributed.elastic", "RunFailed", "submitit")


def latest_run_dir(output: Path) -> Path | None:
    """The newest run directory under a run's --output folder, or None before the run created one."""
    if not output.is_dir():
        return None
    dirs = [p for p in output.iterdir() if (p / "run.json").is_file()]
    return max(dirs, key=lambda p: ((p / "run.json").stat().st_mtime, p.name), default=None)


def summary(run_dir: Path | None) -> dict | None:
    """The run's summary.json when the run finished, else None."""
    try:
        record = json.loads((run_dir / "summary.json").read_text()) if run_dir is not None else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") == "complete" else None


def attempts(run_dir: Path | None) -> list[dict]:
    """Every attempt the run recorded (started, ended, processes, why it stopped), oldest first."""
    try:
        return read_attempts(run_dir) if run_dir is not None else []
    except CheckpointError:
        return []


def resumable(run_dir: Path | None) -> bool:
    return run_dir is not None and bool(complete_checkpoints(run_dir))


def outcome(output: Path) -> str | None:
    """done or preempted as the run's folder shows it (harness.attempts.run_status); None when it does not tell."""
    run_dir = latest_run_dir(output)
    try:
        status = run_status(run_dir) if run_dir is not None else None
    except CheckpointError:
        return None
    if status == "complete":
        return "done" if summary(run_dir) is not None else None
    return "preempted" if status == "preempted" else None


def last_error_line(text: str) -> str:
    """The line of a log that says why a run failed: the harness's last one-line error, else the last exception
    line, else the last line. (accelerate 1.16's launcher repeats the run's stderr after it, as a RuntimeError.)"""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [m.group(1) for m in map(_ERROR_LINE.match, lines) if m]
    errors = [line for line in errors if not any(mark in line for mark in _LAUNCHER_LINES)]
    own = [line for line in errors if line.startswith("error: ")]
    if own or errors:
        return (own or errors)[-1]
    return lines[-1] if lines else "no output"
