"""Frames -> data files: the comparison frame as CSV or JSON, one row per group of runs."""

from __future__ import annotations

import json
import math

import pandas as pd


def _plain(value: object) -> object:
    """A JSON-ready Python value: NaN becomes None, numpy scalars become Python numbers."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def frame_json(frame: pd.DataFrame) -> str:
    """The comparison frame as a JSON list of row objects; missing numbers are null."""
    rows = [{column: _plain(value) for column, value in row.items()} for row in frame.to_dict(orient="records")]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def frame_csv(frame: pd.DataFrame) -> str:
    """The comparison frame as CSV; the list columns (fidelity, run_dirs) are joined with '; '."""
    flat = frame.copy()
    for column in ("fidelity", "run_dirs"):
        flat[column] = flat[column].map("; ".join)
    return flat.to_csv(index=False, lineterminator="\n")
