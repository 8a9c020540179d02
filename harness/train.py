"""One run: build the timm objects for a planned recipe, train through accelerate, write the record."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    TorchDynamoPlugin,
    broadcast_object_list,
    set_seed,
)
from safetensors.torch import save_file
from timm.data.distributed_sampler import RepeatAugSampler
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

from harness import trackers
from harness.build import (
    build_mixup,
    build_optimizer,
    build_scheduler,
    build_train_loss,
    build_transforms,
    frozen_parameters,
)
from harness.checkpoint import (
    CheckpointError,
    checkpoint_root,
    complete_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from harness.config import ConfigError, budget_limits, fidelity
from harness.data import (
    UNREADABLE_LOG,
    DataError,
    build_datasets,
    check_unreadable,
    collate_readable,
    dataset_info,
    first,
    log_unreadable_to,
    make_loader,
    unreadable_images,
)
from harness.engine import NonFiniteLoss, Trainer, fit
from harness.memory import memory_loaders, unsupported
from harness.plots import write_plots
from harness.recipe_files import recipe_yaml
from harness.report import render_markdown, rich_table, wide_console
from harness.results import (
    atomic_write_json,
    atomic_write_text,
    new_run_dir,
    peak_rss_mb,
    versions,
    write_metrics,
)
from harness.weights import model_with_weights


def _wants_cuda() -> bool:
    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    return torch.cuda.is_available() and not forced_cpu


def make_accelerator(
    amp: bool, freezes: bool = False, compile_model: bool = False, log_with: list[str] | None = None
) -> Accelerator:
    """The recipe decides mixed precision: bf16 where the GPU has it, fp16 otherwise, none on CPU.

    A recipe that freezes parameters for a while needs DDP to tolerate parameters without gradients;
    `compile_model` has `prepare` wrap the model in torch.compile (inductor)."""
    precision = "no"
    if amp and _wants_cuda():
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # cpu=True also lets several CPU processes form a gloo group (accelerate's MULTI_CPU).
    # A seedable sampler makes each epoch's order a function of (seed, epoch), so a resume repeats it.
    return Accelerator(
        mixed_precision=precision,
        step_scheduler_with_optimizer=False,
        cpu=not _wants_cuda(),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)] if freezes else None,
        dynamo_plugin=TorchDynamoPlugin(backend="inductor") if compile_model else None,
        # Trackers that need a directory get the run directory once it exists (harness.trackers.start).
        log_with=log_with or None,
        project_dir="." if log_with else None,
    )


def set_cpu_threads(accelerator: Accelerator, requested: int | None) -> int:
    """Threads per process on CPU. `accelerate launch` without a config sets OMP_NUM_THREADS=1, which
    halves a 2-core machine; the harness shares the cores among the processes on this machine instead."""
    if accelerator.device.type != "cpu":
        return torch.get_num_threads()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    threads = requested or max(1, len(os.sched_getaffinity(0)) // local_processes)
    torch.set_num_threads(threads)
    return threads


def choose_data_path(requested: str, recipe, dataset: str, world: int) -> str:
    """'memory' or 'workers'; `--loader memory` on a recipe it cannot run was refused while planning."""
    if requested == "auto":
        return "workers" if unsupported(recipe, dataset, world) else "memory"
    return requested


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
            pin_memory=_wants_cuda(), persistent_workers=workers > 0, collate_fn=partial(collate_readable, train=True),
        )
        return prepare_data_loader(loader, accelerator.device, num_processes=1, process_index=0)
    loader = make_loader(dataset, per_device, True, workers, seed, _wants_cuda())
    return accelerator.prepare(loader)


def _normalised(recipe_dict: dict) -> dict:
    return json.loads(json.dumps(recipe_dict))


def check_resumable(run_dir: Path, recipe, seed: int, force: bool) -> None:
    """Refuse to continue a run with a different recipe or seed unless forced; refuse without a checkpoint."""
    saved = _normalised(json.loads((run_dir / "recipe.json").read_text()))
    now = _normalised(recipe.to_dict())
    diff = [f"{k}: {saved.get(k)} -> {now.get(k)}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    saved_seed = json.loads((run_dir / "run.json").read_text()).get("seed")
    if saved_seed != seed:
        diff.append(f"seed: {saved_seed} -> {seed}")
    if diff and not force:
        raise ConfigError(f"--resume {run_dir} would change the run ({'; '.join(diff)}); add --force to accept")
    if not complete_checkpoints(run_dir):
        raise CheckpointError(f"{run_dir} has no complete checkpoint to resume from; start a new run instead")


def _shared_run_dir(accelerator: Accelerator, plan, args: argparse.Namespace, recipe) -> Path:
    """The main process creates (or reuses) the run directory and tells the others where it is."""
    path = [None]
    if accelerator.is_main_process:
        if plan.resume_dir is not None:
            run_dir = plan.resume_dir
        else:
            run_dir = new_run_dir(args.output, recipe.name, plan.dataset, plan.budget, args.seed)
            atomic_write_json(run_dir / "run.json", plan.saved_args)
        atomic_write_json(run_dir / "recipe.json", recipe.to_dict())
        atomic_write_text(run_dir / "recipe.yaml", recipe_yaml(recipe, plan.published_source))
        path = [str(run_dir)]
    return Path(broadcast_object_list(path)[0])


def train(plan, args: argparse.Namespace) -> int:
    wall_start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    recipe = plan.recipe
    accelerator = make_accelerator(
        recipe.amp, freezes=bool(recipe.freeze), compile_model=args.compile, log_with=plan.log_with
    )
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
    if plan.resume_dir is not None:
        check_resumable(plan.resume_dir, recipe, args.seed, args.force)

    info = dataset_info(plan.dataset)
    data_path = choose_data_path(args.loader, recipe, plan.dataset, world)
    train_tf, eval_tf = build_transforms(recipe, info.channels) if data_path == "workers" else (None, None)
    train_set, eval_set, num_classes = build_datasets(plan.dataset, args.data_dir, args.download, train_tf, eval_tf)
    full_train, full_eval = len(train_set), len(eval_set)
    class_names = [str(c) for c in getattr(train_set, "classes", [])] or None
    limits = budget_limits(plan.budget)
    train_set, eval_set = first(train_set, limits.max_train_samples), first(eval_set, limits.max_eval_samples)
    if len(train_set) < recipe.batch_size:
        raise ConfigError(f"global batch {recipe.batch_size} is larger than the {len(train_set)} training images")

    extra = [f"train images: first {len(train_set)} of {full_train}"] if len(train_set) < full_train else []
    if len(eval_set) < full_eval:
        extra.append(f"eval images: first {len(eval_set)} of {full_eval}")
    if args.pretrained_file is not None:
        extra.append(f"weights: initialised from {args.pretrained_file}")
    differences = fidelity(plan.published, recipe, extra)

    model, weights = model_with_weights(recipe, num_classes, args.pretrained_file, keep_head=False)
    # The optimizer is built before anything is frozen, so it holds every parameter and needs no rebuild later.
    optimizer = build_optimizer(recipe, model)
    try:
        frozen = frozen_parameters(model, recipe.freeze)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    model = model.to(memory_format=torch.channels_last)  # faster on CPU too (ResNet-18, 28 px: 749 vs 581 img/s)
    if data_path == "memory":
        train_loader, eval_loader = memory_loaders(
            recipe, train_set, eval_set, per_device, args.seed, accelerator.device, accelerator.process_index, world
        )
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        train_loader = _train_loader(train_set, recipe, accelerator, per_device, args.workers, args.seed)
        eval_loader = make_loader(eval_set, per_device, False, args.workers, args.seed, _wants_cuda())
        model, optimizer, eval_loader = accelerator.prepare(model, optimizer, eval_loader)
    scheduler = build_scheduler(recipe, optimizer, len(train_loader))
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
        frozen=frozen,
        freeze_epochs=recipe.freeze_epochs,
        early_stop_patience=recipe.early_stop_patience,
        early_stop_min_delta=recipe.early_stop_min_delta,
    )

    console = wide_console()
    run_dir = _shared_run_dir(accelerator, plan, args, recipe)
    if accelerator.is_main_process:
        for notice in plan.notices:
            console.print(f"[yellow]note:[/] {notice}")
        console.print(f"run directory: {run_dir}")
    log_unreadable_to([train_set, eval_set], run_dir / UNREADABLE_LOG)
    trackers.start(accelerator, run_dir, args.project, recipe)
    trainer.on_log = trackers.train_logger(accelerator)

    start = {"epoch": 0, "step_in_epoch": 0, "epoch_loss_sum": 0.0, "elapsed_s": 0.0}
    if plan.resume_dir is not None:
        latest = complete_checkpoints(run_dir)[-1]
        start = load_checkpoint(accelerator, latest, scheduler, trainer.ema)
        trainer.num_updates, trainer.history = start["num_updates"], start["history"]
        (run_dir / "summary.json").unlink(missing_ok=True)  # the run is no longer finished
        if accelerator.is_main_process:
            console.print(f"resuming from {latest} (epoch {start['epoch'] + 1}, step {start['step_in_epoch']})")

    def checkpoint(epoch: int, step_in_epoch: int, epoch_loss_sum: float) -> None:
        progress = {
            "recipe": recipe.name,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "epoch_loss_sum": epoch_loss_sum,
            "num_updates": trainer.num_updates,
            "scheduler": scheduler.state_dict(),
            "history": trainer.history,
            "elapsed_s": start["elapsed_s"] + time.perf_counter() - wall_start,
        }
        save_checkpoint(accelerator, run_dir, progress, trainer.ema, args.keep)

    def on_epoch_end(row: dict, _eval: dict) -> None:
        if accelerator.is_main_process:
            write_metrics(run_dir / "metrics.csv", trainer.history)
        trackers.log_epoch(accelerator, row, trainer.num_updates)
        checkpoint(row["epoch"], 0, 0.0)
        try:
            check_unreadable(run_dir / UNREADABLE_LOG, {"train": len(train_set), "val": len(eval_set)})
        except DataError as e:
            raise DataError(f"{e}; the last checkpoint is kept under {checkpoint_root(run_dir)}") from None

    trainer.save_every, trainer.on_checkpoint = args.save_every, checkpoint
    try:
        final = fit(
            trainer, recipe.epochs, on_epoch_end, start["epoch"], start["step_in_epoch"], start["epoch_loss_sum"]
        )
    except NonFiniteLoss as e:
        if accelerator.is_main_process:
            print(f"error: {e}; the last good checkpoint is kept under {checkpoint_root(run_dir)}", file=sys.stderr)
        return 2
    finally:
        trackers.finish(accelerator)
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
        "stopped_early_at_epoch": trainer.stopped_early_at_epoch,
        "train_top1": trainer.history[-1]["train_top1"] if trainer.history else None,
        "train_loss": trainer.history[-1]["train_loss"] if trainer.history else None,
        "eval_top1": final["eval_top1"],
        "eval_top5": final["eval_top5"],
        "eval_loss": final["eval_loss"],
        "eval_samples": final["eval_samples"],
        "eval_precision": final["eval_precision"],
        "eval_recall": final["eval_recall"],
        "eval_f1": final["eval_f1"],
        "per_class_accuracy": final["per_class_accuracy"],
        "class_names": class_names,
        "confusion_matrix": final["confusion_matrix"],
        "train_samples": len(train_set),
        # The first epoch carries start-up cost; the median of the rest is the steady speed.
        "train_img_per_s": statistics.median(speeds[1:] or speeds),
        "wall_time_s": start["elapsed_s"] + time.perf_counter() - wall_start,
        "world_size": world,
        "global_batch_size": recipe.batch_size,
        "per_device_batch_size": per_device,
        "mixed_precision": accelerator.mixed_precision,
        "data_path": data_path,
        "channels_last": True,
        "compiled": args.compile,
        "peak_rss_mb": peak_rss_mb(),
        "device": str(accelerator.device),
        "cpu_threads_per_process": cpu_threads,
        "seed": args.seed,
        "reference": dataclasses.asdict(plan.published.reference),
        "tolerance": plan.published.tolerance,
        "fidelity": differences,
        "lr_rescale": plan.lr_rescale,
        "notices": plan.notices,
        "resumed": plan.resume_dir is not None,
        "pretrained_file": str(args.pretrained_file) if args.pretrained_file else None,
        "skipped_images": unreadable_images(run_dir / UNREADABLE_LOG),
        "weights": weights,
        "versions": versions(),
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if args.save_weights is not None:
        weights = accelerator.unwrap_model(model).state_dict()
        save_file({k: v.contiguous() for k, v in weights.items()}, str(args.save_weights))
        summary["saved_weights"] = str(args.save_weights)
    summary["plots"] = write_plots(run_dir, trainer.history, final["confusion_matrix"], class_names)
    atomic_write_json(run_dir / "summary.json", summary)
    record = {**summary, "_run_dir": run_dir.name}
    atomic_write_text(run_dir / "report.md", render_markdown([record], link_base=".."))
    console.print(rich_table([record]))
    console.print(f"wrote {run_dir / 'summary.json'} and {run_dir / 'report.md'}")
    return 0
