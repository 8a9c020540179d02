"""Train a registered recipe (or a recipe file) through accelerate and compare it with the published number.

The console script `recipe-harness`, `python -m harness.run` and `python harness/run.py` are the same program.

accelerate launch harness/run.py --recipe rsb_a3        # or: accelerate launch -m harness.run --recipe rsb_a3
recipe-harness --recipe rsb_a3 --budget smoke           # same as a one-process launch
recipe-harness --recipe recipes/examples/resnet18_rsb_a3.yaml --budget proxy --log-with tensorboard
recipe-harness --list [--recipes-dir DIR]
recipe-harness --show rsb_a3
recipe-harness --recipe output/train/RUN/args.yaml             # the settings of a timm train.py run
recipe-harness --recipe rsb_a3 --dump-recipe a3.yaml --format timm   # an args.yaml for train.py -c a3.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.config import (
    BUDGETS,
    ConfigError,
    adapt_to_dataset,
    apply_budget,
    apply_overrides,
    budget_limits,
    follow_test_size,
    override,
    parse_overrides,
    rescale_lr,
    shorten_warmup,
)
from harness.data import DATASETS, MNIST_5K_PROVENANCE, DataError, catalog_name, check_available, dataset_info
from harness.data.route import AUGMENT_ON, DECODE_ON, LOADERS, RouteError, choose_route
from harness.options import OneLineErrorParser, describe_range, int_in_range
from harness.recipe_files import SUFFIXES, Resolved, recipe_mapping, recipe_yaml, resolve
from harness.trackers import parse_log_with
from recipes import Recipe, list_recipes

FALLBACK_DATASET = "digits"
# Real MNIST digits stand in for MNIST; the fallback for every other dataset is scikit-learn's 8x8 digits.
MNIST_STAND_IN = "mnist_5k"
# Leave two cores to the training process itself; on a 2-core machine the main process loads data.
DEFAULT_WORKERS = max(0, min(8, (os.cpu_count() or 1) - 2))


# Options that describe this invocation, not the run.
RUN_ONLY_OPTIONS = (
    "resume",
    "force",
    "list",
    "show",
    "seeds",
    "dump_recipe",
    "format",
    "processes",
    "recipes_dir",
    "schema",
)
DUMP_FORMATS = ("harness", "timm")
SEED_MAX = 2**32 - 1  # numpy's seed range
# An error that quotes a batch or an epoch count of a plan on the stand-in says whose numbers they are.
QUOTES_BATCH_OR_EPOCHS = re.compile(r"batch|epoch")


PROG = "recipe-harness"
EPILOG = """examples:
  recipe-harness --recipe rsb_a3                        the demo: digits stand in for ImageNet, proxy budget
  accelerate launch -m harness.run --recipe rsb_a3 --data-dir /data/imagenet          as published, on every GPU
  recipe-harness --recipe rsb_a3 --budget proxy --data-dir /data/imagenet --set lr=0.01 --log-with tensorboard
  recipe-harness --recipe rsb_a3 --data-dir /data/imagenet --estimate        time a few updates, project the run
  recipe-harness --recipe rsb_a3 --eval-only --set pretrained=True --data-dir /data/imagenet
  recipe-harness --recipe rsb_a3 --dump-recipe a3.yaml --format timm          an args.yaml for timm's train.py -c
  recipe-harness --recipe output/train/RUN/args.yaml                         the settings of a timm train.py run
  recipe-harness --resume runs/RUN_DIR                                   continue a run from its last checkpoint
  recipe-harness --list                   recipe-harness --show rsb_a3

timm's flags are recipe fields here: --set lr=0.1 for --lr, --set model=resnet18 for --model, --set amp=True for
--amp. --batch-size is the global batch (timm's -b is per process); --micro-batch is a size (timm's
--grad-accum-steps is a count); --resume takes a run directory (timm's takes a checkpoint file).
"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog=PROG,
        description="Train a published image-classification recipe with timm and accelerate, and compare the result\n"
        "with the reported number. Without data options, --recipe runs a short demo on a bundled stand-in dataset.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        hint_unrecognized=True,
    )
    _recipe_options(p.add_argument_group("recipe"))
    _data_options(p.add_argument_group("data"))
    _weights_options(p.add_argument_group("weights"))
    _checkpoint_options(p.add_argument_group("checkpoints and resume"))
    _logging_options(p.add_argument_group("logging and output"))
    _speed_options(p.add_argument_group("speed and reproducibility"))
    _inspect_options(p.add_argument_group("inspect and exit (nothing is trained)"))
    return p


