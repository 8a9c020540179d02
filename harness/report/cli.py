"""The comparison of every run record in a folder, printed and written (`python -m harness.report RUNS_DIR`).

Usage: recipe-harness-report RUNS_DIR [--out FILE] [--format md|csv|json] [--readme README.md [--detail FILE]]
       [--chart FILE]                                     (or python -m harness.report ...)

The chart (comparison.png) goes beside the page that shows it: beside the full report with --readme (RUNS_DIR by
default), beside FILE with --out, else into RUNS_DIR; --chart FILE puts it elsewhere.

With --readme, the Markdown between the README's results markers becomes the chart, the comparison table and its
sources, and a link to the full report (the differences, the ladder and per-recipe detail), written to
RUNS_DIR/README.md (or --detail FILE).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.options import OneLineErrorParser
from harness.plots import COMPARISON
from harness.report.chart import write_chart
from harness.report.console import rich_table, wide_console
from harness.report.exports import frame_csv, frame_json
from harness.report.files import chart_markdown, relative
from harness.report.frames import comparison_frame
from harness.report.markdown import render_markdown, render_summary
from harness.report.records import Record, load_records
from harness.results import atomic_write_text

PROG = "recipe-harness-report"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
DETAIL_NAME = "README.md"
DETAIL_TITLE = "# Results: measured vs reported, run by run"


class InputError(Exception):
    """Bad input the command line reports in one line."""


def _readme_text(readme: Path, markdown: str) -> str:
    try:
        text = readme.read_text()
    except OSError as e:
        raise InputError(f"cannot read {readme}: {e.strerror or e}") from e
    if README_START not in text or README_END not in text:
        raise InputError(f"{readme} lacks the {README_START} and {README_END} markers")
    head, rest = text.split(README_START, 1)
    return f"{head}{README_START}\n{markdown}{README_END}{rest.split(README_END, 1)[1]}"


def _load(runs_dir: Path) -> list[Record]:
    if not runs_dir.is_dir():
        raise InputError(f"{runs_dir} is not a directory of runs")
    try:
        records = load_records(runs_dir)
    except ValueError as e:
        raise InputError(str(e)) from e
    if not records:
        raise InputError(f"no summary.json found under {runs_dir}; run harness/run.py first")
    return records


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="directory holding run directories (summary.json)")
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write the report (in --format) here as well, and the chart beside it"
    )
    parser.add_argument(
        "--format",
        choices=["md", "csv", "json"],
        default="md",
        help="md: the Markdown report (default); csv, json: the comparison table's data, one row per group",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        help="replace the Markdown between the results markers of this file with the chart, the table and a link "
        "to the full report",
    )
    parser.add_argument(
        "--detail", type=Path, help=f"with --readme: where the full report goes (default RUNS_DIR/{DETAIL_NAME})"
    )
    parser.add_argument(
        "--chart",
        type=Path,
        metavar="FILE",
        help=f"where to write the comparison chart (default {COMPARISON} beside the --readme detail page, else "
        "beside --out FILE, else in RUNS_DIR)",
    )
    return parser


def chart_path(args: argparse.Namespace) -> Path:
    """Beside the page that shows the chart: the --readme detail page (which the README's link follows), else
    --out FILE; only a bare report writes it into the folder of records it reads."""
    if args.chart is not None:
        return args.chart
    if args.readme:
        return (args.detail or args.runs_dir / DETAIL_NAME).parent / COMPARISON
    if args.out is not None:
        return args.out.parent / COMPARISON
    return args.runs_dir / COMPARISON


def readme_pages(records: list[Record], runs_dir: Path, readme: Path, detail: Path, chart: Path) -> tuple[str, str]:
    """The README's results section (chart, table, sources, link) and the full report that it links to."""
    link = relative(detail, readme.parent)
    section = (
        chart_markdown(chart, readme.parent)
        + render_summary(records)
        + f"\nDifferences from the published setting, the ablation ladder and per-recipe detail (precision, recall, "
        f"F1, per-class accuracy, curves): [{link}]({link}).\n"
    )
    command = f"python -m harness.report {runs_dir.as_posix()} --readme {readme.as_posix()}"
    page = (
        f"{DETAIL_TITLE}\n\nRendered from the run records in this folder by `{command}`; nothing here is typed by "
        f"hand.\n\n{chart_markdown(chart, detail.parent)}{render_markdown(records, relative(runs_dir, detail.parent))}"
    )
    return section, page


def _run(args: argparse.Namespace) -> None:
    records = _load(args.runs_dir)
    chart = chart_path(args)
    pages = {}
    if args.readme:
        detail = args.detail or args.runs_dir / DETAIL_NAME
        section, pages[detail] = readme_pages(records, args.runs_dir, args.readme, detail, chart)
        pages[args.readme] = _readme_text(args.readme, section)
    if args.format == "md":
        printed = render_markdown(records)
        written = render_markdown(records, relative(args.runs_dir, args.out.parent)) if args.out else printed
    else:
        frame = comparison_frame(records)
        printed = written = frame_csv(frame) if args.format == "csv" else frame_json(frame)
    if args.out:
        pages[args.out] = written
    try:
        write_chart(chart, comparison_frame(records))
        for path, text in pages.items():
            atomic_write_text(path, text)
    except OSError as e:
        raise InputError(f"cannot write {e.filename or args.out}: {e.strerror or e}") from e
    if args.format == "md":
        wide_console().print(rich_table(records))
        print(f"chart: {chart}")
    print(printed, end="\n" if args.format == "md" else "")


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # a usage error: one line, exit 2
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise
    try:
        _run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
