"""Run records: every summary.json below a folder, as dicts."""

from __future__ import annotations

import json
from pathlib import Path

REQUIRED_KEYS = ("recipe", "model", "dataset", "budget", "eval_top1", "reference")


def load_records(root: Path) -> list[dict]:
    """Every summary.json below `root`, oldest first; `_run_dir` is each run's directory relative to root.

    Raises ValueError naming the file when one is not JSON or lacks a required key.
    """
    records = []
    for path in sorted(root.rglob("summary.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e})") from e
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}")
        record["_run_dir"] = path.parent.relative_to(root).as_posix() if path.parent != root else "."
        records.append(record)
    return sorted(records, key=lambda r: (r.get("finished_at", ""), r["_run_dir"]))
