"""A folder's report files: report.md, comparison.png and results.csv, rendered from run records."""

from __future__ import annotations

import os
from pathlib import Path

from harness.plots import COMPARISON
from harness.report.chart import CHART_CAPTION, write_chart
from harness.report.exports import frame_csv
from harness.report.frames import comparison_frame
from harness.report.markdown import render_markdown
from harness.report.records import Record
from harness.results import atomic_write_text

REPORT = "report.md"
RESULTS_CSV = "results.csv"


def relative(target: Path, start: Path) -> str:
    """`target` as a POSIX path relative to the directory `start`."""
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def chart_markdown(chart: Path, written_in: Path) -> str:
    """The chart as a Markdown image seen from a file in `written_in`, with its caption."""
    return f"![measured vs reported top-1]({relative(chart, written_in)})\n\n{CHART_CAPTION}\n\n"


def write_report_files(directory: Path, records: list[Record], runs_dir: Path, preamble: str = "") -> list[Path]:
    """Write report.md (`preamble`, the chart, the full report), comparison.png and results.csv in `directory`.

    `records` come from `load_records(runs_dir)`; their plot links are made relative to `directory`. Without
    records only report.md is written, holding the preamble."""
    report = directory / REPORT
    if not records:
        atomic_write_text(report, preamble)
        return [report]
    frame = comparison_frame(records)
    chart, table = directory / COMPARISON, directory / RESULTS_CSV
    write_chart(chart, frame)
    atomic_write_text(table, frame_csv(frame))
    body = render_markdown(records, relative(runs_dir, directory))
    atomic_write_text(report, preamble + chart_markdown(chart, directory) + body)
    return [report, chart, table]
