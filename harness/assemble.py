"""Everything a run builds before its first step: datasets at the budget's size, the data route settled on the
device, the model and optimizer, and the loaders, passed through `accelerator.prepare` (`build_run`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from harness.accelerator import (
    batchnorm_note,
    largest_fitting_micro_batch,
    resolve_for_processes,
    start_accelerator,
)
from harness.batching import BatchSplit
from harness.build import (
    build_optimizer,
    frozen_parameters,
)
from harness.config import ConfigError, budget_limits, fidelity, step_differences
from harness.data import (
    build_datasets,
    dataset_info,
    first,
)
from harness.data.autoaugment import device_policy
from harness.data.loader import Loader, build_loaders, worker_notes, worker_transforms
from harness.data.route import DataRoute
from harness.plan import RunSpec, route_for
from harness.results import now_iso
from harness.run_dir import check_resumable
from harness.weights import model_with_weights
from recipes import Recipe


def settle_route(spec: RunSpec, recipe: Recipe, accelerator: Accelerator, training: bool = True) -> DataRoute:
    """The planned route settled on this process's device (where the training images are decoded; with
    `training=False`, an evaluation, which decodes in the workers, nowhere); requests it cannot take were refused
    while planning."""
    source, device = (spec.reads_from, accelerator.device) if training else (None, None)
    return route_for(spec.options, recipe, spec.dataset, accelerator.num_processes, source, device)


@dataclass
class BuiltRun:
    """A run ready to fit: the resolved recipe, its data and model, passed through `accelerator.prepare`."""

    spec: RunSpec
    recipe: Recipe
    accelerator: Accelerator
    cpu_threads: int
    batches: BatchSplit
    data_path: str  # "memory" or "workers"
    augment_on: str | None  # where the recipe's RandAugment/AutoAugment policy ran ("device", "workers")
    num_classes: int
    class_names: list[str] | None
    datasets: tuple[Dataset, Dataset]  # (train, eval) at the budget's size
    differences: list[str]
    notes: list[str]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    frozen: list[torch.nn.Parameter]
    train_loader: Loader
    eval_loader: Loader
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


@dataclass
class Splits:
    train_set: Dataset
    eval_set: Dataset
    num_classes: int
    class_names: list[str] | None
    limits_note: list[str]


def load_splits(spec: RunSpec, recipe: Recipe, route: DataRoute) -> Splits:
    """The train and eval splits at the budget's size, with a note for each one cut short."""
    info = dataset_info(spec.dataset)
    train_tf, eval_tf = worker_transforms(recipe, info.channels, route)
    options = spec.options
    source = spec.source or spec.dataset
    train_set, eval_set, num_classes = build_datasets(source, options.data_dir, options.download, train_tf, eval_tf)
    full_train, full_eval = len(train_set), len(eval_set)
    class_names = [str(c) for c in getattr(train_set, "classes", [])] or None
    limits = budget_limits(spec.budget)
    train_set, eval_set = first(train_set, limits.max_train_samples), first(eval_set, limits.max_eval_samples)
    if len(train_set) < recipe.batch_size:
        option = spec.given.get("batch_size")
        raise ConfigError(
            f"{option + ': ' if option else ''}global batch {recipe.batch_size} is larger than the {len(train_set)} "
            f"training images; pass --batch-size {len(train_set)} or less"
        )
    notes = [f"train images: first {len(train_set)} of {full_train}"] if len(train_set) < full_train else []
    if len(eval_set) < full_eval:
        notes.append(f"eval images: first {len(eval_set)} of {full_eval}")
    return Splits(train_set, eval_set, num_classes, class_names, notes)


def build_model_and_optimizer(
    recipe: Recipe, num_classes: int, pretrained_file: Path | None
) -> tuple[torch.nn.Module, torch.optim.Optimizer, list[torch.nn.Parameter], dict | None]:
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


def build_run(spec: RunSpec, load: Callable[[RunSpec, Recipe, DataRoute], Splits] | None = None) -> BuiltRun:
    """Accelerator, threads, recipe, datasets, model, optimizer and loaders: everything before the first step.

    `load(spec, recipe, route) -> Splits` replaces the dataset loading (the estimate's synthetic data)."""
    started_at, wall_start = now_iso(), time.perf_counter()
    options = spec.options
    accelerator, cpu_threads = start_accelerator(spec)
    recipe, split = resolve_for_processes(spec.recipe, accelerator, options.micro_batch)
    if options.resume is not None:
        check_resumable(options.resume, recipe, options.seed, options.force)
    route = settle_route(spec, recipe, accelerator)
    splits = (load or load_splits)(spec, recipe, route)
    extra = list(splits.limits_note)
    if options.pretrained_file is not None:
        extra.append(f"weights: initialised from {options.pretrained_file}")
    policy = device_policy(recipe, accelerator.device) if route.augment_on == "device" else None
    extra += policy.differences if policy is not None else []
    model, optimizer, frozen, weights = build_model_and_optimizer(recipe, splits.num_classes, options.pretrained_file)
    if options.micro_batch is None and accelerator.device.type == "cuda":
        split = largest_fitting_micro_batch(accelerator, recipe, model, split)
    accelerator.gradient_accumulation_steps = split.accum_steps
    model, optimizer = accelerator.prepare(model, optimizer)
    train_loader, eval_loader = build_loaders(
        accelerator, recipe, splits.train_set, splits.eval_set, route, split.micro_batch, options.workers,
        options.seed, policy
    )  # fmt: skip
    return BuiltRun(
        spec=spec,
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
            spec.published, recipe, [*extra, *step_differences(spec.published, model, split, train_loader)]
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