def _recipe_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--recipe",
        metavar="NAME|FILE",
        help=f"a registered recipe (see --list; rsb-a3 is rsb_a3), a recipe file ({', '.join(SUFFIXES)}) or the "
        "args.yaml of a timm train.py run",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field (repeatable); fields are timm's flag names: --set lr=0.1 --set opt=adamw",
    )
    g.add_argument(
        "--budget",
        choices=BUDGETS,
        help="full: as published, on the recipe's data (default); proxy: a short schedule at a small size; smoke: a "
        "few updates, for CI",
    )
    g.add_argument("--epochs", type=int_in_range(1), help="override the number of epochs (as --set epochs=N)")
    g.add_argument(
        "--batch-size",
        type=int_in_range(1),
        metavar="N",
        help="override the GLOBAL batch (all processes together, split across them), unlike timm's per-process -b; "
        "the LR follows the recipe's scaling rule",
    )
    g.add_argument("--seed", type=int_in_range(0, SEED_MAX), default=0, help="seed of the run's randomness (default 0)")
    g.add_argument("--seeds", metavar="S,S,...", help="run once per seed (e.g. 0,1,2), one run directory each")


def _data_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--dataset",
        help=f"train on this dataset instead of the recipe's: {', '.join(DATASETS)}, or hfds/ORG/NAME (a hub dataset "
        "in the local Hugging Face cache); refused if it is not there",
    )
    g.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="where the dataset lives (as timm's --data-dir); refused if absent"
    )
    g.add_argument("--download", action="store_true", help="let torchvision download the dataset into --data-dir")
    g.add_argument(
        "--workers",
        type=int_in_range(0),
        default=DEFAULT_WORKERS,
        metavar="N",
        help="DataLoader worker processes per process (default: the machine's cores less two, at most 8)",
    )
    g.add_argument(
        "--loader",
        choices=LOADERS,
        default="auto",
        help="memory: whole split on the device, augmented per batch there; workers: per-image transforms in "
        "DataLoader workers; auto (default): memory wherever the dataset and the recipe's augmentations allow",
    )
    g.add_argument(
        "--augment-on",
        choices=AUGMENT_ON,
        default="auto",
        help="where the recipe's RandAugment/AutoAugment/AugMix policy runs: device (batched, per sample) or "
        "workers (per image, in PIL); auto (default): the device wherever it has the policy",
    )
    g.add_argument(
        "--decode-on",
        choices=DECODE_ON,
        default="auto",
        help="where training JPEGs are decoded on the per-image path: device (the workers read bytes and draw the "
        "crops; one batched decode_jpeg per batch, nvJPEG on a GPU) or workers (PIL); auto (default): the device "
        "where CUDA and torchvision's nvJPEG are there",
    )


def _weights_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--pretrained-file",
        type=Path,
        metavar="FILE",
        help="start from these weights (safetensors or weights-only; timm's --initial-checkpoint); for timm's hub "
        "weights use --set pretrained=True",
    )
    g.add_argument("--save-weights", type=Path, metavar="FILE", help="write the final weights here as safetensors")
    g.add_argument(
        "--eval-only",
        action="store_true",
        help="evaluate the weights of --pretrained-file (or the hub's, with --set pretrained=True) with the recipe's "
        "evaluation settings instead of training (torchvision's --test-only)",
    )


def _checkpoint_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue this run directory from its last checkpoint, with the options it started with (timm's "
        "--resume takes a checkpoint file)",
    )
    g.add_argument("--force", action="store_true", help="with --resume: accept a changed recipe or seed")
    g.add_argument(
        "--save-every",
        type=int_in_range(0),
        default=0,
        metavar="N",
        help="also checkpoint every N updates (default 0: at each epoch's end only)",
    )
    g.add_argument("--keep", type=int_in_range(1), default=2, metavar="K", help="checkpoints to keep (default 2)")


