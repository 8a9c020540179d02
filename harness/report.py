"""Render run records as the comparison of measured against reported numbers.

Pure functions from summary.json records to pandas frames and Markdown; nothing here trains or
measures. Runs that share a setting (recipe, model, dataset, budget and the list of differences from
the published setting) form one group, typically the same recipe run with several seeds; every table
row is a group, with the mean and sample standard deviation over its runs.

The Markdown report has four parts: the comparison table with its numbered sources, the differences
from the published setting, the ablation ladder (baseline -> cosine -> mixup_cutmix -> rsb_a3) where
at least two of its steps ran on the same dataset and budget, and per-group detail (macro precision,
recall and F1, per-class accuracy, early stopping, plots).

It also draws the comparison chart (RUNS_DIR/comparison.png, or --chart FILE): each group's measured top-1 mean
with its spread beside the reported number.

Usage: python -m harness.report RUNS_DIR [--out FILE] [--format md|csv|json] [--readme README.md] [--chart FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import posixpath
import sys
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.plots import COMPARISON, write_comparison_chart
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
    "verdict",
    "img/s",
    "wall time",
]
GROUP_KEYS = ["recipe", "model", "dataset", "budget", "fidelity_key"]
# The data columns of comparison_frame, in the order csv and json write them.
DATA_COLUMNS = [
    "recipe",
    "model",
    "dataset",
    "budget",
    "n",
    "mean",
    "std",
    "reported",
    "delta",
    "tolerance",
    "verdict",
    "baseline_gain",
    "source_no",
    "source",
    "unverified",
    "img_per_s",
    "wall_time_s",
    "precision",
    "recall",
    "f1",
    "fidelity",
    "run_dirs",
]
LADDER = ["baseline", "cosine", "mixup_cutmix", "rsb_a3"]
DEFAULT_TOLERANCE = 0.5
# Differences this small are float noise: 77.6 - 78.1 is -0.50000000000001 and still within 0.5.
EPSILON = 1e-9
# Beyond this many classes the per-class row lists only the weakest classes.
MAX_CLASS_COLUMNS = 20
WEAKEST_CLASSES = 10
REQUIRED_KEYS = ("recipe", "model", "dataset", "budget", "eval_top1", "reference")
DASH = "—"
CHART_CAPTION = (
    "Bars: measured top-1 mean over a group's runs, whiskers one standard deviation; diamonds: the reported "
    "number. * marks a group that differs from the published setting (not comparable to it)."
)
# Differences the console table shows under a "not comparable" row; the rest are in each run's summary.json.
CONSOLE_DIFFERENCES = 3
EVAL_ONLY_MARK = " (evaluation only)"


# --------------------------------------------------------------------------- loading


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


# --------------------------------------------------------------------------- aggregation


def _number(value: object) -> float:
    return math.nan if value is None else float(value)


def _or(value: object, default: object) -> object:
    return default if value is None else value


def _fidelity_key(record: dict) -> str:
    return "\n".join(record.get("fidelity") or [])


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run with the flat columns the aggregation needs."""
    rows = []
    for record in records:
        ref = record.get("reference") or {}
        rows.append(
            {
                # Weights evaluated without training (--eval-only) form their own row, marked as such.
                "recipe": record["recipe"] + (EVAL_ONLY_MARK if record.get("eval_only") else ""),
                "model": record["model"],
                "dataset": record["dataset"],
                "budget": record["budget"],
                "fidelity_key": _fidelity_key(record),
                "eval_top1": _number(record["eval_top1"]),
                "train_img_per_s": _number(record.get("train_img_per_s")),
                "wall_time_s": _number(record.get("wall_time_s")),
                "eval_precision": _number(record.get("eval_precision")),
                "eval_recall": _number(record.get("eval_recall")),
                "eval_f1": _number(record.get("eval_f1")),
                "tolerance": _number(_or(record.get("tolerance"), DEFAULT_TOLERANCE)),
                "reported": _number(ref.get("top1")),
                "source": ref.get("source") or "",
                "unverified": bool(ref.get("unverified")),
                "run_dir": record.get("_run_dir", "."),
            }
        )
    return pd.DataFrame(rows)


