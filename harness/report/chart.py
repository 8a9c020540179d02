"""Frames -> the comparison chart: each group's measured top-1 mean with its spread beside the reported number."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.plots import write_comparison_chart
from harness.report.markdown import group_label

CHART_CAPTION = (
    "Bars: measured top-1 mean over a group's runs, whiskers one standard deviation; diamonds: the reported "
    "number. * marks a group that differs from the published setting (not comparable to it)."
)


def chart_groups(frame: pd.DataFrame) -> list[dict]:
    """What the comparison chart draws per group: a label, the measured mean and spread, the reported number."""
    return [
        {
            "label": f"{group_label(row)} (n={row['n']})" + (" *" if row["fidelity"] else ""),
            "mean": float(row["mean"]),
            "std": float(row["std"]),
            "reported": float(row["reported"]),
        }
        for _, row in frame.iterrows()
    ]


def write_chart(path: Path, frame: pd.DataFrame) -> None:
    """The comparison chart of `frame`'s groups as a PNG at `path` (written atomically)."""
    write_comparison_chart(path, chart_groups(frame))
