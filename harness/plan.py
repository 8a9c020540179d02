"""The run's plan: what a run is told (`RunOptions`), and everything decided from it before any process touches a
device or writes a file (`RunSpec`), by one function, `plan(options)`.

options = RunOptions(recipe="rsb_a3", budget="smoke", output=Path("runs"))
spec = plan(options)          # ConfigError / DataError for input the harness refuses, with what would be right
spec.recipe, spec.route, spec.notices

The command line (harness.run) parses argv into RunOptions; campaigns and benchmarks build or parse RunOptions and
call `plan` the same way. Nothing here starts a process or writes a file: it reads the environment's WORLD_SIZE
(unless `world` is given), checks the data and the starting weights are there, and probes nothing but the decoder
of this machine's device where `--decode-on device` asks for it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import torch

from harness.batching import mixes_pairs, split_batch
from harness.config import (
    ConfigError,
    adapt_to_dataset,
    apply_budget,
    apply_overrides,
    follow_test_size,
    override,
    parse_overrides,
    rescale_lr,
    shorten_warmup,
)
from harness.data import MNIST_5K_PROVENANCE, DataError, catalog_name, check_available, dataset_info
from harness.data.route import DataRoute, RouteError, choose_route
from harness.recipe_files import Resolved, resolve
from harness.trackers import parse_log_with
from recipes import Recipe, list_recipes

FALLBACK_DATASET = "digits"
# Real MNIST digits stand in for MNIST; the fallback for every other dataset is scikit-learn's 8x8 digits.
MNIST_STAND_IN = "mnist_5k"
# Leave two cores to the training process itself; on a 2-core machine the main process loads data.
DEFAULT_WORKERS = max(0, min(8, (os.cpu_count() or 1) - 2))
SEED_MAX = 2**32 - 1  # numpy's seed range
# An error that quotes a batch or an epoch count of a plan on the stand-in says whose numbers they are.
QUOTES_BATCH_OR_EPOCHS = re.compile(r"batch|epoch")
# run.json keeps the command line's names for the options; only --set is named differently here.
SAVED_NAMES = {"overrides": "set"}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything a run is told that is not a recipe field; the defaults are the command line's."""

    recipe: str | None = None  # a registered name, a recipe file or a timm args.yaml
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, in order
    budget: str | None = None  # full (None: full, or the stand-in demo when the data is absent), proxy, smoke
    epochs: int | None = None
    batch_size: int | None = None  # the global batch
    seed: int = 0
    # data
    dataset: str | None = None
    data_dir: Path | None = None
    download: bool = False
    workers: int = DEFAULT_WORKERS
    loader: str = "auto"
    augment_on: str = "auto"
    decode_on: str = "auto"
    # weights
    pretrained_file: Path | None = None
    save_weights: Path | None = None
    eval_only: bool = False
    estimate: bool = False
    # checkpoints and resume
    resume: Path | None = None
    force: bool = False
    save_every: int = 0
    keep: int = 2
    # logging and output
    output: Path = Path("runs")
    log_with: str | None = None
    project: str | None = None
    log_every: int = 50
    # speed and reproducibility
    micro_batch: int | None = None
    compile: bool = False
    threads: int | None = None
    deterministic: bool = False

    @classmethod
    def from_saved(cls, saved: dict) -> RunOptions:
        """The options of a run.json (or a mapping of the command line's option names); unknown keys are ignored."""
        names = {SAVED_NAMES.get(f.name, f.name): f.name for f in dataclasses.fields(cls)}
        values = {names[k]: v for k, v in saved.items() if k in names}
        for key in ("data_dir", "pretrained_file", "save_weights", "resume", "output"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if "overrides" in values:
            values["overrides"] = tuple(values["overrides"] or ())
        return cls(**values)

    def saved(self) -> dict:
        """run.json: the options a resume re-plans from, under the command line's names (not resume and force,
        which describe the invocation that resumes)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("resume", "force"):
                continue
            value = getattr(self, f.name)
            out[SAVED_NAMES.get(f.name, f.name)] = (
                str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
            )
        return out

    @property
    def mode(self) -> str:
        """What the run does: evaluate weights, estimate the schedule's time, or train."""
        return "evaluate" if self.eval_only else "estimate" if self.estimate else "train"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A planned run: the published recipe, the recipe as it will run, its data and route, the options, and what the
    user is told about the differences."""

    published: Recipe
    recipe: Recipe
    published_source: str  # registered name or recipe file of `published`
    dataset: str
    budget: str
    route: DataRoute  # the data path planned before a device exists; the run settles it on its device
    options: RunOptions
    notices: tuple[str, ...]
    lr_rescale: dict | None
    log_with: tuple[str, ...]
    synthetic_data: bool = False  # --estimate without the dataset: timed on random images of its shape
    given: dict[str, str] = dataclasses.field(default_factory=dict)  # field -> the option that set it (--epochs)
    source: str | None = None  # the name the data is read under, where it differs from `dataset` (a hub repository)
    stand_in: str | None = None  # for the bare demo on the stand-in: what an error quoting its batch must add

    @property
    def resume_dir(self) -> Path | None:
        return self.options.resume

    @property
    def reads_from(self) -> str | None:
        """The name the images are read under; None for synthetic images."""
        return None if self.synthetic_data else (self.source or self.dataset)


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """The data a run reads: the recipe's (or --dataset's), synthetic images for an estimate without it, or the
    bundled stand-in for the bare demo (`--recipe X` with no data options)."""

    dataset: str
    source: str  # the name the data is read under (a hub repository), else the dataset
    budget: str
    synthetic: bool = False
    stand_in_for: str | None = None  # the dataset the stand-in replaces


def plan(options: RunOptions, world: int | None = None) -> RunSpec:
    """The run `options` describe on `world` processes (default: the launch's WORLD_SIZE), or ConfigError /
    DataError for the first thing refused."""
    if not options.recipe:
        raise ConfigError("--recipe is required; valid recipes: " + ", ".join(list_recipes()))
    world = world if world is not None else int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve(options.recipe, batch_size=settled_batch(options.overrides))
    log_with = tuple(parse_log_with(options.log_with))
    notices = list(resolved.notices)
    data = choose_data(options, resolved.recipe, notices)
    if data.dataset == MNIST_STAND_IN:
        notices.append(MNIST_5K_PROVENANCE)
    try:
        return _plan_recipe(options, world, resolved, data, notices, log_with)
    except ConfigError as e:
        if data.stand_in_for is None:
            raise
        raise ConfigError(explained(e, stand_in_context(resolved.published, data))) from None


def choose_data(options: RunOptions, recipe: Recipe, notices: list[str]) -> DataChoice:
    """Check the data is there. Data the user named (--dataset, --data-dir) or the full budget asked for is never
    replaced: DataError saying where it looked. Only the bare demo falls back to the stand-in, with a notice."""
    budget = options.budget or "full"
    source = options.dataset or recipe.dataset
    dataset = catalog_name(source)  # a hub repository of ImageNet-1k is imagenet
    dataset_info(dataset)
    try:
        check_available(source, options.data_dir, options.download)
    except DataError as missing:
        if options.estimate:  # timed on random images of the dataset's shape instead
            notices.append(f"{dataset} not available ({missing}); estimating on synthetic data of its shape and size")
            return DataChoice(dataset, source, budget, synthetic=True)
        if options.dataset or options.data_dir is not None:
            raise
        if options.budget == "full":
            raise DataError(
                f"{missing} (--budget full trains on the recipe's own data; without --budget, --recipe alone runs "
                f"the demo on the bundled stand-in)"
            ) from None
        budget = "smoke" if budget == "smoke" else "proxy"
        stand_in = MNIST_STAND_IN if dataset == "mnist" else FALLBACK_DATASET
        notices.append(f"{dataset} not available ({missing}); running on {stand_in} at the {budget} budget instead")
        return DataChoice(stand_in, stand_in, budget, stand_in_for=dataset)
    return DataChoice(dataset, source, budget)


def explained(error: Exception, stand_in: str | None) -> str:
    """An error's text, and where it quotes a batch or an epoch count of a plan on the stand-in, whose they are."""
    if stand_in is None or not QUOTES_BATCH_OR_EPOCHS.search(str(error)):
        return str(error)
    return f"{error} {stand_in}"


def stand_in_context(published: Recipe, data: DataChoice) -> str:
    """What an error about a stand-in plan's batch or epochs must add: whose numbers they are."""
    return (
        f"(this plan runs on the {data.dataset} stand-in at the {data.budget} budget, as {data.stand_in_for} is not "
        f"available; {published.name} as published trains {published.epochs} epochs at global batch "
        f"{published.batch_size})"
    )


def _plan_recipe(
    options: RunOptions, world: int, resolved: Resolved, data: DataChoice, notices: list[str], log_with: tuple
) -> RunSpec:
    published, start = resolved.published, resolved.recipe
    info = dataset_info(data.dataset)
    recipe = adapt_to_dataset(override(start, "--dataset", dataset=data.dataset), info)
    recipe = apply_budget(recipe, data.budget, info)
    overrides, given = command_line_overrides(options)
    overrides, warmup_notice = shorten_warmup(recipe, overrides, given)
    notices += [warmup_notice] if warmup_notice else []
    recipe = apply_overrides(recipe, overrides, given)
    recipe, size_notice = follow_test_size(published, recipe, overrides)
    notices += [size_notice] if size_notice else []
    route = route_for(options, recipe, data.dataset, world, None if data.synthetic else data.source)
    check_weights_and_batches(options, recipe, world)
    # A recipe file that sets its own LR (a dumped run's, already rescaled) keeps it; an evaluation trains
    # nothing, so its learning rate is left as published.
    lr_set = "lr" in overrides or start.lr != published.lr or options.eval_only
    recipe, lr_rescale = rescale_lr(published, recipe, lr_overridden=lr_set)
    if lr_rescale:
        notices.append(
            f"lr rescaled {lr_rescale['published_lr']:.4g} -> {lr_rescale['lr']:.4g} ({lr_rescale['rule']} rule, "
            f"global batch {lr_rescale['published_batch_size']} -> {lr_rescale['batch_size']})"
        )
    return RunSpec(
        published=published,
        recipe=recipe,
        published_source=resolved.published_source,
        dataset=data.dataset,
        budget=data.budget,
        route=route,
        options=options,
        notices=tuple(notices),
        lr_rescale=lr_rescale,
        log_with=log_with,
        synthetic_data=data.synthetic,
        given=given,
        source=data.source if data.source != data.dataset else None,
        stand_in=stand_in_context(published, data) if data.stand_in_for else None,
    )


def route_for(
    options: RunOptions,
    recipe: Recipe,
    dataset: str,
    world: int,
    source: str | None,
    device: torch.device | None = None,
) -> DataRoute:
    """The data route `options` ask for, for images read under `source` (None: not from files) and decoded on
    `device` (None: before any device exists); ConfigError for one the recipe cannot take."""
    try:
        return choose_route(
            options.loader, options.augment_on, options.decode_on, recipe, dataset, world, source, device
        )
    except RouteError as e:
        raise ConfigError(str(e)) from None


def check_weights_and_batches(options: RunOptions, recipe: Recipe, world: int) -> None:
    """Refuse missing starting weights, an evaluation without weights or with training options, and a micro-batch
    that does not divide the global batch over the launched processes, before any work."""
    if options.pretrained_file is not None and not options.pretrained_file.is_file():
        raise ConfigError(f"--pretrained-file {options.pretrained_file} does not exist")
    split_batch(recipe.batch_size, world, options.micro_batch, even=mixes_pairs(recipe))
    if not options.eval_only:
        return
    if options.pretrained_file is None and not recipe.pretrained:
        raise ConfigError("--eval-only needs weights: pass --pretrained-file FILE, or --set pretrained=True (hub)")
    training = (
        ("--resume", options.resume),
        ("--save-weights", options.save_weights),
        ("--decode-on device", options.decode_on == "device"),  # where training images are decoded
    )
    clashing = [flag for flag, given in training if given]
    if clashing:
        raise ConfigError(f"--eval-only trains nothing, so {' and '.join(clashing)} cannot go with it")


def settled_batch(items: tuple[str, ...] | list[str]) -> int | None:
    """`--set batch_size=N`: the global batch a timm args file ran at (its batch_size is per process)."""
    value = parse_overrides(list(items)).get("batch_size")
    return value if type(value) is int and value > 0 else None


def command_line_overrides(options: RunOptions) -> tuple[dict, dict[str, str]]:
    """The recipe fields set on the command line, and the option that set each (--epochs wins over --set)."""
    overrides = parse_overrides(list(options.overrides))
    given = dict.fromkeys(overrides, "--set")
    from_options = (("epochs", "--epochs", options.epochs), ("batch_size", "--batch-size", options.batch_size))
    for field, option, value in from_options:
        if value is not None:
            overrides[field], given[field] = value, option
    return overrides, given