def _aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    frame = runs.groupby(GROUP_KEYS, sort=True).agg(
        n=("eval_top1", "count"),
        mean=("eval_top1", "mean"),
        std=("eval_top1", "std"),
        reported=("reported", "first"),
        tolerance=("tolerance", "first"),
        source=("source", "first"),
        unverified=("unverified", "any"),
        img_per_s=("train_img_per_s", "mean"),
        wall_time_s=("wall_time_s", "mean"),
        precision=("eval_precision", "mean"),
        recall=("eval_recall", "mean"),
        f1=("eval_f1", "mean"),
        run_dirs=("run_dir", list),
    )
    frame = frame.reset_index()
    frame["fidelity"] = [key.split("\n") if key else [] for key in frame["fidelity_key"]]
    return frame


def _with_baseline_gain(frame: pd.DataFrame) -> pd.DataFrame:
    """Gain of each group without a published figure over the baseline recipe's group on its dataset and budget."""
    baseline = (
        frame[frame["recipe"] == "baseline"]
        .groupby(["dataset", "budget"], sort=False)["mean"]
        .first()
        .rename("baseline_mean")
        .reset_index()
    )
    frame = frame.merge(baseline, on=["dataset", "budget"], how="left")
    wants_gain = frame["reported"].isna() & (frame["recipe"] != "baseline")
    frame["baseline_gain"] = (frame["mean"] - frame["baseline_mean"]).where(wants_gain)
    return frame.drop(columns="baseline_mean")


def _verdict(row: pd.Series) -> str:
    if pd.isna(row["reported"]):
        return "no published figure"
    if row["fidelity"]:
        return "not comparable"
    delta = abs(row["delta"])
    if delta <= row["tolerance"] + EPSILON:
        return "reproduced"
    if row["n"] >= 2 and delta <= 2 * row["std"] + EPSILON:
        return "within noise"
    return "below" if row["delta"] < 0 else "above"


def _number_sources(frame: pd.DataFrame) -> list[int | None]:
    """Footnote number of each row's source, in order of first citation; None where nothing is reported."""
    sources: list[str] = []
    numbers: list[int | None] = []
    for source, reported in zip(frame["source"], frame["reported"], strict=True):
        if pd.isna(reported):
            numbers.append(None)
            continue
        if source not in sources:
            sources.append(source)
        numbers.append(sources.index(source) + 1)
    return numbers


def comparison_frame(records: list[dict]) -> pd.DataFrame:
    """One row per group of runs sharing a setting, with numeric columns (DATA_COLUMNS).

    mean and std are over the group's runs (std is the sample standard deviation, NaN for one run);
    delta is mean - reported; baseline_gain is set only for groups without a published figure.
    """
    if not records:
        return pd.DataFrame(columns=DATA_COLUMNS)
    frame = _with_baseline_gain(_aggregate(runs_frame(records)))
    frame["delta"] = frame["mean"] - frame["reported"]
    frame["verdict"] = frame.apply(_verdict, axis=1)
    frame["source_no"] = pd.Series(_number_sources(frame), index=frame.index, dtype=object)
    frame["source"] = frame["source"].where(frame["source_no"].notna(), None)
    return frame[DATA_COLUMNS]


def sources_of(frame: pd.DataFrame) -> list[str]:
    """The cited sources in footnote order."""
    cited = frame.dropna(subset=["source_no"]).drop_duplicates("source_no").sort_values("source_no")
    return list(cited["source"])


