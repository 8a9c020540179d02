"""The run's command line: its argument parser, and the RunOptions a parsed command line describes.

args = parse_args(["--recipe", "rsb_a3", "--budget", "smoke"])   # argparse.Namespace, one-line usage errors
options = options_from_args(args)                                  # harness.plan.RunOptions
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.config import BUDGETS
from harness.data import DATASETS
from harness.data.route import AUGMENT_ON, DECODE_ON, LOADERS
from harness.options import OneLineErrorParser, int_in_range
from harness.plan import DEFAULT_WORKERS, SEED_MAX, RunOptions
from harness.recipe_files import SUFFIXES

DUMP_FORMATS = ("harness", "timm")

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


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The RunOptions of a parsed command line (the options that describe only this invocation are left out)."""
    return RunOptions.from_saved(vars(args))


def parse_options(argv: list[str]) -> RunOptions:
    """The RunOptions of a command line (SystemExit with a one-line message for a usage error)."""
    return options_from_args(parse_args(argv))
