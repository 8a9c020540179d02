"""PNG figures of a run: loss and accuracy curves per epoch, and the final confusion matrix.

Figures are drawn on a ``matplotlib.figure.Figure`` with its own Agg canvas, never through pyplot, so no
global backend or figure state is touched and concurrent calls do not share anything. Each PNG is written
atomically (temporary file, then rename), so an interrupted run leaves either the previous file or the new
one, never a truncated image.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness.results import atomic_write_bytes

CURVES = "curves.png"
CONFUSION = "confusion.png"


def unfreeze_epochs(history: list[dict]) -> list[int]:
    """Epochs whose trainable parameter count differs from the previous epoch's (a frozen part released).

    Rows without ``trainable_params`` (or with None) never mark a switch.
    """
    counts = [(row["epoch"], row.get("trainable_params")) for row in history]
    return [
        epoch
        for (_, before), (epoch, after) in zip(counts, counts[1:], strict=False)
        if before is not None and after is not None and after != before
    ]


def _save(figure: Figure, path: Path) -> None:
    """Render figure as PNG and write it atomically."""
    png = io.BytesIO()
    try:
        FigureCanvasAgg(figure).print_png(png)
    finally:
        figure.clear()
    atomic_write_bytes(path, png.getvalue())


def _series(history: list[dict], key: str) -> list[float]:
    """Values of key per row, NaN where absent or None so the line shows a gap."""
    return [math.nan if row.get(key) is None else float(row[key]) for row in history]


def _curves(history: list[dict]) -> Figure:
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = figure.subplots(1, 2)
    loss_ax.plot(epochs, _series(history, "train_loss"), marker="o", label="train")
    loss_ax.plot(epochs, _series(history, "eval_loss"), marker="o", label="eval")
    loss_ax.set(title="loss", xlabel="epoch", ylabel="loss")
    if any(row.get("train_top1") is not None for row in history):
        acc_ax.plot(epochs, _series(history, "train_top1"), marker="o", label="train top-1")
    acc_ax.plot(epochs, _series(history, "eval_top1"), marker="o", label="eval top-1")
    acc_ax.set(title="accuracy", xlabel="epoch", ylabel="top-1 (%)")
    switches = unfreeze_epochs(history)
    for ax in (loss_ax, acc_ax):
        for index, epoch in enumerate(switches):
            # The new count is first seen in this epoch, so the switch lies just before it.
            ax.axvline(epoch - 0.5, linestyle="--", color="grey", label="unfrozen" if index == 0 else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return figure


def _confusion(confusion: list[list[int]], class_names: list[str] | None) -> Figure:
    size = len(confusion)
    names = list(class_names) if class_names and len(class_names) == size else [str(i) for i in range(size)]
    figure = Figure(figsize=(max(4.5, 1.5 + 0.55 * size), max(4.0, 1.0 + 0.5 * size)), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(confusion, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=ax, label="count")
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (eval)")
    ax.set_xticks(range(size), names, rotation=45, ha="right")
    ax.set_yticks(range(size), names)
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            red, green, blue, _ = image.cmap(image.norm(count))
            luminance = 0.299 * red + 0.587 * green + 0.114 * blue
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=8, color="black" if luminance > 0.5 else "white"
            )
    return figure


def write_plots(
    run_dir: Path, history: list[dict], confusion: list[list[int]], class_names: list[str] | None = None
) -> dict[str, str]:
    """Write curves.png and confusion.png into run_dir; return the file names written, relative to run_dir.

    An empty history or confusion matrix writes no file for it and leaves its key out of the result.
    """
    run_dir = Path(run_dir)
    written: dict[str, str] = {}
    if history:
        _save(_curves(history), run_dir / CURVES)
        written["curves"] = CURVES
    if confusion and any(len(row) for row in confusion):
        _save(_confusion(confusion, class_names), run_dir / CONFUSION)
        written["confusion"] = CONFUSION
    return written


COMPARISON = "comparison.png"


def _comparison(groups: list[dict]) -> Figure:
    """Horizontal bars: each group's measured top-1 mean with its standard deviation, the reported number beside."""
    figure = Figure(figsize=(9, 1.2 + 0.55 * len(groups)), layout="constrained")
    ax = figure.subplots()
    rows = list(range(len(groups)))[::-1]  # first group on top
    means = [g["mean"] for g in groups]
    spread = [0.0 if math.isnan(g["std"]) else g["std"] for g in groups]
    ax.barh(rows, means, xerr=spread, capsize=3, color="tab:blue", alpha=0.8, label="measured mean ± std")
    reported = [(row, g["reported"]) for row, g in zip(rows, groups, strict=True) if not math.isnan(g["reported"])]
    if reported:
        ax.scatter(
            [v for _, v in reported], [r for r, _ in reported], marker="D", color="black", zorder=3, label="reported"
        )
    ax.set_yticks(rows, [g["label"] for g in groups], fontsize=8)
    ax.set(xlabel="top-1 (%)", xlim=(0, 100), title="measured vs reported top-1")
    ax.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncol=2, fontsize=8)
    return figure


def write_comparison_chart(path: Path, groups: list[dict]) -> None:
    """Write the comparison chart of `groups` (label, mean, std, reported; NaN where absent) atomically as PNG."""
    _save(_comparison(groups), Path(path))
