"""The run record: a directory per run with recipe.json, metrics.csv and summary.json.

Every file is written atomically (temporary file, then rename), so a run killed at any moment
leaves either the previous complete file or none, never a truncated one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.data.sources import dataset_source
from harness.plan import RunSpec
from harness.records import Estimate, EvalRecord, RunRecord
from recipes import Recipe

METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "eval_loss",
    "eval_top1",
    "eval_top5",
    "lr",
    "epoch_time_s",
    "train_img_per_s",
]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_metrics(path: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    columns = METRIC_COLUMNS + [c for c in frame.columns if c not in METRIC_COLUMNS]
    atomic_write_text(path, frame.reindex(columns=columns).to_csv(index=False))


def check_writable(output: Path) -> None:
    """Raise OSError with a readable message if runs cannot be written under `output`. Creates nothing: the
    directory appears with the first run directory, so input refused later leaves no trace."""
    existing = output.absolute()
    while not existing.exists():
        existing = existing.parent
    if existing != output.absolute() and not existing.is_dir():
        raise OSError(f"cannot create output directory {output}: {existing} is not a directory")
    if not existing.is_dir():
        raise OSError(f"output directory {output} is not a directory; pass --output DIR")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OSError(f"output directory {output} is not writable; pass --output DIR with a writable DIR")


def new_run_dir(output: Path, recipe: str, dataset: str, budget: str, seed: int) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = output / f"{recipe}-{dataset.replace('/', '--')}-{budget}-seed{seed}-{stamp}"  # hfds/ORG/NAME
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's VmHWM belongs to this program alone; getrusage's peak survives exec and would include the
    launching process."""
    try:
        status = Path("/proc/self/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(kib) / 1024
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


def versions() -> dict:
    import accelerate
    import timm
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "accelerate": accelerate.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def tracked_top1(row: dict) -> float:
    """The epoch's top-1 that train.py hands its plateau schedule and its checkpoint saver (the best): the EMA's when
    the EMA is evaluated, else the model's."""
    return row.get("eval_top1_ema", row["eval_top1"])


def summary_record(run, trainer, final: dict, wall_time_s: float) -> RunRecord:
    """summary.json of a finished run: what ran, on what, how fast, how well, and how it differs from the paper.

    `run` is harness.assemble's BuiltRun, `trainer` the engine's Trainer after fitting, `final` the last evaluation."""
    recipe, spec, options, history = run.recipe, run.spec, run.spec.options, trainer.history
    speeds = [row["train_img_per_s"] for row in history]
    # The first best, as timm's saver keeps it: by the EMA's top-1 when the EMA is evaluated.
    best = max(history, key=tracked_top1) if history else None
    eval_keys = (
        "eval_top1",
        "eval_top5",
        "eval_loss",
        "eval_samples",
        "eval_precision",
        "eval_recall",
        "eval_f1",
        "per_class_accuracy",
    )
    return RunRecord(
        status="complete",
        recipe=recipe.name,
        model=recipe.model,
        dataset=spec.dataset,
        # Where the data was read from: format, root, each split's files and sizes (harness.data.sources).
        source=dataset_source(run.datasets[1]),
        budget=spec.budget,
        epochs_run=len(history),
        stopped_early_at_epoch=trainer.stopped_early_at_epoch,
        train_top1=history[-1]["train_top1"] if history else None,
        train_loss=history[-1]["train_loss"] if history else None,
        **{k: final[k] for k in eval_keys},
        # eval_top1 is the last epoch's and the one compared with the publication; timm's train.py reports its best.
        compared_top1="last epoch",
        best_eval_top1=tracked_top1(best) if best else None,
        best_of="ema" if recipe.model_ema else "model",
        best_epoch=best["epoch"] if best else None,
        class_names=run.class_names,
        confusion_matrix=final["confusion_matrix"],
        train_samples=run.train_samples,
        # The first epoch carries start-up cost; the median of the rest is the steady speed.
        train_img_per_s=statistics.median(speeds[1:] or speeds),
        wall_time_s=wall_time_s,
        world_size=run.world,
        global_batch_size=recipe.batch_size,
        per_device_batch_size=run.batches.per_process,
        micro_batch_size=run.batches.micro_batch,
        grad_accum_steps=run.batches.accum_steps,
        mixed_precision=run.accelerator.mixed_precision,
        data_path=run.data_path,
        # The per-image path's workers hand over uint8; conversion, normalisation and erasing run on the device.
        worker_output="uint8" if run.data_path == "workers" else None,
        augment_on=run.augment_on,
        # Where training images were decoded (None: the in-memory path, or images not read from files), and the
        # distinct training images decoded in the workers instead of on the device, by reason.
        decode_on=run.decode_on,
        decode_fallbacks=run.decode_fallbacks,
        channels_last=True,
        compiled=options.compile,
        peak_rss_mb=peak_rss_mb(),
        device=str(run.accelerator.device),
        cpu_threads_per_process=run.cpu_threads,
        seed=options.seed,
        reference=dataclasses.asdict(spec.published.reference),
        tolerance=spec.published.tolerance,
        fidelity=run.differences,
        # the published recipe's settings no primary source confirms (its notes that say UNVERIFIED)
        unverified_settings=[note for note in spec.published.notes if "UNVERIFIED" in note],
        lr_rescale=spec.lr_rescale,
        notices=[*spec.notices, *run.notes],
        resumed=spec.resume_dir is not None,
        pretrained_file=str(options.pretrained_file) if options.pretrained_file else None,
        weights=run.weights,
        versions=versions(),
        started_at=run.started_at,
        finished_at=now_iso(),
    )


def now_iso() -> str:
    """The UTC time to the second, ISO 8601 (the records' timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def eval_record(
    spec: RunSpec,
    recipe: Recipe,
    final: dict,
    *,
    source: dict | None,
    class_names: list[str] | None,
    wall_time_s: float,
    accelerator,
    per_device: int,
    data_path: str,
    cpu_threads: int,
    seed: int,
    fidelity: list[str],
    weights: dict | None,
    started_at: str,
) -> EvalRecord:
    """summary.json of `--eval-only`: `final` is engine.evaluate's result, `recipe` the evaluated recipe."""
    return EvalRecord(
        status="complete",
        eval_only=True,
        recipe=recipe.name,
        model=recipe.model,
        dataset=spec.dataset,
        source=source,
        budget=spec.budget,
        **final,
        class_names=class_names,
        wall_time_s=wall_time_s,
        world_size=accelerator.num_processes,
        global_batch_size=recipe.batch_size,
        per_device_batch_size=per_device,
        mixed_precision=accelerator.mixed_precision,
        data_path=data_path,
        worker_output="uint8" if data_path == "workers" else None,
        channels_last=True,
        peak_rss_mb=peak_rss_mb(),
        device=str(accelerator.device),
        cpu_threads_per_process=cpu_threads,
        seed=seed,
        reference=dataclasses.asdict(spec.published.reference),
        tolerance=spec.published.tolerance,
        fidelity=fidelity,
        notices=list(spec.notices),
        weights=weights,
        versions=versions(),
        started_at=started_at,
        finished_at=now_iso(),
    )


def estimate_record(
    spec: RunSpec, run, projected: dict, *, startup_s: float | None, peak_memory_mb: float, warmup: int, timed: int
) -> Estimate:
    """estimate.json: `run` is harness.assemble's BuiltRun, `projected` estimate.projection's result."""
    return Estimate(
        recipe=run.recipe.name,
        model=run.recipe.model,
        dataset=spec.dataset,
        budget=spec.budget,
        synthetic_data=spec.synthetic_data,
        **projected,
        startup_s=startup_s,
        peak_memory_mb_per_device=peak_memory_mb,
        world_size=run.world,
        global_batch_size=run.batches.global_batch,
        micro_batch_size=run.batches.micro_batch,
        grad_accum_steps=run.batches.accum_steps,
        data_path=run.data_path,
        mixed_precision=run.accelerator.mixed_precision,
        device=str(run.accelerator.device),
        cpu_threads_per_process=run.cpu_threads,
        warmup_updates=warmup,
        timed_updates=timed,
        fidelity=run.differences,
        notices=[*spec.notices, *run.notes],
        versions=versions(),
        created_at=now_iso(),
    )
