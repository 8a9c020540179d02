"""Train a registered recipe through accelerate and compare it with the published number.

    accelerate launch harness/run.py --recipe rsb_a3
    python harness/run.py --recipe rsb_a3 --budget smoke     # same as a one-process launch
    python harness/run.py --list
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
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
    parse_overrides,
    rescale_lr,
    validate,
)
from harness.data import DATASETS, DataError, check_available, dataset_info
from recipes import Recipe, get_recipe, list_recipes

FALLBACK_DATASET = "digits"
# Leave two cores to the training process itself; on a 2-core machine the main process loads data.
DEFAULT_WORKERS = max(0, min(8, (os.cpu_count() or 1) - 2))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a published recipe and compare with the reported number.")
    p.add_argument("--recipe", help="registered recipe name (see --list)")
    p.add_argument("--list", action="store_true", help="list the recipes with their reported numbers")
    p.add_argument("--dataset", help=f"train on this dataset instead of the recipe's: {', '.join(DATASETS)}")
    p.add_argument("--data-dir", type=Path, help="where the dataset lives")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--budget", choices=BUDGETS, help="full: as published (default); proxy: short; smoke: CI")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--batch-size", type=int, help="override the global batch size (split across processes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=Path("runs"), help="directory for run records (runs/)")
    p.add_argument("--threads", type=int, help="CPU threads per process (default: cores / local processes)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="DataLoader worker processes")
    return p.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything decided before any process touches a device or the disk."""

    published: Recipe
    recipe: Recipe
    dataset: str
    budget: str
    notices: list[str]
    lr_rescale: dict | None


def plan_run(args: argparse.Namespace) -> Plan:
    if not args.recipe:
        raise ConfigError("--recipe is required; valid recipes: " + ", ".join(list_recipes()))
    try:
        published = validate(get_recipe(args.recipe))
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    budget = args.budget or "full"
    notices = []
    dataset = args.dataset or published.dataset
    dataset_info(dataset)
    try:
        check_available(dataset, args.data_dir, args.download)
    except DataError as missing:
        if args.dataset:
            raise
        budget = "smoke" if budget == "smoke" else "proxy"
        notices.append(
            f"{dataset} not available ({missing}); running on {FALLBACK_DATASET} at the {budget} budget instead"
        )
        dataset = FALLBACK_DATASET
    info = dataset_info(dataset)
    recipe = adapt_to_dataset(dataclasses.replace(published, dataset=dataset), info)
    recipe = apply_budget(recipe, budget, info)
    overrides = parse_overrides(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    recipe = apply_overrides(recipe, overrides)
    recipe, lr_rescale = rescale_lr(published, recipe, lr_overridden="lr" in overrides)
    if lr_rescale:
        notices.append(
            f"lr rescaled {lr_rescale['published_lr']:.4g} -> {lr_rescale['lr']:.4g} ({lr_rescale['rule']} rule, "
            f"global batch {lr_rescale['published_batch_size']} -> {lr_rescale['batch_size']})"
        )
    return Plan(published, recipe, dataset, budget, notices, lr_rescale)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        from harness.listing import print_recipes

        print_recipes()
        return 0
    try:
        plan = plan_run(args)
        budget_limits(plan.budget)
        from harness.results import check_writable

        check_writable(args.output)
    except (ConfigError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from harness.train import train

    try:
        return train(plan, args)
    except (ConfigError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