def ladder_frames(records: list[dict]) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (dataset, budget) with at least two ladder recipes: step, recipe, n, mean and gain over the step before."""
    runs = runs_frame(records)
    runs = runs[runs["recipe"].isin(LADDER)]
    ladders = {}
    for (dataset, budget), part in runs.groupby(["dataset", "budget"], sort=True):
        steps = part.groupby("recipe")["eval_top1"].agg(n="count", mean="mean").reset_index()
        if len(steps) < 2:
            continue
        steps["step"] = steps["recipe"].map(LADDER.index) + 1
        steps = steps.sort_values("step").reset_index(drop=True)
        steps["gain"] = steps["mean"].diff()
        ladders[(dataset, budget)] = steps[["step", "recipe", "n", "mean", "gain"]]
    return ladders


# --------------------------------------------------------------------------- formatting


def _wall(seconds: float) -> str:
    if pd.isna(seconds):
        return DASH
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _measured(row: pd.Series) -> str:
    if row["n"] >= 2:
        return f"{row['mean']:.2f} ± {row['std']:.2f} ({row['n']})"
    return f"{row['mean']:.2f} ({row['n']})"


def _reported(row: pd.Series) -> str:
    if pd.isna(row["reported"]):
        return DASH
    flag = " UNVERIFIED" if row["unverified"] else ""
    return f"{row['reported']:.2f} [{row['source_no']}]{flag}"


def _delta(row: pd.Series) -> str:
    """The signed gap to the published figure; for a step without one, the gain over baseline."""
    if pd.isna(row["reported"]):
        return DASH if pd.isna(row["baseline_gain"]) else f"{row['baseline_gain']:+.2f} vs baseline"
    if row["verdict"] == "not comparable":
        return DASH
    return f"{row['delta']:+.2f}"


def table_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison frame as the displayed strings (COLUMNS)."""
    rows = [
        {
            "recipe": row["recipe"],
            "model": row["model"],
            "dataset": row["dataset"],
            "budget": row["budget"],
            "reported top-1 (source)": _reported(row),
            "measured top-1": _measured(row),
            "delta": _delta(row),
            "verdict": row["verdict"],
            "img/s": DASH if pd.isna(row["img_per_s"]) else f"{row['img_per_s']:.0f}",
            "wall time": _wall(row["wall_time_s"]),
        }
        for _, row in frame.iterrows()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def _group_label(row: pd.Series, with_model: bool = True) -> str:
    parts = [row["recipe"], row["model"], row["dataset"], row["budget"]]
    return " · ".join(parts if with_model else [parts[0], *parts[2:]])


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _run_list(run_dirs: list[str]) -> str:
    return ", ".join(f"`{d}`" for d in run_dirs)


def _sources_lines(sources: list[str]) -> list[str]:
    if not sources:
        return []
    return ["Sources:", ""] + [f"{i}. {s}" for i, s in enumerate(sources, 1)] + [""]


def _difference_lines(frame: pd.DataFrame) -> list[str]:
    differing = frame[frame["fidelity"].map(bool)]
    if differing.empty:
        return []
    lines = ["Differences from the published setting (a row with any is not comparable):", ""]
    for _, row in differing.iterrows():
        label = _group_label(row, with_model=False)
        lines.append(f"- {label} ({_run_list(row['run_dirs'])}): " + "; ".join(row["fidelity"]))
    return lines + [""]


def _ladder_lines(records: list[dict]) -> list[str]:
    ladders = ladder_frames(records)
    if not ladders:
        return []
    lines = ["### Ablation ladder", ""]
    for (dataset, budget), steps in ladders.items():
        shown = pd.DataFrame(
            {
                "step": steps["step"].astype(str),
                "recipe": steps["recipe"],
                "measured top-1 mean": steps["mean"].map("{:.2f}".format),
                "gain vs previous step": steps["gain"].map(lambda g: DASH if pd.isna(g) else f"{g:+.2f}"),
            }
        )
        lines += [f"{dataset}, {budget} budget:", "", _markdown_table(shown), ""]
    return lines


def _per_class_lines(accuracies: list[list[float]], class_names: list[str] | None = None) -> list[str]:
    """Mean accuracy per class over the runs, as a one-row table; many classes show only the weakest."""
    if not accuracies:
        return []
    means = pd.DataFrame(accuracies).mean(axis=0)
    if class_names and len(class_names) == len(means):
        means.index = class_names
    title = "per-class accuracy"
    if len(means) > MAX_CLASS_COLUMNS:
        means = means.sort_values(kind="stable").head(WEAKEST_CLASSES)
        title = f"weakest {WEAKEST_CLASSES} of {len(accuracies[0])} classes"
    shown = pd.DataFrame([["accuracy", *[f"{v:.2f}" for v in means]]], columns=["class", *map(str, means.index)])
    return [f"Mean {title} over {_runs(len(accuracies))}:", "", _markdown_table(shown), ""]


def _link(link_base: str | None, run_dir: str, name: str) -> str:
    return quote(posixpath.normpath(posixpath.join(link_base or ".", run_dir, name)))


def _run_line(record: dict, link_base: str | None) -> str | None:
    """One run's seed, early stop and plots, or None when it recorded neither."""
    notes = []
    if record.get("stopped_early_at_epoch") is not None:
        notes.append(f"stopped early at epoch {record['stopped_early_at_epoch']}")
    plots = record.get("plots") or {}
    if not notes and not plots:
        return None
    run_dir = record.get("_run_dir", ".")
    seed = f"seed {record['seed']}" if record.get("seed") is not None else "seed unknown"
    images = " ".join(f"![{name}]({_link(link_base, run_dir, file)})" for name, file in plots.items())
    return f"- `{run_dir}` ({'; '.join([seed, *notes])})" + (f": {images}" if images else "")


def _hardware(record: dict) -> str | None:
    """Where a run trained, from its record: device, processes, threads, data path, precision."""
    if not record.get("device"):
        return None
    parts = [f"{record['device']} x {record.get('world_size', 1)} process(es)"]
    sizes = record.get("world_sizes") or []
    if len(set(sizes)) > 1:  # resumed on another process count
        parts[0] += f" (attempts on {' then '.join(map(str, sizes))} processes)"
    if record.get("cpu_threads_per_process") and str(record["device"]).startswith("cpu"):
        parts.append(f"{record['cpu_threads_per_process']} CPU threads each")
    if record.get("data_path"):
        parts.append(f"{record['data_path']} data path")
    if record.get("mixed_precision"):
        parts.append(f"mixed precision {record['mixed_precision']}")
    return ", ".join(parts)


def _detail_lines_for(row: pd.Series, runs: list[dict], link_base: str | None) -> list[str]:
    lines = []
    hardware = sorted({h for h in map(_hardware, runs) if h})
    if hardware:
        lines += [f"Trained on: {'; '.join(hardware)}.", ""]
    metrics = [("precision", row["precision"]), ("recall", row["recall"]), ("F1", row["f1"])]
    recorded = [f"{name} {value:.2f}" for name, value in metrics if not pd.isna(value)]
    if recorded:
        lines += [f"Macro {', '.join(recorded)} (mean over the runs that recorded them).", ""]
    names = next((r["class_names"] for r in runs if r.get("class_names")), None)
    lines += _per_class_lines([r["per_class_accuracy"] for r in runs if r.get("per_class_accuracy")], names)
    run_lines = [line for line in (_run_line(r, link_base) for r in runs) if line]
    if run_lines:
        lines += run_lines + [""]
    if not lines:
        return []
    return [f"#### {_group_label(row)} ({_runs(row['n'])})", ""] + lines


def _detail_lines(records: list[dict], frame: pd.DataFrame, link_base: str | None) -> list[str]:
    lines = []
    for _, row in frame.iterrows():
        key = tuple(row[k] for k in GROUP_KEYS[:4]) + ("\n".join(row["fidelity"]),)
        runs = [r for r in records if (*(r[k] for k in GROUP_KEYS[:4]), _fidelity_key(r)) == key]
        lines += _detail_lines_for(row, runs, link_base)
    return ["### Per-recipe detail", ""] + lines if lines else []


def render_markdown(records: list[dict], link_base: str | None = None) -> str:
    """The Markdown report of `records` (one record is enough: a run's own report.md).

    Plot links are `link_base/RUN_DIR/FILE`: link_base is the path from the directory the report is
    written to, to the directory the records' `_run_dir` are relative to (None: the same directory).
    """
    frame = comparison_frame(records)
    lines = [_markdown_table(table_frame(frame)), ""]
    lines += _sources_lines(sources_of(frame))
    lines += _difference_lines(frame)
    lines += _ladder_lines(records)
    lines += _detail_lines(records, frame, link_base)
    return "\n".join(lines)


def chart_groups(frame: pd.DataFrame) -> list[dict]:
    """What the comparison chart draws per group: a label, the measured mean and spread, the reported number."""
    return [
        {
            "label": f"{_group_label(row)} (n={row['n']})" + (" *" if row["fidelity"] else ""),
            "mean": float(row["mean"]),
            "std": float(row["std"]),
            "reported": float(row["reported"]),
        }
        for _, row in frame.iterrows()
    ]


def rich_table(records: list[dict], differences_shown: int = CONSOLE_DIFFERENCES) -> Table:
    """The comparison table; under a "not comparable" row, its first few differences and where the rest are."""
    table = Table(title="measured vs reported")
    frame = comparison_frame(records)
    shown = table_frame(frame)
    for column in shown.columns:
        table.add_column(column)
    blank = [""] * (len(shown.columns) - 1)
    for (_, row), cells in zip(frame.iterrows(), shown.itertuples(index=False), strict=True):
        table.add_row(*[str(v) for v in cells])
        if row["verdict"] != "not comparable":
            continue
        for line in row["fidelity"][:differences_shown]:
            table.add_row(f"  {line}", *blank, style="dim")
        rest = len(row["fidelity"]) - differences_shown
        if rest > 0:
            table.add_row(f"  ... {rest} more in summary.json (fidelity)", *blank, style="dim italic")
    return table


def wide_console() -> Console:
    """A terminal keeps its own width; a log file gets room for the whole table."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


# --------------------------------------------------------------------------- data output


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


# --------------------------------------------------------------------------- command line


class InputError(Exception):
    """Bad input the command line reports in one line."""


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def _readme_text(readme: Path, markdown: str) -> str:
    try:
        text = readme.read_text()
    except OSError as e:
        raise InputError(f"cannot read {readme}: {e.strerror or e}") from e
    if README_START not in text or README_END not in text:
        raise InputError(f"{readme} lacks the {README_START} and {README_END} markers")
    head, rest = text.split(README_START, 1)
    return f"{head}{README_START}\n{markdown}{README_END}{rest.split(README_END, 1)[1]}"


def _load(runs_dir: Path) -> list[dict]:
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
    parser = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="directory holding run directories (summary.json)")
    parser.add_argument("--out", type=Path, help="write the report (in --format) here as well")
    parser.add_argument(
        "--format",
        choices=["md", "csv", "json"],
        default="md",
        help="md: the Markdown report (default); csv, json: the comparison table's data, one row per group",
    )
    parser.add_argument("--readme", type=Path, help="replace the Markdown between the results markers of this file")
    parser.add_argument(
        "--chart", type=Path, help=f"where to write the comparison chart (default RUNS_DIR/{COMPARISON})"
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    records = _load(args.runs_dir)
    chart = args.chart or args.runs_dir / COMPARISON
    readme = None
    if args.readme:
        # The README's results section opens with the chart.
        picture = f"![measured vs reported top-1]({_relative(chart, args.readme.parent)})\n\n{CHART_CAPTION}\n\n"
        markdown = render_markdown(records, _relative(args.runs_dir, args.readme.parent))
        readme = _readme_text(args.readme, picture + markdown)
    if args.format == "md":
        printed = render_markdown(records)
        written = render_markdown(records, _relative(args.runs_dir, args.out.parent)) if args.out else printed
    else:
        frame = comparison_frame(records)
        printed = written = frame_csv(frame) if args.format == "csv" else frame_json(frame)
    try:
        write_comparison_chart(chart, chart_groups(comparison_frame(records)))
        if args.out:
            atomic_write_text(args.out, written)
        if readme is not None:
            atomic_write_text(args.readme, readme)
    except OSError as e:
        raise InputError(f"cannot write {e.filename or args.out}: {e.strerror or e}") from e
    if args.format == "md":
        wide_console().print(rich_table(records))
        print(f"chart: {chart}")
    print(printed, end="\n" if args.format == "md" else "")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