def _logging_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--output", type=Path, default=Path("runs"), metavar="DIR", help="where run directories go (default runs/)"
    )
    g.add_argument(
        "--log-with",
        metavar="TRACKERS",
        help="experiment trackers accelerate knows: tensorboard, wandb, mlflow, ... (comma-separated) or all",
    )
    g.add_argument("--project", help="tracker project name (default recipe-harness)")
    g.add_argument(
        "--log-every", type=int_in_range(1), default=50, metavar="N", help="read loss and accuracy every N updates"
    )


def _speed_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--micro-batch",
        type=int_in_range(1),
        metavar="N",
        help="images per process in one forward/backward, a size (timm's --grad-accum-steps is a count); updates "
        "accumulate global / (N x processes) of them (default: the largest that fits on a GPU, the whole per-process "
        "batch on CPU)",
    )
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the model (recorded in the run record); --no-compile resumes a compiled run without",
    )
    g.add_argument("--threads", type=int_in_range(1), help="CPU threads per process (default: cores / local processes)")
    g.add_argument("--deterministic", action="store_true", help="deterministic torch algorithms (slower)")


def _inspect_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--list", action="store_true", help="list the recipes with their reported numbers")
    g.add_argument("--recipes-dir", type=Path, metavar="DIR", help="with --list: also list the recipe files in DIR")
    g.add_argument(
        "--show",
        metavar="NAME|FILE",
        help="print a published recipe: its reported numbers and source, notes, UNVERIFIED settings and fields",
    )
    g.add_argument("--schema", action="store_true", help="print the JSON Schema of a recipe (file)")
    g.add_argument(
        "--dump-recipe",
        type=Path,
        metavar="FILE.yaml",
        help="write the resolved recipe (after the budget, --set and the data) here, or to stdout with -",
    )
    g.add_argument(
        "--format",
        choices=DUMP_FORMATS,
        default="harness",
        help="with --dump-recipe: a recipe file (harness, default) or an args.yaml for timm's train.py -c (timm)",
    )
    g.add_argument(
        "--processes",
        type=int_in_range(1),
        help="with --format timm: the processes train.py is to run on (batch_size per process = global / N; "
        "default: this launch's)",
    )
    g.add_argument(
        "--estimate",
        action="store_true",
        help="time a few updates and an evaluation slice and project the schedule (estimate.json); trains nothing",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None:
        return args
    # A resume re-plans from the options the run was started with; options given now override them.
    saved = _saved_options(args.resume)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    merged = {**vars(build_parser().parse_args([])), **saved, **given}
    for key in ("data_dir", "output", "pretrained_file", "save_weights"):
        merged[key] = Path(merged[key]) if merged[key] is not None else None
    return argparse.Namespace(**merged)


def _saved_options(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.is_file():
        raise SystemExit(f"error: --resume {run_dir} is not a run directory (no run.json); pass one from runs/")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise SystemExit(f"error: {path} is corrupted ({e}); it cannot be resumed") from None


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything decided before any process touches a device or the disk."""

    published: Recipe
    recipe: Recipe
    published_source: str  # registered name or recipe file of `published`
    dataset: str
    budget: str
    notices: list[str]
    lr_rescale: dict | None
    saved_args: dict
    resume_dir: Path | None
    log_with: list[str]
    synthetic_data: bool = False  # --estimate without the dataset: timed on random images of its shape
    given: dict[str, str] = dataclasses.field(default_factory=dict)  # field -> the option that set it (--epochs)
    source: str | None = None  # the name the data is read under, where it differs from `dataset` (a hub repository)
    stand_in: str | None = None  # for the bare demo on the stand-in: what an error quoting its batch must add


def _fallback(dataset: str, budget: str, missing: DataError, notices: list[str]) -> tuple[str, str]:
    """Without the recipe's dataset, train on the bundled one at a short budget, and say so."""
    budget = "smoke" if budget == "smoke" else "proxy"
    stand_in = MNIST_STAND_IN if dataset == "mnist" else FALLBACK_DATASET
    notices.append(f"{dataset} not available ({missing}); running on {stand_in} at the {budget} budget instead")
    return budget, stand_in


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """The data a run reads: the recipe's (or --dataset's), synthetic images for an estimate without it, or the
    bundled stand-in for the bare demo (`--recipe X` with no data options)."""

    dataset: str
    source: str  # the name the data is read under (a hub repository), else the dataset
    budget: str
    synthetic: bool = False
    stand_in_for: str | None = None  # the dataset the stand-in replaces


def choose_data(args: argparse.Namespace, recipe: Recipe, notices: list[str]) -> DataChoice:
    """Check the data is there. Data the user named (--dataset, --data-dir) or the full budget asked for is never
    replaced: DataError saying where it looked. Only the bare demo falls back to the stand-in, with a notice."""
    budget = args.budget or "full"
    source = args.dataset or recipe.dataset
    dataset = catalog_name(source)  # a hub repository of ImageNet-1k is imagenet
    dataset_info(dataset)
    try:
        check_available(source, args.data_dir, args.download)
    except DataError as missing:
        if args.estimate:  # timed on random images of the dataset's shape instead
            notices.append(f"{dataset} not available ({missing}); estimating on synthetic data of its shape and size")
            return DataChoice(dataset, source, budget, synthetic=True)
        if args.dataset or args.data_dir is not None:
            raise
        if args.budget == "full":
            raise DataError(
                f"{missing} (--budget full trains on the recipe's own data; without --budget, --recipe alone runs "
                f"the demo on the bundled stand-in)"
            ) from None
        budget, stand_in = _fallback(dataset, budget, missing, notices)
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


def plan_run(args: argparse.Namespace) -> Plan:
    if not args.recipe:
        raise ConfigError("--recipe is required; valid recipes: " + ", ".join(list_recipes()))
    resolved = resolve(args.recipe, batch_size=settled_batch(args.set))
    log_with = parse_log_with(args.log_with)
    notices = list(resolved.notices)
    data = choose_data(args, resolved.recipe, notices)
    if data.dataset == MNIST_STAND_IN:
        notices.append(MNIST_5K_PROVENANCE)
    try:
        return _plan_recipe(args, resolved, data, notices, log_with)
    except ConfigError as e:
        if data.stand_in_for is None:
            raise
        raise ConfigError(explained(e, stand_in_context(resolved.published, data))) from None


def _plan_recipe(
    args: argparse.Namespace, resolved: Resolved, data: DataChoice, notices: list[str], log_with: list[str]
) -> Plan:
    published, start = resolved.published, resolved.recipe
    info = dataset_info(data.dataset)
    recipe = adapt_to_dataset(override(start, "--dataset", dataset=data.dataset), info)
    recipe = apply_budget(recipe, data.budget, info)
    overrides, given = command_line_overrides(args)
    overrides, warmup_notice = shorten_warmup(recipe, overrides, given)
    notices += [warmup_notice] if warmup_notice else []
    recipe = apply_overrides(recipe, overrides, given)
    recipe, size_notice = follow_test_size(published, recipe, overrides)
    notices += [size_notice] if size_notice else []
    try:
        world, source = int(os.environ.get("WORLD_SIZE", "1")), None if data.synthetic else data.source
        choose_route(args.loader, args.augment_on, args.decode_on, recipe, data.dataset, world, source)
    except RouteError as e:
        raise ConfigError(str(e)) from None
    if args.pretrained_file is not None and not args.pretrained_file.is_file():
        raise ConfigError(f"--pretrained-file {args.pretrained_file} does not exist")
    check_batches(recipe, args)
    if args.eval_only:
        check_eval_only(args, recipe)
    # A recipe file that sets its own LR (a dumped run's, already rescaled) keeps it; an evaluation trains
    # nothing, so its learning rate is left as published.
    lr_set = "lr" in overrides or start.lr != published.lr or args.eval_only
    recipe, lr_rescale = rescale_lr(published, recipe, lr_overridden=lr_set)
    if lr_rescale:
        notices.append(
            f"lr rescaled {lr_rescale['published_lr']:.4g} -> {lr_rescale['lr']:.4g} ({lr_rescale['rule']} rule, "
            f"global batch {lr_rescale['published_batch_size']} -> {lr_rescale['batch_size']})"
        )
    saved_args = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in RUN_ONLY_OPTIONS}
    return Plan(
        published,
        recipe,
        resolved.published_source,
        data.dataset,
        data.budget,
        notices,
        lr_rescale,
        saved_args,
        args.resume,
        log_with,
        data.synthetic,
        given,
        data.source if data.source != data.dataset else None,
        stand_in_context(published, data) if data.stand_in_for else None,
    )


def settled_batch(items: list[str]) -> int | None:
    """`--set batch_size=N`: the global batch a timm args file ran at (its batch_size is per process)."""
    value = parse_overrides(items).get("batch_size")
    return value if type(value) is int and value > 0 else None


def command_line_overrides(args: argparse.Namespace) -> tuple[dict, dict[str, str]]:
    """The recipe fields set on the command line, and the option that set each (--epochs wins over --set)."""
    overrides = parse_overrides(args.set)
    given = dict.fromkeys(overrides, "--set")
    for field, option, value in (("epochs", "--epochs", args.epochs), ("batch_size", "--batch-size", args.batch_size)):
        if value is not None:
            overrides[field], given[field] = value, option
    return overrides, given


def check_eval_only(args: argparse.Namespace, recipe: Recipe) -> None:
    if args.pretrained_file is None and not recipe.pretrained:
        raise ConfigError("--eval-only needs weights: pass --pretrained-file FILE, or --set pretrained=True (hub)")
    clashing = [flag for flag, given in (("--resume", args.resume), ("--save-weights", args.save_weights)) if given]
    if clashing:
        raise ConfigError(f"--eval-only trains nothing, so {' and '.join(clashing)} cannot go with it")


def check_batches(recipe: Recipe, args: argparse.Namespace) -> None:
    """Refuse a micro-batch that does not divide the global batch over the launched processes, before any work."""
    from harness.batching import mixes_pairs, split_batch

    split_batch(recipe.batch_size, int(os.environ.get("WORLD_SIZE", "1")), args.micro_batch, even=mixes_pairs(recipe))


def check_dump_options(args: argparse.Namespace) -> None:
    if args.format != "harness" and args.dump_recipe is None:
        raise ConfigError(f"--format {args.format} goes with --dump-recipe FILE.yaml")
    if args.processes is not None and args.format != "timm":
        raise ConfigError("--processes goes with --dump-recipe FILE.yaml --format timm")


def parse_seeds(text: str | None, seed: int, resuming: bool) -> list[int]:
    if text is None:
        return [seed]
    if resuming:
        raise ConfigError("--seeds starts new runs; resume each run directory with --resume alone")
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}") from None
    out_of_range = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if out_of_range:
        raise ConfigError(f"--seeds {text}: seed {out_of_range[0]} is out of range; {describe_range(0, SEED_MAX)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text} repeats a seed")
    return seeds


