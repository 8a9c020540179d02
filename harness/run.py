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
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.arguments import options_from_args, parse_args
from harness.config import ConfigError, budget_limits
from harness.data import DataError
from harness.errors import RUN_ERRORS
from harness.estimate import estimate
from harness.evaluate_only import evaluate_weights
from harness.listing import print_recipes, show_recipe
from harness.options import describe_range
from harness.plan import SEED_MAX, RunSpec, explained, plan
from harness.recipe_files import SUFFIXES, recipe_files, recipe_mapping, recipe_yaml, resolve
from harness.results import atomic_write_text, check_writable
from harness.timm_args import export_notices, timm_args_from_recipe, train_py_command
from harness.train import train
from recipes._base import recipe_schema

# What a run does with its spec (RunOptions.mode): train and estimate build on one skeleton
# (harness.assemble.build_run); evaluate uses its parts.
MODES: dict[str, Callable[[RunSpec], int]] = {"train": train, "evaluate": evaluate_weights, "estimate": estimate}


def plan_run(args: argparse.Namespace) -> RunSpec:
    """The spec of a parsed command line."""
    return plan(options_from_args(args))


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
        options = options_from_args(args)
        spec = plan(options)  # nothing planned depends on the seed
        specs = [dataclasses.replace(spec, options=dataclasses.replace(options, seed=seed)) for seed in seeds]
        if args.dump_recipe is not None:
            return _dump(specs[0], args)
        check_writable(options.output)
    except (ConfigError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_specs(specs)


def run_specs(specs: list[RunSpec]) -> int:
    """Run each spec in its mode; the first error is one line on stderr (exit status 2)."""
    if specs[0].options.deterministic:
        torch_deterministic()
    for spec in specs:
        try:
            status = MODES[spec.options.mode](spec)
        except RUN_ERRORS as e:
            print(f"error: {explained(e, spec.stand_in)}", file=sys.stderr)
            return 2
        if status:
            return status
    if len(specs) > 1:
        output = specs[0].options.output
        print(f"{len(specs)} runs written; mean and spread over the seeds: python -m harness.report {output}")
    return 0


def _dump(spec: RunSpec, args: argparse.Namespace) -> int:
    """--dump-recipe: the planned recipe as a recipe file or a timm args.yaml (an error about a stand-in plan's
    batch says whose batch it is)."""
    try:
        if args.format == "timm":
            return dump_timm_args(spec, args)
        return dump_recipe(spec, args.dump_recipe)
    except ConfigError as e:
        if spec.stand_in is None:
            raise
        raise ConfigError(explained(e, spec.stand_in)) from None


def _describe(args: argparse.Namespace) -> int:
    """--list (with --recipes-dir), --show or --schema: print and exit."""
    if args.schema:
        print(json.dumps(recipe_schema(), indent=2))
        return 0
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


def dump_recipe(plan: RunSpec, path: Path) -> int:
    """Write the planned recipe as a file that re-runs it as it is (a variant of the published recipe); `-`
    prints it (the notices then go to stderr, so stdout stays a recipe file)."""
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


def dump_timm_args(plan: RunSpec, args: argparse.Namespace) -> int:
    """Write the planned recipe as the args.yaml timm's train.py trains it from (`train.py -c FILE`), and print
    what train.py will not do the same and the command line; `-` prints the YAML (the rest goes to stderr)."""
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
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


if __name__ == "__main__":
    sys.exit(main())
