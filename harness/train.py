"""One run: build the timm objects for a planned recipe, train through accelerate, write the record."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    DynamoBackend,
    GradientAccumulationPlugin,
    TorchDynamoPlugin,
    broadcast_object_list,
    set_seed,
)
from safetensors.torch import save_file
from timm.utils import ModelEmaV3

from harness import trackers
from harness.attempts import AttemptLog, first_line, read_attempts
from harness.batching import BatchSplit, leaves_no_trace, mixes_pairs, probe_micro_batch, split_batch
from harness.build import (
    WeightsError,
    build_mixup,
    build_optimizer,
    build_scheduler,
    build_train_loss,
    frozen_parameters,
)
from harness.checkpoint import (
    CheckpointError,
    checkpoint_root,
    complete_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from harness.config import ConfigError, budget_limits, fidelity, has_batchnorm, step_differences
from harness.data import (
    UNREADABLE_LOG,
    DataError,
    build_datasets,
    check_unreadable,
    dataset_info,
    first,
    log_unreadable_to,
    unreadable_images,
)
from harness.data.autoaugment import device_policy
from harness.data.decode import decode_fallbacks, wants_cuda, with_decode
from harness.data.device import random_erasing
from harness.data.loader import worker_eval_loader, worker_train_loader
from harness.data.memory import memory_loaders
from harness.data.route import DataRoute, RouteError
from harness.data.route import choose_route as data_route
from harness.data.transforms import worker_notes, worker_transforms
from harness.engine import NonFiniteLoss, Trainer, fit
from harness.plots import write_plots
from harness.preemption import EXIT_PREEMPTED, SignalFlag, StopAgreement, StopRequested, stop_signals
from harness.recipe_files import recipe_yaml
from harness.records import EvalRecord, RunRecord
from harness.report import render_markdown, rich_table, wide_console
from harness.results import (
    atomic_write_json,
    atomic_write_text,
    new_run_dir,
    summary_record,
    write_metrics,
)
from harness.weights import model_with_weights
from recipes import Recipe, Reference

# Errors a run reports in one line with exit status 2 (bad input, a refused state, a full disk); any other
# exception is a crash (a traceback, exit status 1).
RUN_ERRORS = (ConfigError, DataError, CheckpointError, WeightsError, OSError)


def make_accelerator(
    amp: bool,
    freezes: bool = False,
    compile_model: bool = False,
    log_with: list[str] | None = None,
    amp_dtype: str = "float16",
    data_seed: int = 0,
) -> Accelerator:
    """The recipe decides mixed precision: its `amp_dtype` (bfloat16 falls back to float16 on a GPU without it),
    none on CPU.

    A recipe that freezes parameters for a while needs DDP to tolerate parameters without gradients;
    `compile_model` has `prepare` wrap the model in torch.compile (inductor)."""
    precision = "no"
    if amp and wants_cuda():
        precision = "bf16" if amp_dtype == "bfloat16" and torch.cuda.is_bf16_supported() else "fp16"
    # cpu=True also lets several CPU processes form a gloo group (accelerate's MULTI_CPU).
    # A seedable sampler makes each epoch's order a function of (seed, epoch), so a resume repeats it.
    return Accelerator(
        mixed_precision=precision,
        step_scheduler_with_optimizer=False,
        cpu=not wants_cuda(),
        # Pinned batches move to the GPU without blocking the host (the per-image path pins them).
        # data_seed: the same shuffle on every process (else accelerate seeds it from torch's seed, seed + rank).
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True, data_seed=data_seed, non_blocking=wants_cuda()
        ),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)] if freezes else None,
        dynamo_plugin=TorchDynamoPlugin(backend="inductor") if compile_model else None,
        # The number of micro-steps per update is set once the micro-batch is known; every epoch trains whole
        # updates, so accumulation follows the step count and never the end of the loader.
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1, sync_with_dataloader=False),
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


def choose_route(
    args: argparse.Namespace, recipe, dataset: str, world: int, source: str | None = None, device=None
) -> DataRoute:
    """The data path, where the recipe's policy runs and (for images read from `source` on `device`) where the
    training images are decoded; requests it cannot take were refused while planning."""
    try:
        route = data_route(args.loader, args.augment_on, recipe, dataset, world)
        return with_decode(route, getattr(args, "decode_on", "auto"), recipe, source, device)
    except RouteError as e:
        raise ConfigError(str(e)) from None


def _normalised(recipe_dict: dict) -> dict:
    return json.loads(json.dumps(recipe_dict))


def _defaults(cls) -> dict:
    return _normalised({f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING})


def _with_later_fields(saved: dict) -> dict:
    """A recipe saved before a field was added reads with that field at its default."""
    reference = saved.get("reference")
    if isinstance(reference, dict):
        saved = {**saved, "reference": {**_defaults(Reference), **reference}}
    return {**_defaults(Recipe), **saved}


def check_resumable(run_dir: Path, recipe, seed: int, force: bool) -> None:
    """Refuse to continue a run with a different recipe or seed unless forced; refuse without a checkpoint."""
    saved = _with_later_fields(_normalised(json.loads((run_dir / "recipe.json").read_text())))
    now = _normalised(recipe.to_dict())
    diff = [f"{k}: {saved.get(k)} -> {now.get(k)}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    saved_seed = json.loads((run_dir / "run.json").read_text()).get("seed")
    if saved_seed != seed:
        diff.append(f"seed: {saved_seed} -> {seed}")
    if diff and not force:
        raise ConfigError(f"--resume {run_dir} would change the run ({'; '.join(diff)}); add --force to accept")
    if not complete_checkpoints(run_dir):
        raise CheckpointError(f"{run_dir} has no complete checkpoint to resume from; start a new run instead")


def shared_run_dir(
    accelerator: Accelerator, plan, args: argparse.Namespace, recipe, label: str | None = None, before_writing=None
) -> Path:
    """The main process creates (or reuses) the run directory and tells the others where it is; `label` names a
    new one (default: the recipe's name). `before_writing(run_dir)` runs before any file is written there; if it
    raises, a directory created for this run is removed again and every process raises one ConfigError."""
    shared = [None, None]
    if accelerator.is_main_process:
        shared = _open_on_main(plan, args, recipe, label, before_writing)
    path, error = broadcast_object_list(shared)
    if error is not None:
        raise ConfigError(error)
    return Path(path)


def _open_on_main(plan, args: argparse.Namespace, recipe, label: str | None, before_writing) -> list:
    """[run directory, None], or [None, the error] once a directory created for the run is removed again."""
    created = None
    try:
        if plan.resume_dir is not None:
            run_dir = plan.resume_dir
        else:
            created = _first_missing(args.output)
            run_dir = new_run_dir(args.output, label or recipe.name, plan.dataset, plan.budget, args.seed)
            created = created or run_dir
        if before_writing is not None:
            before_writing(run_dir)
        if plan.resume_dir is None:
            atomic_write_json(run_dir / "run.json", plan.saved_args)
        atomic_write_json(run_dir / "recipe.json", recipe.to_dict())
        atomic_write_text(run_dir / "recipe.yaml", recipe_yaml(recipe, plan.published_source))
    except RUN_ERRORS as e:  # reported on every process, so none waits for the others
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        return [None, str(e)]
    return [str(run_dir), None]


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (None if it does)."""
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


@dataclass
class BuiltRun:
    """A run ready to fit: the resolved recipe, its data and model, passed through `accelerator.prepare`."""

    plan: object
    args: argparse.Namespace
    recipe: object
    accelerator: Accelerator
    cpu_threads: int
    batches: BatchSplit
    data_path: str  # "memory" or "workers"
    augment_on: str | None  # where the recipe's RandAugment/AutoAugment policy ran ("device", "workers")
    num_classes: int
    class_names: list[str] | None
    datasets: tuple[object, object]  # (train, eval) at the budget's size
    differences: list[str]
    notes: list[str]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    frozen: list[torch.nn.Parameter]
    train_loader: object
    eval_loader: object
    started_at: str
    wall_start: float

    weights: dict | None  # what the model's starting weights were taken from (harness.weights)
    decode_on: str | None = None  # where training images were decoded ("device", "workers"; None: not from files)
    decode_fallbacks: dict | None = None  # images decoded in the workers instead (harness.data.decode)

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def train_samples(self) -> int:
        return len(self.datasets[0])

    @property
    def eval_samples(self) -> int:
        return len(self.datasets[1])


def start_accelerator(recipe, args: argparse.Namespace, log_with: list[str] | None = None) -> tuple[Accelerator, int]:
    """The Accelerator, this process's CPU threads and the seed: the first thing every run does."""
    accelerator = make_accelerator(
        recipe.amp,
        freezes=bool(recipe.freeze),
        compile_model=args.compile,
        log_with=log_with,
        amp_dtype=recipe.amp_dtype,
        data_seed=args.seed,
    )
    cpu_threads = set_cpu_threads(accelerator, args.threads)
    if accelerator.device.type == "cuda":  # as timm's train.py sets them
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = not getattr(args, "deterministic", False)
    set_seed(args.seed, device_specific=True)  # seed + rank, as timm's train.py seeds each process
    return accelerator, cpu_threads


def resolve_for_processes(recipe, accelerator: Accelerator, micro_batch: int | None) -> tuple[object, BatchSplit]:
    """The recipe as it runs on these processes, and the global batch split into micro-batches."""
    world = accelerator.num_processes
    split = split_batch(recipe.batch_size, world, micro_batch, even=mixes_pairs(recipe))
    precision = accelerator.mixed_precision
    changes = {"amp": precision != "no"}
    if precision in ("fp16", "bf16"):
        changes["amp_dtype"] = "float16" if precision == "fp16" else "bfloat16"
    if world == 1 and recipe.aug_repeats:
        changes["aug_repeats"] = 0  # timm applies repeated augmentation only when distributed
    return dataclasses.replace(recipe, **changes), split


def largest_fitting_micro_batch(accelerator: Accelerator, recipe, model, split: BatchSplit) -> BatchSplit:
    """On a GPU without --micro-batch: the largest micro-batch whose forward/backward at the recipe's train size
    fits (optimizer state, allocated at the first update, is not part of the probe). The smallest over processes.
    The probe trains nothing: BatchNorm's statistics, the gradients and the random generators are left as they were
    (`leaves_no_trace`)."""
    model.to(accelerator.device)

    def try_step(micro: int) -> None:
        try:
            images = torch.randn(micro, 3, recipe.img_size, recipe.img_size, device=accelerator.device)
            with accelerator.autocast():
                loss = model(images.contiguous(memory_format=torch.channels_last)).float().mean()
            loss.backward()
        finally:  # after an out-of-memory error too: the next try starts without this one's gradients
            model.zero_grad(set_to_none=True)

    with leaves_no_trace(model, accelerator.device):
        micro = probe_micro_batch(split, try_step, even=mixes_pairs(recipe))
    smallest = int(accelerator.gather(torch.tensor([micro], device=accelerator.device)).min().item())
    return BatchSplit(split.global_batch, split.processes, smallest)


def batchnorm_note(model: torch.nn.Module, split: BatchSplit) -> list[str]:
    """Accumulation keeps the optimizer's batch but not BatchNorm's: a note, not a difference from the paper."""
    if not has_batchnorm(model) or split.accum_steps == 1:
        return []
    return [
        f"BatchNorm statistics are computed over each micro-batch of {split.micro_batch} images per process, "
        f"not over the {split.per_process} images the process contributes to each update"
    ]


@dataclass
class Splits:
    train_set: object
    eval_set: object
    num_classes: int
    class_names: list[str] | None
    limits_note: list[str]


def load_splits(plan, args: argparse.Namespace, recipe, route: DataRoute) -> Splits:
    """The train and eval splits at the budget's size, with a note for each one cut short."""
    info = dataset_info(plan.dataset)
    train_tf, eval_tf = worker_transforms(recipe, info.channels, route)
    source = plan.source or plan.dataset
    train_set, eval_set, num_classes = build_datasets(source, args.data_dir, args.download, train_tf, eval_tf)
    full_train, full_eval = len(train_set), len(eval_set)
    class_names = [str(c) for c in getattr(train_set, "classes", [])] or None
    limits = budget_limits(plan.budget)
    train_set, eval_set = first(train_set, limits.max_train_samples), first(eval_set, limits.max_eval_samples)
    if len(train_set) < recipe.batch_size:
        option = getattr(plan, "given", {}).get("batch_size")
        raise ConfigError(
            f"{option + ': ' if option else ''}global batch {recipe.batch_size} is larger than the {len(train_set)} "
            f"training images; pass --batch-size {len(train_set)} or less"
        )
    notes = [f"train images: first {len(train_set)} of {full_train}"] if len(train_set) < full_train else []
    if len(eval_set) < full_eval:
        notes.append(f"eval images: first {len(eval_set)} of {full_eval}")
    return Splits(train_set, eval_set, num_classes, class_names, notes)


def build_model_and_optimizer(recipe, num_classes: int, pretrained_file: Path | None):
    """(model in channels_last, optimizer over every parameter, the parameters the recipe freezes, the weights
    record of harness.weights)."""
    model, weights = model_with_weights(recipe, num_classes, pretrained_file, keep_head=False)
    # The optimizer is built before anything is frozen, so it holds every parameter and needs no rebuild later.
    optimizer = build_optimizer(recipe, model)
    try:
        frozen = frozen_parameters(model, recipe.freeze)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    model = model.to(memory_format=torch.channels_last)  # faster on CPU too (ResNet-18, 28 px: 749 vs 581 img/s)
    return model, optimizer, frozen, weights


def prepare_loaders(
    accelerator: Accelerator,
    recipe,
    splits: Splits,
    model,
    optimizer,
    route: DataRoute,
    batch: int,
    args: argparse.Namespace,
    policy=None,
):
    """(model, optimizer, train loader, eval loader) through `accelerator.prepare`, on the chosen data path;
    `policy` is the recipe's augmentation policy on the device."""
    model, optimizer = accelerator.prepare(model, optimizer)
    rank, world = accelerator.process_index, accelerator.num_processes
    if route.path == "memory":
        train_loader, eval_loader = memory_loaders(
            recipe, splits.train_set, splits.eval_set, batch, args.seed, accelerator.device, rank, world, policy
        )
        return model, optimizer, train_loader, eval_loader
    train_loader = worker_train_loader(
        accelerator, recipe, splits.train_set, batch, args.workers, args.seed, policy, route.decode_on == "device"
    )
    eval_loader = worker_eval_loader(accelerator, recipe, splits.eval_set, batch, args.workers, args.seed)
    return model, optimizer, train_loader, eval_loader


def build_run(plan, args: argparse.Namespace, load=None) -> BuiltRun:
    """Accelerator, threads, recipe, datasets, model, optimizer and loaders: everything before the first step.

    `load(plan, args, recipe, route) -> Splits` replaces the dataset loading (the estimate's synthetic data)."""
    started_at, wall_start = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    accelerator, cpu_threads = start_accelerator(plan.recipe, args, plan.log_with)
    recipe, split = resolve_for_processes(plan.recipe, accelerator, args.micro_batch)
    if plan.resume_dir is not None:
        check_resumable(plan.resume_dir, recipe, args.seed, args.force)
    source = None if plan.synthetic_data else (plan.source or plan.dataset)
    route = choose_route(args, recipe, plan.dataset, accelerator.num_processes, source, accelerator.device)
    splits = (load or load_splits)(plan, args, recipe, route)
    extra = list(splits.limits_note)
    if args.pretrained_file is not None:
        extra.append(f"weights: initialised from {args.pretrained_file}")
    policy = device_policy(recipe, accelerator.device) if route.augment_on == "device" else None
    extra += policy.differences if policy is not None else []
    model, optimizer, frozen, weights = build_model_and_optimizer(recipe, splits.num_classes, args.pretrained_file)
    if args.micro_batch is None and accelerator.device.type == "cuda":
        split = largest_fitting_micro_batch(accelerator, recipe, model, split)
    accelerator.gradient_accumulation_steps = split.accum_steps
    model, optimizer, train_loader, eval_loader = prepare_loaders(
        accelerator, recipe, splits, model, optimizer, route, split.micro_batch, args, policy
    )
    return BuiltRun(
        plan=plan,
        args=args,
        recipe=recipe,
        accelerator=accelerator,
        cpu_threads=cpu_threads,
        batches=split,
        data_path=route.path,
        augment_on=route.augment_on,
        num_classes=splits.num_classes,
        class_names=splits.class_names,
        datasets=(splits.train_set, splits.eval_set),
        differences=fidelity(
            plan.published, recipe, [*extra, *step_differences(plan.published, model, split, train_loader)]
        ),
        notes=batchnorm_note(model, split) + worker_notes(recipe, route) + (policy.notes if policy else []),
        model=model,
        optimizer=optimizer,
        frozen=frozen,
        train_loader=train_loader,
        eval_loader=eval_loader,
        started_at=started_at,
        wall_start=wall_start,
        weights=weights,
        decode_on=route.decode_on,
    )


def bare_model(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The model inside the compiled and DDP wrappers, leaving the prepared model as it is: accelerate's default
    `keep_torch_compile=True` would set the compiled module's `_orig_mod` to the bare model, dropping DDP (and with
    it `no_sync`) from the model that trains."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def build_ema(accelerator: Accelerator, model: torch.nn.Module, recipe) -> ModelEmaV3 | None:
    """timm's ModelEmaV3 of the bare model, so its state dict has the model's keys with or without --compile and
    on any number of processes. Built after `prepare`, from the weights DDP gave every process (rank 0's): timm
    builds it before DDP, where each process's EMA starts from its own initialisation (seed + rank)."""
    if not recipe.model_ema:
        return None
    return ModelEmaV3(bare_model(accelerator, model), decay=recipe.model_ema_decay)


def ema_for_evaluation(accelerator: Accelerator, ema: ModelEmaV3 | None) -> torch.nn.Module | None:
    """With --compile, the EMA evaluated through torch.compile as the model is (timm's train.py compiles both). The
    compiled module shares the EMA's parameters and buffers; the EMA keeps its bare module, and with it its keys."""
    plugin = accelerator.state.dynamo_plugin
    if ema is None or plugin.backend == DynamoBackend.NO:
        return None
    return torch.compile(ema.module, **plugin.to_kwargs())


def make_trainer(run: BuiltRun) -> Trainer:
    recipe, accelerator = run.recipe, run.accelerator
    ema = build_ema(accelerator, run.model, recipe)
    mixup = build_mixup(recipe, run.num_classes)
    scheduler, epochs = build_scheduler(recipe, run.optimizer, len(run.train_loader) // run.batches.accum_steps)
    return Trainer(
        accelerator=accelerator,
        model=run.model,
        optimizer=run.optimizer,
        scheduler=scheduler,
        epochs=epochs,
        train_loss=build_train_loss(recipe, mixup is not None),
        train_loader=run.train_loader,
        eval_loader=run.eval_loader,
        num_classes=run.num_classes,
        global_batch_size=recipe.batch_size,
        mixup=mixup,
        erase=random_erasing(recipe, accelerator.device),
        clip_grad=recipe.clip_grad,
        ema=ema,
        ema_evaluated=ema_for_evaluation(accelerator, ema),
        frozen=run.frozen,
        freeze_epochs=recipe.freeze_epochs,
        early_stop_patience=recipe.early_stop_patience,
        early_stop_min_delta=recipe.early_stop_min_delta,
        accum_steps=run.batches.accum_steps,
        log_every=run.args.log_every,
    )


def open_run_dir(run: BuiltRun) -> tuple[Path, dict]:
    """The run directory, with the trackers started before anything is written into it, announced with the plan's
    notices on the main process; also what the trackers need to be continued by a later attempt."""
    started: dict = {}

    def start_trackers(run_dir: Path) -> None:
        earlier = read_attempts(run_dir) if run.plan.resume_dir is not None else []
        args = run.args
        started.update(trackers.start(run.accelerator, run_dir, args.project, run.recipe, earlier, not args.force))

    run_dir = shared_run_dir(run.accelerator, run.plan, run.args, run.recipe, before_writing=start_trackers)
    if run.accelerator.is_main_process:
        console = wide_console()
        for notice in run.plan.notices:
            console.print(f"[yellow]note:[/] {notice}")
        console.print(f"run directory: {run_dir}")
    log_unreadable_to(list(run.datasets), run_dir / UNREADABLE_LOG)
    return run_dir, started


def resume_state(run: BuiltRun, trainer: Trainer, run_dir: Path) -> dict:
    """Where fitting starts: from scratch, or from the newest complete checkpoint of a resumed run."""
    start = {"epoch": 0, "step_in_epoch": 0, "epoch_loss_sum": 0.0, "elapsed_s": 0.0, "num_updates": 0}
    if run.plan.resume_dir is None:
        return start
    latest = complete_checkpoints(run_dir)[-1]
    start = load_checkpoint(run.accelerator, latest, trainer.scheduler, trainer.ema)
    trainer.num_updates, trainer.history = start["num_updates"], start["history"]
    (run_dir / "summary.json").unlink(missing_ok=True)  # the run is no longer finished
    if run.accelerator.is_main_process:
        wide_console().print(f"resuming from {latest} (epoch {start['epoch'] + 1}, step {start['step_in_epoch']})")
    return start


def fit_run(run: BuiltRun, trainer: Trainer, run_dir: Path, start: dict) -> dict:
    """Train from `start`, checkpointing every epoch (and every --save-every updates); the final evaluation."""
    accelerator = run.accelerator

    def checkpoint(epoch: int, step_in_epoch: int, epoch_loss_sum: float) -> None:
        progress = {
            "recipe": run.recipe.name,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "epoch_loss_sum": epoch_loss_sum,
            "num_updates": trainer.num_updates,
            "scheduler": trainer.scheduler.state_dict(),
            "history": trainer.history,
            "elapsed_s": start["elapsed_s"] + time.perf_counter() - run.wall_start,
        }
        save_checkpoint(accelerator, run_dir, progress, trainer.ema, run.args.keep)

    def on_epoch_end(row: dict, _eval: dict) -> None:
        if accelerator.is_main_process:
            write_metrics(run_dir / "metrics.csv", trainer.history)
        trackers.log_epoch(accelerator, row, trainer.num_updates)
        checkpoint(row["epoch"], 0, 0.0)
        readable_or_stop(run, run_dir)

    trainer.save_every, trainer.on_checkpoint = run.args.save_every, checkpoint
    return fit(trainer, trainer.epochs, on_epoch_end, start["epoch"], start["step_in_epoch"], start["epoch_loss_sum"])


def readable_or_stop(run: BuiltRun, run_dir: Path) -> None:
    """Past 0.1% of undecodable images in a split the run stops; the epoch's checkpoint is kept."""
    try:
        check_unreadable(run_dir / UNREADABLE_LOG, {"train": run.train_samples, "val": run.eval_samples})
    except DataError as e:
        raise DataError(f"{e}; the last checkpoint is kept under {checkpoint_root(run_dir)}") from None


def write_record(
    run: BuiltRun, trainer: Trainer, final: dict, run_dir: Path, elapsed_before_s: float, attempts: list[dict]
) -> None:
    """summary.json, the plots, report.md and the final weights (main process only)."""
    summary = summary_record(run, trainer, final, elapsed_before_s + time.perf_counter() - run.wall_start)
    summary = summary.with_fields(
        skipped_images=unreadable_images(run_dir / UNREADABLE_LOG),
        nodes=attempts[-1]["nodes"],
        world_sizes=[a["processes"] for a in attempts],
        attempts=attempts,
    )
    if len(set(summary.world_sizes)) > 1:
        counts = " then ".join(str(n) for n in summary.world_sizes)
        wide_console().print(f"trained over {len(attempts)} attempts on {counts} process(es) (attempts.json)")
    if run.args.save_weights is not None:
        weights = bare_model(run.accelerator, run.model).state_dict()
        save_file({k: v.contiguous() for k, v in weights.items()}, str(run.args.save_weights))
        summary = summary.with_fields(saved_weights=str(run.args.save_weights))
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


def train(plan, args: argparse.Namespace) -> int:
    """Build, fit and record one run; 0 when complete, EXIT_PREEMPTED when stopped on a signal with a checkpoint,
    2 after a non-finite loss. Errors of RUN_ERRORS propagate after the attempt records them."""
    with stop_signals() as signals:
        run = build_run(plan, args)
        trainer = make_trainer(run)
        run_dir, tracking = open_run_dir(run)
        resumed_from = complete_checkpoints(run_dir)[-1] if plan.resume_dir is not None else None
        attempt = AttemptLog.begin(run.accelerator, run_dir, resumed_from, tracking)
        mlflow_status = "FAILED"
        try:
            status = fit_attempt(run, trainer, run_dir, signals, attempt)
            mlflow_status = {0: "FINISHED", EXIT_PREEMPTED: "KILLED"}.get(status, "FAILED")
        except BaseException as e:
            stopped, exit_status = _failure(e)
            attempt.end(stopped, exit_status)
            raise
        finally:
            trackers.finish(run.accelerator, mlflow_status)
    return status


def _failure(error: BaseException) -> tuple[str, int | None]:
    """How an attempt that raised ended: its one line and the exit status the process will have."""
    if isinstance(error, RUN_ERRORS):
        return f"error: {first_line(error)}", 2
    if isinstance(error, Exception):
        return f"error: {type(error).__name__}: {first_line(error)}", 1
    return f"error: {type(error).__name__}", None  # KeyboardInterrupt, SystemExit: the status is not ours


def fit_attempt(run: BuiltRun, trainer: Trainer, run_dir: Path, signals: SignalFlag, attempt: AttemptLog) -> int:
    """Resume if asked, fit until done or told to stop, then end the attempt and, when done, write the record."""
    accelerator = run.accelerator
    start = resume_state(run, trainer, run_dir)
    if run.plan.resume_dir is not None:
        attempt.resumed_at(start["num_updates"])
    trainer.on_log = trackers.train_logger(accelerator)
    trainer.stop = StopAgreement(signals, accelerator.num_processes)
    try:
        final = fit_run(run, trainer, run_dir, start)
    except StopRequested as stop:
        attempt.end(stop.reason, EXIT_PREEMPTED)
        if accelerator.is_main_process:
            print(
                f"stopped on {stop.signal_name} after update {stop.update}; checkpoint {attempt.entry['checkpoint']}; "
                f"continue with --resume {run_dir} (exit status {EXIT_PREEMPTED})",
                file=sys.stderr,
            )
        return EXIT_PREEMPTED
    except NonFiniteLoss as e:
        message = f"{e}; the last good checkpoint is kept under {checkpoint_root(run_dir)}"
        attempt.end(f"error: {message}", 2)
        if accelerator.is_main_process:
            print(f"error: {message}", file=sys.stderr)
        return 2
    trainer.stop.close()
    run.decode_fallbacks = decode_fallbacks(accelerator, run.train_loader)
    accelerator.wait_for_everyone()
    attempt.end("complete", 0)
    if accelerator.is_main_process:
        write_record(run, trainer, final, run_dir, start["elapsed_s"], attempt.attempts)
    return 0
