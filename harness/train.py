"""One run: build the timm objects for a planned recipe, train through accelerate, write the record."""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from datetime import datetime, timezone

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import set_seed
from timm.data.distributed_sampler import RepeatAugSampler
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

from harness.build import (
    build_mixup,
    build_model,
    build_optimizer,
    build_scheduler,
    build_train_loss,
    build_transforms,
)
from harness.config import ConfigError, budget_limits, fidelity
from harness.data import build_datasets, dataset_info, first, make_loader
from harness.engine import NonFiniteLoss, Trainer, fit
from harness.report import render_markdown, rich_table, wide_console
from harness.results import atomic_write_json, atomic_write_text, new_run_dir, versions, write_metrics


def _wants_cuda() -> bool:
    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    return torch.cuda.is_available() and not forced_cpu


def make_accelerator(amp: bool) -> Accelerator:
    """The recipe decides mixed precision: bf16 where the GPU has it, fp16 otherwise, none on CPU."""
    precision = "no"
    if amp and _wants_cuda():
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # cpu=True also lets several CPU processes form a gloo group (accelerate's MULTI_CPU).
    return Accelerator(mixed_precision=precision, step_scheduler_with_optimizer=False, cpu=not _wants_cuda())


def set_cpu_threads(accelerator: Accelerator, requested: int | None) -> int:
    """Threads per process on CPU. `accelerate launch` without a config sets OMP_NUM_THREADS=1, which
    halves a 2-core machine; the harness shares the cores among the processes on this machine instead."""
    if accelerator.device.type != "cpu":
        return torch.get_num_threads()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    threads = requested or max(1, len(os.sched_getaffinity(0)) // local_processes)
    torch.set_num_threads(threads)
    return threads


def _train_loader(dataset, recipe, accelerator: Accelerator, per_device: int, workers: int, seed: int):
    """Repeated augmentation shards by itself (timm's RepeatAugSampler); otherwise accelerate shards."""
    if recipe.aug_repeats > 0:
        sampler = RepeatAugSampler(
            dataset,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
            num_repeats=recipe.aug_repeats,
        )
        loader = DataLoader(
            dataset, batch_size=per_device, sampler=sampler, drop_last=True, num_workers=workers,
            pin_memory=_wants_cuda(), persistent_workers=workers > 0,
        )
        return prepare_data_loader(loader, accelerator.device, num_processes=1, process_index=0)
    loader = make_loader(dataset, per_device, True, workers, seed, _wants_cuda())
    return accelerator.prepare(loader)


def train(plan, args: argparse.Namespace) -> int:
    wall_start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    recipe = plan.recipe
    accelerator = make_accelerator(recipe.amp)
    cpu_threads = set_cpu_threads(accelerator, args.threads)
    set_seed(args.seed)
    world = accelerator.num_processes
    if recipe.batch_size % world:
        raise ConfigError(f"global batch {recipe.batch_size} does not split over {world} processes")
    per_device = recipe.batch_size // world
    if (recipe.mixup > 0 or recipe.cutmix > 0) and per_device % 2:
        raise ConfigError(f"Mixup/CutMix need an even per-process batch, got {per_device}")
    changes = {"amp": accelerator.mixed_precision != "no"}
    if world == 1 and recipe.aug_repeats:
        changes["aug_repeats"] = 0  # timm applies repeated augmentation only when distributed
    recipe = dataclasses.replace(recipe, **changes)

    info = dataset_info(plan.dataset)
    train_tf, eval_tf = build_transforms(recipe, info.channels)
    train_set, eval_set, num_classes = build_datasets(plan.dataset, args.data_dir, args.download, train_tf, eval_tf)
    full_train, full_eval = len(train_set), len(eval_set)
    limits = budget_limits(plan.budget)
    train_set, eval_set = first(train_set, limits.max_train_samples), first(eval_set, limits.max_eval_samples)
    if len(train_set) < recipe.batch_size:
        raise ConfigError(f"global batch {recipe.batch_size} is larger than the {len(train_set)} training images")

    extra = [f"train images: first {len(train_set)} of {full_train}"] if len(train_set) < full_train else []
    if len(eval_set) < full_eval:
        extra.append(f"eval images: first {len(eval_set)} of {full_eval}")
    differences = fidelity(plan.published, recipe, extra)

    model = build_model(recipe, num_classes)
    optimizer = build_optimizer(recipe, model)
    train_loader = _train_loader(train_set, recipe, accelerator, per_device, args.workers, args.seed)
    eval_loader = make_loader(eval_set, per_device, False, args.workers, args.seed, _wants_cuda())
    scheduler = build_scheduler(recipe, optimizer, len(train_loader))
    model, optimizer, eval_loader = accelerator.prepare(model, optimizer, eval_loader)
    mixup = build_mixup(recipe, num_classes)
    trainer = Trainer(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loss=build_train_loss(recipe, mixup is not None),
        train_loader=train_loader,
        eval_loader=eval_loader,
        num_classes=num_classes,
        global_batch_size=recipe.batch_size,
        mixup=mixup,
        clip_grad=recipe.clip_grad,
        ema=ModelEmaV3(accelerator.unwrap_model(model), decay=recipe.model_ema_decay) if recipe.model_ema else None,
    )

    console = wide_console()
    run_dir = None
    if accelerator.is_main_process:
        for notice in plan.notices:
            console.print(f"[yellow]note:[/] {notice}")
        run_dir = new_run_dir(args.output, recipe.name, plan.dataset, plan.budget, args.seed)
        atomic_write_json(run_dir / "recipe.json", recipe.to_dict())
        console.print(f"run directory: {run_dir}")

    def on_epoch_end(row: dict, _eval: dict) -> None:
        if run_dir is not None:
            write_metrics(run_dir / "metrics.csv", trainer.history)

    try:
        final = fit(trainer, recipe.epochs, on_epoch_end)
    except NonFiniteLoss as e:
        console.print(f"error: {e}", style="red")
        return 2
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return 0

    speeds = [row["train_img_per_s"] for row in trainer.history]
    summary = {
        "status": "complete",
        "recipe": recipe.name,
        "model": recipe.model,
        "dataset": plan.dataset,
        "budget": plan.budget,
        "epochs_run": len(trainer.history),
        "eval_top1": final["eval_top1"],
        "eval_top5": final["eval_top5"],
        "eval_loss": final["eval_loss"],
        "eval_samples": final["eval_samples"],
        "eval_precision": final["eval_precision"],
        "eval_recall": final["eval_recall"],
        "eval_f1": final["eval_f1"],
        "per_class_accuracy": final["per_class_accuracy"],
        "confusion_matrix": final["confusion_matrix"],
        "train_samples": len(train_set),
        # The first epoch carries start-up cost; the median of the rest is the steady speed.
        "train_img_per_s": statistics.median(speeds[1:] or speeds),
        "wall_time_s": time.perf_counter() - wall_start,
        "world_size": world,
        "global_batch_size": recipe.batch_size,
        "per_device_batch_size": per_device,
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "cpu_threads_per_process": cpu_threads,
        "seed": args.seed,
        "reference": dataclasses.asdict(plan.published.reference),
        "tolerance": plan.published.tolerance,
        "fidelity": differences,
        "lr_rescale": plan.lr_rescale,
        "notices": plan.notices,
        "versions": versions(),
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    record = {**summary, "_run_dir": run_dir.name}
    atomic_write_text(run_dir / "report.md", render_markdown([record]))
    console.print(rich_table([record]))
    console.print(f"wrote {run_dir / 'summary.json'} and {run_dir / 'report.md'}")
    return 0
