"""The harness's way in for the flags and names a timm or torchvision user types first.

`--lr 0.1`, `-b 256` or `--amp` are refused with the harness's equivalent in one line; `--set learning_rate=0.1`
is answered with `lr`. A recipe field is set with `--set FIELD=VALUE`, and the field names are timm's flag names
(`--weight-decay` is `weight_decay`), so most flags map by name; the tables hold the rest.

unrecognized_hint(["--lr", "0.1"])              # "--lr is a recipe field here: use --set lr=0.1"
close_option(["--epoch", "5"], parser_options)   # "--epochs"
"""

from __future__ import annotations

import dataclasses
import difflib

from recipes import Recipe, setting_fields
from recipes._base import did_you_mean

# Names other tools give a recipe field (timm's train.py, torchvision's references/classification/train.py, Hugging
# Face's TrainingArguments), as --set keys or flags with "-" read as "_".
FIELD_ALIASES = {
    "learning_rate": "lr",
    "base_lr": "lr",
    "lr_base": "lr",
    "wd": "weight_decay",
    "optimizer": "opt",
    "optim": "opt",
    "scheduler": "sched",
    "lr_scheduler": "sched",
    "lr_warmup_epochs": "warmup_epochs",
    "warmup": "warmup_epochs",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "label_smoothing": "smoothing",
    "drop": "drop_rate",
    "dropout": "drop_rate",
    "auto_augment": "aa",
    "autoaugment": "aa",
    "random_erase": "reprob",
    "mixup_alpha": "mixup",
    "cutmix_alpha": "cutmix",
    "ra_reps": "aug_repeats",
    "clip_grad_norm": "clip_grad",
    "max_grad_norm": "clip_grad",
    "model_ema_steps": "model_ema",
    "ema": "model_ema",
    "arch": "model",
    "input_size": "img_size",
    "image_size": "img_size",
    "train_crop_size": "img_size",
    "val_crop_size": "test_img_size",
    "bce": "bce_loss",
    "train_interp": "train_interpolation",
}

# Flags of timm's train.py and torchvision's references that are not recipe fields, and what to use here.
FLAG_HINTS = {
    "-b": "-b is timm's per-process batch; here --batch-size N is the global batch (over all processes), "
    "or --set batch_size=N",
    "-j": "use --workers N (DataLoader worker processes)",
    "--data-path": "use --data-dir DIR (and --dataset NAME for a dataset other than the recipe's)",
    "--data": "use --data-dir DIR (and --dataset NAME for a dataset other than the recipe's)",
    "--test-only": "use --eval-only with --pretrained-file FILE (or --set pretrained=True for timm's hub weights)",
    "--evaluate": "use --eval-only with --pretrained-file FILE (or --set pretrained=True for timm's hub weights)",
    "--grad-accum-steps": "--micro-batch N is a size here, not a count: images per process in one forward/backward "
    "(per-process batch / accumulation steps)",
    "--initial-checkpoint": "use --pretrained-file FILE (safetensors or a weights-only checkpoint)",
    "--weights": "use --pretrained-file FILE, or --set pretrained=True for timm's hub weights",
    "--pretrained": "use --set pretrained=True (timm's hub weights) or --pretrained-file FILE",
    "--checkpoint-hist": "use --keep K (checkpoints kept)",
    "--recovery-interval": "use --save-every N (a checkpoint every N updates)",
    "--log-wandb": "use --log-with wandb",
    "--torchcompile": "use --compile",
    "--use-deterministic-algorithms": "use --deterministic",
    "--num-classes": "the class count comes from the dataset (--dataset, --data-dir)",
    "--device": "accelerate places the run: accelerate launch [--num_processes N] harness/run.py ... "
    "(CUDA_VISIBLE_DEVICES picks the GPUs)",
    "--dist-url": "accelerate starts the processes: accelerate launch --num_processes N harness/run.py ...",
    "--world-size": "accelerate starts the processes: accelerate launch --num_processes N harness/run.py ...",
    "--local-rank": "accelerate starts the processes: accelerate launch --num_processes N harness/run.py ...",
    "--experiment": "use --output DIR (run directories go under it) and --project NAME for the trackers",
    "--channels-last": "not an option here; the harness keeps timm's default memory format",
}

_BOOLEAN_FIELDS = frozenset(f.name for f in dataclasses.fields(Recipe) if f.type in ("bool", bool))


def recipe_field(name: str) -> str | None:
    """The recipe field a flag or key names (`--weight-decay`, `learning_rate`), or None."""
    key = name.lstrip("-").replace("-", "_")
    key = FIELD_ALIASES.get(key, key)
    return key if key in setting_fields() else None


def set_key_hint(key: str) -> str:
    """`did you mean lr?` for an unknown --set key: its alias, else the closest field names."""
    field = recipe_field(key)
    return f"did you mean {field}?" if field else did_you_mean(key, setting_fields())


def unrecognized_hint(tokens: list[str]) -> str | None:
    """One line for the first unrecognized flag the tables know, else None."""
    for i, token in enumerate(tokens):
        if not token.startswith("-"):
            continue
        flag, _, value = token.partition("=")
        if not value and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value = tokens[i + 1]
        hint = _hint(flag, value)
        if hint:
            return hint
    return None


def _hint(flag: str, value: str) -> str | None:
    if flag in FLAG_HINTS:
        return f"{flag}: {FLAG_HINTS[flag]}" if not FLAG_HINTS[flag].startswith(flag) else FLAG_HINTS[flag]
    field = recipe_field(flag) if flag.startswith("--") else None
    if field is not None:
        value = value or ("True" if field in _BOOLEAN_FIELDS else "VALUE")
        return f"{flag} is a recipe field here: use --set {field}={value}"
    return None


def close_option(tokens: list[str], own_options: list[str]) -> str | None:
    """The option of ours closest to the first unrecognized flag (`--epoch` -> `--epochs`), or None."""
    for token in tokens:
        if token.startswith("-"):
            close = difflib.get_close_matches(token.partition("=")[0], own_options, n=1)
            if close:
                return close[0]
    return None
