"""What a run's folder says about it: its run directory, whether it finished, stopped on a signal or can resume.

Each campaign run has its own --output folder (CAMPAIGN_ROOT/runs/RUN/), so the run directory harness/run.py
creates there is the newest folder holding a run.json. A finished run has a complete summary.json; a run stopped by
a signal says so in the last attempt of its attempts.json; a run with a complete checkpoint can resume.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.checkpoint import complete_checkpoints

ATTEMPTS = "attempts.json"
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


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summary(run_dir: Path | None) -> dict | None:
    """The run's summary.json when the run finished, else None."""
    record = _json(run_dir / "summary.json") if run_dir is not None else None
    return record if record and record.get("status") == "complete" else None


def attempts(run_dir: Path | None) -> list[dict]:
    """Every attempt the run recorded (started, ended, processes, why it stopped), oldest first."""
    record = _json(run_dir / ATTEMPTS) if run_dir is not None else None
    found = (record or {}).get("attempts")
    return found if isinstance(found, list) else []


def stopped_by_signal(run_dir: Path | None) -> str | None:
    """The signal that stopped the run's last attempt ("signal SIGTERM"), or None."""
    history = attempts(run_dir)
    stopped = history[-1].get("stopped") if history else None
    return stopped if isinstance(stopped, str) and stopped.startswith("signal") else None


def resumable(run_dir: Path | None) -> bool:
    return run_dir is not None and bool(complete_checkpoints(run_dir))


def outcome(output: Path) -> str | None:
    """done or preempted as the run's folder shows it; None when the folder alone does not tell."""
    run_dir = latest_run_dir(output)
    if summary(run_dir) is not None:
        return "done"
    return "preempted" if stopped_by_signal(run_dir) else None


def last_error_line(text: str) -> str:
    """The line of a log that says why a run failed: its last error line, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [m.group(1) for m in map(_ERROR_LINE.match, lines) if m]
    errors = [line for line in errors if not any(mark in line for mark in _LAUNCHER_LINES)]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "no output"
