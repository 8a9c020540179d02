"""The record of a finished run: summary.json, its plots, report.md and the final weights."""

from __future__ import annotations

import time
from pathlib import Path

from safetensors.torch import save_file

from harness.assemble import BuiltRun
from harness.data import (
    UNREADABLE_LOG,
    unreadable_images,
)
from harness.ema import bare_model
from harness.engine import Trainer
from harness.plots import write_plots
from harness.records import EvalRecord, RunRecord
from harness.report import render_markdown, rich_table, wide_console
from harness.results import atomic_write_text, summary_record


def write_record(
    run: BuiltRun, trainer: Trainer, final: dict, run_dir: Path, elapsed_before_s: float, attempts: list[dict]
) -> None:
    """summary.json, the plots, report.md and the final weights (main process only)."""
    summary = summary_record(run, trainer, final, elapsed_before_s + time.perf_counter() - run.wall_start)
    world_sizes = [a["processes"] for a in attempts]
    extra = dict(
        skipped_images=unreadable_images(run_dir / UNREADABLE_LOG),
        nodes=attempts[-1]["nodes"],
        world_sizes=world_sizes,
        attempts=attempts,
    )
    if len(set(world_sizes)) > 1:
        counts = " then ".join(str(n) for n in world_sizes)
        wide_console().print(f"trained over {len(attempts)} attempts on {counts} process(es) (attempts.json)")
    save_weights = run.spec.options.save_weights
    if save_weights is not None:
        weights = bare_model(run.accelerator, run.model).state_dict()
        save_file({k: v.contiguous() for k, v in weights.items()}, str(save_weights))
        extra["saved_weights"] = str(save_weights)
    summary = summary.with_fields(**extra)
    publish_record(run_dir, summary, trainer.history, run.class_names)


def publish_record(
    run_dir: Path, summary: RunRecord | EvalRecord, history: list[dict], class_names: list[str] | None
) -> None:
    """A finished record's plots, summary.json and report.md, and its row on the console (main process only)."""
    summary = summary.with_fields(plots=write_plots(run_dir, history, summary.confusion_matrix or [], class_names))
    atomic_write_text(run_dir / "summary.json", summary.to_json())
    record = summary.located(run_dir.name)
    atomic_write_text(run_dir / "report.md", render_markdown([record], link_base=".."))
    console = wide_console()
    console.print(rich_table([record]))
    console.print(f"wrote {run_dir / 'summary.json'} and {run_dir / 'report.md'}")
