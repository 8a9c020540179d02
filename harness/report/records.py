"""Run records: every summary.json below a folder, as typed records (harness.records)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import ValidationError

from harness.records import EvalRecord, RunRecord, missing_fields, read_summary

# What the report reads: typed records, or summary.json dicts (with `_run_dir` where they were found).
Record = RunRecord | EvalRecord
RecordLike = RunRecord | EvalRecord | Mapping[str, object]


def as_records(records: Iterable[RecordLike]) -> list[Record]:
    """Each record typed: a dict is read as its summary.json would be (`_run_dir` becomes `run_dir`)."""
    return [r if isinstance(r, RunRecord | EvalRecord) else read_summary(r) for r in records]


def _read(path: Path) -> Record:
    try:
        record = read_summary(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    except ValidationError as e:
        missing = missing_fields(e)
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}") from e
        problem = e.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        raise ValueError(f"{path} is not a run record ({where}: {problem['msg']})") from e
    except ValueError as e:
        raise ValueError(f"{path} is not a run record ({e})") from e
    return record


def load_records(root: Path) -> list[Record]:
    """Every summary.json below `root`, oldest first; each record's `run_dir` is its directory relative to root.

    Raises ValueError naming the file when one is not JSON or not a run record (a required field missing, or a
    field of another type).
    """
    records = []
    for path in sorted(root.rglob("summary.json")):
        run_dir = path.parent.relative_to(root).as_posix() if path.parent != root else "."
        records.append(_read(path).located(run_dir))
    return sorted(records, key=lambda r: (r.finished_at or "", r.run_dir))
