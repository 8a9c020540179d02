"""Frames -> Markdown: the comparison table with its sources, the differences, the ladder and per-group detail.

`render_summary` is the table and its numbered sources; `render_detail` the differences from the published setting,
the ablation ladder and per-recipe detail (macro precision, recall and F1, per-class accuracy, early stopping,
plots); `render_markdown` both, as one report.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from urllib.parse import quote

import pandas as pd

from harness.records import RunRecord
from harness.report.frames import GROUP_KEYS, comparison_frame, fidelity_key, ladder_frames, sources_of
from harness.report.records import Record, RecordLike, as_records

COLUMNS = [
    "recipe",
    "model",
    "dataset",
    "budget",
    "reported top-1 (source)",
    "measured top-1",
    "best epoch",
    "delta",
    "verdict",
    "img/s",
    "wall time",
]
# Beyond this many classes the per-class row lists only the weakest classes.
MAX_CLASS_COLUMNS = 20
WEAKEST_CLASSES = 10
DASH = "—"


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
            "best epoch": DASH if pd.isna(row["best_mean"]) else f"{row['best_mean']:.2f}",
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


def group_label(row: pd.Series, with_model: bool = True) -> str:
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
        label = group_label(row, with_model=False)
        lines.append(f"- {label} ({_run_list(row['run_dirs'])}): " + "; ".join(row["fidelity"]))
    return lines + [""]


def _unverified_lines(records: list[Record]) -> list[str]:
    """Each recipe's settings that no primary source confirms, once per recipe (from its records)."""
    by_recipe: dict[str, list[str]] = {}
    for record in records:
        flagged = record.unverified_settings if isinstance(record, RunRecord) else []
        by_recipe.setdefault(record.recipe, list(flagged))
    flagged = {recipe: notes for recipe, notes in sorted(by_recipe.items()) if notes}
    if not flagged:
        return []
    lines = ["Published settings no primary source confirms (kept as the recipe has them, flagged UNVERIFIED):", ""]
    lines += [f"- {recipe}: " + "; ".join(notes) for recipe, notes in flagged.items()]
    return lines + [""]


def _ladder_lines(records: list[Record]) -> list[str]:
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


def _run_line(record: Record, link_base: str | None) -> str | None:
    """One run's seed, early stop and plots, or None when it recorded neither."""
    notes = []
    stopped = record.stopped_early_at_epoch if isinstance(record, RunRecord) else None
    if stopped is not None:
        notes.append(f"stopped early at epoch {stopped}")
    plots = record.plots
    if not notes and not plots:
        return None
    run_dir = record.run_dir
    seed = f"seed {record.seed}" if record.seed is not None else "seed unknown"
    images = " ".join(f"![{name}]({_link(link_base, run_dir, file)})" for name, file in plots.items())
    return f"- `{run_dir}` ({'; '.join([seed, *notes])})" + (f": {images}" if images else "")


def _hardware(record: Record) -> str | None:
    """Where a run trained, from its record: device, processes, threads, data path, precision."""
    if not record.device:
        return None
    world = 1 if record.world_size is None else record.world_size
    parts = [f"{record.device} x {world} process(es)"]
    sizes = record.world_sizes if isinstance(record, RunRecord) else []
    if len(set(sizes)) > 1:  # resumed on another process count
        parts[0] += f" (attempts on {' then '.join(map(str, sizes))} processes)"
    if record.cpu_threads_per_process and record.device.startswith("cpu"):
        parts.append(f"{record.cpu_threads_per_process} CPU threads each")
    if record.data_path:
        parts.append(f"{record.data_path} data path")
    if record.mixed_precision:
        parts.append(f"mixed precision {record.mixed_precision}")
    return ", ".join(parts)


def _detail_lines_for(row: pd.Series, runs: list[Record], link_base: str | None) -> list[str]:
    lines = []
    hardware = sorted({h for h in map(_hardware, runs) if h})
    if hardware:
        lines += [f"Trained on: {'; '.join(hardware)}.", ""]
    metrics = [("precision", row["precision"]), ("recall", row["recall"]), ("F1", row["f1"])]
    recorded = [f"{name} {value:.2f}" for name, value in metrics if not pd.isna(value)]
    if recorded:
        lines += [f"Macro {', '.join(recorded)} (mean over the runs that recorded them).", ""]
    names = next((r.class_names for r in runs if r.class_names), None)
    lines += _per_class_lines([r.per_class_accuracy for r in runs if r.per_class_accuracy], names)
    run_lines = [line for line in (_run_line(r, link_base) for r in runs) if line]
    if run_lines:
        lines += run_lines + [""]
    if not lines:
        return []
    return [f"#### {group_label(row)} ({_runs(row['n'])})", ""] + lines


def _detail_lines(records: list[Record], frame: pd.DataFrame, link_base: str | None) -> list[str]:
    lines = []
    for _, row in frame.iterrows():
        key = tuple(row[k] for k in GROUP_KEYS[:4]) + ("\n".join(row["fidelity"]),)
        runs = [r for r in records if (r.recipe, r.model, r.dataset, r.budget, fidelity_key(r)) == key]
        lines += _detail_lines_for(row, runs, link_base)
    return ["### Per-recipe detail", ""] + lines if lines else []


LAST_VS_BEST = (
    "Measured top-1 is the last epoch's, the figure compared with the reported one; best epoch is the highest "
    "epoch's top-1 (timm's train.py convention), shown and not compared."
)


def _summary_lines(frame: pd.DataFrame) -> list[str]:
    return [_markdown_table(table_frame(frame)), "", LAST_VS_BEST, "", *_sources_lines(sources_of(frame))]


def _detail_part(records: list[Record], frame: pd.DataFrame, link_base: str | None) -> list[str]:
    return (
        _difference_lines(frame)
        + _unverified_lines(records)
        + _ladder_lines(records)
        + _detail_lines(records, frame, link_base)
    )


def render_markdown(records: Iterable[RecordLike], link_base: str | None = None) -> str:
    """The Markdown report of `records` (one record is enough: a run's own report.md): the summary, then the detail.

    Plot links are `link_base/RUN_DIR/FILE`: link_base is the path from the directory the report is
    written to, to the directory the records' `_run_dir` are relative to (None: the same directory).
    """
    records = as_records(records)
    frame = comparison_frame(records)
    return "\n".join(_summary_lines(frame) + _detail_part(records, frame, link_base))


def render_summary(records: Iterable[RecordLike]) -> str:
    """The comparison table and its numbered sources."""
    return "\n".join(_summary_lines(comparison_frame(records)))


def render_detail(records: Iterable[RecordLike], link_base: str | None = None) -> str:
    """The differences from the published setting, the ablation ladder and per-recipe detail (links as above)."""
    records = as_records(records)
    frame = comparison_frame(records)
    return "\n".join(_detail_part(records, frame, link_base))
