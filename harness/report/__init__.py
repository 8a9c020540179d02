"""Render run records as the comparison of measured against reported numbers.

Nothing here trains or measures. The stages, one module each:

    records.py   summary.json files -> record dicts (load_records)
    frames.py    records -> pandas frames: one row per group of runs sharing a setting, verdicts, the ladder
    markdown.py  frames -> Markdown: the comparison table and sources, differences, ladder, per-recipe detail
    console.py   frames -> the rich console table
    chart.py     frames -> the comparison chart (matplotlib, through harness.plots)
    exports.py   frames -> CSV and JSON
    files.py     a folder's report.md, comparison.png and results.csv
    cli.py       python -m harness.report RUNS_DIR [--out FILE] [--format md|csv|json] [--readme README.md]
"""

from harness.report.chart import CHART_CAPTION, chart_groups, write_chart
from harness.report.cli import README_END, README_START, InputError, main
from harness.report.console import rich_table, wide_console
from harness.report.exports import frame_csv, frame_json
from harness.report.files import write_report_files
from harness.report.frames import DATA_COLUMNS, LADDER, comparison_frame, ladder_frames, runs_frame, sources_of
from harness.report.markdown import COLUMNS, render_detail, render_markdown, render_summary, table_frame
from harness.report.records import load_records

__all__ = [
    "CHART_CAPTION",
    "COLUMNS",
    "DATA_COLUMNS",
    "LADDER",
    "README_END",
    "README_START",
    "InputError",
    "chart_groups",
    "comparison_frame",
    "frame_csv",
    "frame_json",
    "ladder_frames",
    "load_records",
    "main",
    "render_detail",
    "render_markdown",
    "render_summary",
    "rich_table",
    "runs_frame",
    "sources_of",
    "table_frame",
    "wide_console",
    "write_chart",
    "write_report_files",
]
