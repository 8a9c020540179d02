"""Render run records as the comparison of measured against reported numbers.

Pure functions from summary.json records to pandas frames and Markdown; nothing here trains or
measures. Usage: python -m harness.report RUNS_DIR [--out REPORT.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.results import atomic_write_text

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = [
    "recipe",
    "model",
    "dataset",
    "budget",
    "reported top-1 (source)",
    "measured top-1",
    "delta",
    "fidelity",
    "img/s",
    "wall time",
]


def load_records(root: Path) -> list[dict]:
    """Every summary.json below `root`, oldest first."""
    records = []
    for path in sorted(root.rglob("summary.json")):
        record = json.loads(path.read_text())
        record["_run_dir"] = str(path.parent.relative_to(root)) if path.parent != root else "."
        records.append(record)
    return sorted(records, key=lambda r: (r.get("finished_at", ""), r["_run_dir"]))


def _wall(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _baseline_top1(records: list[dict], record: dict) -> float | None:
    for other in records:
        if (
            other["recipe"] == "baseline"
            and other["dataset"] == record["dataset"]
            and other["budget"] == record["budget"]
        ):
            return other["eval_top1"]
    return None


def _delta(records: list[dict], record: dict) -> str:
    reported = record["reference"].get("top1")
    if reported is None:
        base = _baseline_top1(records, record)
        if base is None or record["recipe"] == "baseline":
            return "no published figure"
        return f"{record['eval_top1'] - base:+.2f} vs baseline"
    if record["fidelity"]:
        return "not comparable"
    return f"{record['eval_top1'] - reported:+.2f}"


def comparison_frame(records: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run, plus the numbered list of sources the rows cite."""
    sources: list[str] = []
    rows = []
    for record in records:
        ref = record["reference"]
        reported = "—"
        if ref.get("top1") is not None:
            if ref["source"] not in sources:
                sources.append(ref["source"])
            flag = " UNVERIFIED" if ref.get("unverified") else ""
            reported = f"{ref['top1']:.2f} [{sources.index(ref['source']) + 1}]{flag}"
        differences = record["fidelity"]
        rows.append(
            {
                "recipe": record["recipe"],
                "model": record["model"],
                "dataset": record["dataset"],
                "budget": record["budget"],
                "reported top-1 (source)": reported,
                "measured top-1": f"{record['eval_top1']:.2f}",
                "delta": _delta(records, record),
                "fidelity": f"{len(differences)} differences" if differences else "as published",
                "img/s": f"{record['train_img_per_s']:.0f}",
                "wall time": _wall(record["wall_time_s"]),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS), sources


def render_markdown(records: list[dict]) -> str:
    frame, sources = comparison_frame(records)
    lines = [frame.to_markdown(index=False, disable_numparse=True), ""]
    if sources:
        lines += ["Sources:", ""] + [f"{i}. {s}" for i, s in enumerate(sources, 1)] + [""]
    differing = [r for r in records if r["fidelity"]]
    if differing:
        lines += ["Differences from the published setting (a row with any is not comparable):", ""]
        for record in differing:
            lines.append(f"- `{record['_run_dir']}`: " + "; ".join(record["fidelity"]))
        lines.append("")
    return "\n".join(lines)


def rich_table(records: list[dict]) -> Table:
    frame, _ = comparison_frame(records)
    table = Table(title="measured vs reported")
    for column in frame.columns:
        table.add_column(column)
    for row in frame.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    return table


def wide_console() -> Console:
    """A terminal keeps its own width; a log file gets room for the whole table."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="directory holding run directories (summary.json)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here as well")
    parser.add_argument("--readme", type=Path, help="replace the table between the results markers of this file")
    args = parser.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"error: {args.runs_dir} is not a directory of runs", file=sys.stderr)
        return 2
    records = load_records(args.runs_dir)
    if not records:
        print(f"error: no summary.json found under {args.runs_dir}; run harness/run.py first", file=sys.stderr)
        return 2
    markdown = render_markdown(records)
    if args.out:
        atomic_write_text(args.out, markdown)
    if args.readme:
        text = args.readme.read_text()
        if README_START not in text or README_END not in text:
            print(f"error: {args.readme} lacks the {README_START} and {README_END} markers", file=sys.stderr)
            return 2
        head, rest = text.split(README_START, 1)
        atomic_write_text(args.readme, f"{head}{README_START}\n{markdown}{README_END}{rest.split(README_END, 1)[1]}")
    wide_console().print(rich_table(records))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