def main(argv: list[str] | None = None) -> int:
    """The command line (console script `recipe-harness`, `python -m harness.run`, `harness/run.py`): the exit
    status, 2 for bad input (one line on stderr)."""
    try:
        args = parse_args(argv)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise
    if args.list or args.schema or args.show:
        return _describe(args)
    try:
        check_dump_options(args)
        seeds = parse_seeds(args.seeds, args.seed, args.resume is not None)
        runs = [argparse.Namespace(**{**vars(args), "seed": seed}) for seed in seeds]
        plans = [plan_run(run) for run in runs]
        budget_limits(plans[0].budget)
        if args.dump_recipe is not None:
            return _dump(plans[0], args)
        from harness.results import check_writable

        check_writable(args.output)
    except (ConfigError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _run_all(plans, runs, args)


def _mode(args: argparse.Namespace) -> Callable[[Plan, argparse.Namespace], int]:
    """What each run does with its plan: evaluate the weights (--eval-only), time a few updates and project the
    schedule (--estimate), or train. Imported here: --help, --list and --dump-recipe do without these modules."""
    if args.eval_only:
        from harness.evaluate_only import evaluate_weights

        return evaluate_weights
    if args.estimate:
        from harness.estimate import estimate

        return estimate
    from harness.train import train

    return train


def _run_all(plans: list[Plan], runs: list[argparse.Namespace], args: argparse.Namespace) -> int:
    from harness.train import RUN_ERRORS

    run_one = _mode(args)
    if args.deterministic:
        torch_deterministic()
    for plan, run in zip(plans, runs, strict=True):
        try:
            status = run_one(plan, run)
        except RUN_ERRORS as e:
            print(f"error: {explained(e, plan.stand_in)}", file=sys.stderr)
            return 2
        if status:
            return status
    if len(runs) > 1:
        print(f"{len(runs)} runs written; mean and spread over the seeds: python -m harness.report {args.output}")
    return 0


def _dump(plan: Plan, args: argparse.Namespace) -> int:
    """--dump-recipe: the planned recipe as a recipe file or a timm args.yaml (an error about a stand-in plan's
    batch says whose batch it is)."""
    try:
        if args.format == "timm":
            return dump_timm_args(plan, args)
        return dump_recipe(plan, args.dump_recipe)
    except ConfigError as e:
        if plan.stand_in is None:
            raise
        raise ConfigError(explained(e, plan.stand_in)) from None


def _describe(args: argparse.Namespace) -> int:
    """--list (with --recipes-dir), --show or --schema: print and exit."""
    if args.schema:
        from recipes._base import recipe_schema

        print(json.dumps(recipe_schema(), indent=2))
        return 0
    from harness.listing import print_recipes, show_recipe
    from harness.recipe_files import recipe_files

    try:
        if args.show:
            print(show_recipe(resolve(args.show)), end="")
            return 0
        files = recipe_files(args.recipes_dir) if args.recipes_dir is not None else []
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_recipes(files)
    return 0


def _notes(notices: list[str], stream=None) -> None:
    for notice in notices:
        print(f"note: {notice}", file=stream or sys.stdout)


def dump_recipe(plan: Plan, path: Path) -> int:
    """Write the planned recipe as a file that re-runs it as it is (a variant of the published recipe); `-`
    prints it (the notices then go to stderr, so stdout stays a recipe file)."""
    from harness.results import atomic_write_text

    to_stdout = str(path) == "-"
    if not to_stdout and path.suffix not in SUFFIXES:
        raise ConfigError(f"--dump-recipe {path} must end in {', '.join(SUFFIXES)} (or be - for stdout)")
    if path.suffix == ".json":
        text = json.dumps(recipe_mapping(plan.recipe, plan.published_source), indent=2) + "\n"
    else:
        text = recipe_yaml(plan.recipe, plan.published_source)
    if to_stdout:
        print(text, end="")
        _notes(plan.notices, sys.stderr)
        return 0
    atomic_write_text(path, text)
    print(f"wrote {path}")
    _notes(plan.notices)
    return 0


def dump_timm_args(plan: Plan, args: argparse.Namespace) -> int:
    """Write the planned recipe as the args.yaml timm's train.py trains it from (`train.py -c FILE`), and print
    what train.py will not do the same and the command line; `-` prints the YAML (the rest goes to stderr)."""
    import yaml

    from harness.results import atomic_write_text
    from harness.timm_args import export_notices, timm_args_from_recipe, train_py_command

    path = args.dump_recipe
    to_stdout = str(path) == "-"
    if not to_stdout and path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--dump-recipe {path} --format timm must end in .yaml or .yml (train.py -c reads YAML)")
    processes = args.processes or int(os.environ.get("WORLD_SIZE", "1"))
    per_process, left = divmod(plan.recipe.batch_size, processes)
    if left:
        raise ConfigError(f"--processes {processes} does not divide the global batch {plan.recipe.batch_size}")
    if args.micro_batch is not None and per_process % args.micro_batch:
        raise ConfigError(f"--micro-batch {args.micro_batch} does not divide the per-process batch {per_process}")
    accumulation = per_process // args.micro_batch if args.micro_batch else 1
    timm_args = timm_args_from_recipe(plan.recipe, processes, accumulation, folder_classes(plan.dataset, args.data_dir))
    text = yaml.safe_dump(timm_args, default_flow_style=False)
    stream = sys.stderr if to_stdout else sys.stdout
    if to_stdout:
        print(text, end="")
    else:
        atomic_write_text(path, text)
        print(f"wrote {path} (timm train.py settings)")
    caps = budget_limits(plan.budget)
    if caps.max_train_samples is not None:
        print(
            f"note: the {plan.budget} budget's cap of {caps.max_train_samples} training images has no train.py flag",
            file=stream,
        )
    _notes([*plan.notices, *export_notices(plan.recipe, timm_args)], stream)
    print(f"train it with timm's train.py: {train_py_command(path, processes, args.data_dir)}", file=stream)
    return 0


def folder_classes(dataset: str, data_dir: Path | None) -> int | None:
    """The class count of an image-folder dataset in --data-dir (its train/ class folders), else None."""
    train = data_dir / "train" if data_dir is not None else None
    if dataset not in ("folder", "imagenet") or train is None or not train.is_dir():
        return None
    return sum(1 for p in train.iterdir() if p.is_dir()) or None


def torch_deterministic() -> None:
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


if __name__ == "__main__":
    sys.exit(main())
