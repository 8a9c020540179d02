"""Train a registered recipe through accelerate and compare it with the published number.

    accelerate launch harness/run.py --recipe rsb_a3
    python harness/run.py --recipe rsb_a3 --budget smoke     # same as a one-process launch
    python harness/run.py --list
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from harness.memory import LOADERS, unsupported
from recipes import Recipe, get_recipe, list_recipes

FALLBACK_DATASET = "digits"
# Leave two cores to the training process itself; on a 2-core machine the main process loads data.
DEFAULT_WORKERS = max(0, min(8, (os.cpu_count() or 1) - 2))


RUN_ONLY_OPTIONS = ("resume", "force", "list", "seeds")  # options that describe this invocation, not the run


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--seeds", metavar="S,S,...", help="run once per seed (e.g. 0,1,2), one run directory each")
    p.add_argument("--output", type=Path, default=Path("runs"), help="directory for run records (runs/)")
    p.add_argument("--threads", type=int, help="CPU threads per process (default: cores / local processes)")
    p.add_argument("--save-every", type=int, default=0, metavar="N", help="also checkpoint every N updates")
    p.add_argument("--keep", type=int, default=2, metavar="K", help="complete checkpoints to keep (default 2)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run from its last checkpoint")
    p.add_argument("--force", action="store_true", help="with --resume: accept a changed recipe or seed")
    p.add_argument("--pretrained-file", type=Path, help="start from these weights (safetensors or weights-only)")
    p.add_argument("--save-weights", type=Path, help="write the final weights here as safetensors")
    p.add_argument("--deterministic", action="store_true", help="deterministic torch algorithms")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="DataLoader worker processes")
    p.add_argument(
        "--loader",
        choices=LOADERS,
        default="auto",
        help="memory: whole split on the device, augmented per batch there; workers: per-image transforms in "
        "DataLoader workers; auto (default): memory wherever the dataset and the recipe's augmentations allow",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (recorded in the run record)")
    p.add_argument(
        "--micro-batch",
        type=int,
        metavar="N",
        help="images per process in one forward/backward; updates accumulate global / (N x processes) of them "
        "(default: the largest that fits on a GPU, the whole per-process batch on CPU)",
    )
    p.add_argument("--log-every", type=int, default=50, metavar="N", help="read loss and accuracy every N updates")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="time a few updates and an evaluation slice and project the schedule (estimate.json); trains nothing",
    )
    return p


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
    dataset: str
    budget: str
    notices: list[str]
    lr_rescale: dict | None
    saved_args: dict
    resume_dir: Path | None


def _fallback(dataset: str, budget: str, missing: DataError, notices: list[str]) -> tuple[str, str]:
    """Without the recipe's dataset, train on the bundled one at a short budget, and say so."""
    budget = "smoke" if budget == "smoke" else "proxy"
    notices.append(f"{dataset} not available ({missing}); running on {FALLBACK_DATASET} at the {budget} budget instead")
    return budget, FALLBACK_DATASET


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
        if args.estimate:  # timed on random images of the dataset's shape instead
            notices.append(f"{dataset} not available ({missing}); estimating on synthetic data of its shape and size")
        elif args.dataset:
            raise
        else:
            budget, dataset = _fallback(dataset, budget, missing, notices)
    info = dataset_info(dataset)
    recipe = adapt_to_dataset(dataclasses.replace(published, dataset=dataset), info)
    recipe = apply_budget(recipe, budget, info)
    overrides = parse_overrides(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    recipe = apply_overrides(recipe, overrides)
    if args.loader == "memory":
        reasons = unsupported(recipe, dataset, int(os.environ.get("WORLD_SIZE", "1")))
        if reasons:
            raise ConfigError(f"--loader memory cannot run {recipe.name}: {'; '.join(reasons)}; use --loader workers")
    if args.pretrained_file is not None and not args.pretrained_file.is_file():
        raise ConfigError(f"--pretrained-file {args.pretrained_file} does not exist")
    check_batches(recipe, args)
    recipe, lr_rescale = rescale_lr(published, recipe, lr_overridden="lr" in overrides)
    if lr_rescale:
        notices.append(
            f"lr rescaled {lr_rescale['published_lr']:.4g} -> {lr_rescale['lr']:.4g} ({lr_rescale['rule']} rule, "
            f"global batch {lr_rescale['published_batch_size']} -> {lr_rescale['batch_size']})"
        )
    saved_args = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in RUN_ONLY_OPTIONS
    }
    return Plan(published, recipe, dataset, budget, notices, lr_rescale, saved_args, args.resume)


def check_batches(recipe: Recipe, args: argparse.Namespace) -> None:
    """Refuse a micro-batch that does not divide the global batch over the launched processes, before any work."""
    from harness.batching import split_batch

    if args.log_every is not None and args.log_every < 1:
        raise ConfigError(f"--log-every must be at least 1, got {args.log_every}")
    split_batch(recipe.batch_size, int(os.environ.get("WORLD_SIZE", "1")), args.micro_batch,
                even=recipe.mixup > 0 or recipe.cutmix > 0)


def parse_seeds(text: str | None, seed: int, resuming: bool) -> list[int]:
    if text is None:
        return [seed]
    if resuming:
        raise ConfigError("--seeds starts new runs; resume each run directory with --resume alone")
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text} repeats a seed")
    return seeds


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise
    if args.list:
        from harness.listing import print_recipes

        print_recipes()
        return 0
    try:
        seeds = parse_seeds(args.seeds, args.seed, args.resume is not None)
        runs = [argparse.Namespace(**{**vars(args), "seed": seed}) for seed in seeds]
        plans = [plan_run(run) for run in runs]
        budget_limits(plans[0].budget)
        from harness.results import check_writable

        check_writable(args.output)
    except (ConfigError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from harness.build import WeightsError
    from harness.checkpoint import CheckpointError
    from harness.train import train

    if args.estimate:
        from harness.estimate import estimate as train  # the same plan, timed and projected instead of trained

    if args.deterministic:
        torch_deterministic()
    for plan, run in zip(plans, runs, strict=True):
        try:
            status = train(plan, run)
        except (ConfigError, DataError, CheckpointError, WeightsError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if status:
            return status
    if len(seeds) > 1:
        print(f"{len(seeds)} runs written; mean and spread over the seeds: python -m harness.report {args.output}")
    return 0


def torch_deterministic() -> None:
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


if __name__ == "__main__":
    sys.exit(main())
