"""timm's train.py settings both ways: its `args.yaml` read as a recipe, a recipe written as one.

Every run of timm's `train.py` leaves `args.yaml`: each of its flags as it parsed them (`train.py -c FILE.yaml` reads
the same mapping back as its defaults).

- `recipe_from_timm_args` takes every flag that maps onto a recipe field. Flags that cannot change what is trained
  (paths, logging, workers, ...) are ignored and listed in one notice. Flags that would change it and that the harness
  does not implement are refused in one line unless they hold the value that turns them off (train.py's default); so
  is a mapped flag whose value the harness cannot train the same way (RandomErasing's pixel mode, several LR
  milestones). A flag that only acts with another one on
  (lr_noise_pct without lr_noise) is ignored while that one is off.
- `timm_args_from_recipe` writes the other way: train.py's defaults for every flag, the recipe's values on the mapped
  ones, and under the key `harness` the settings train.py has no flag for (its parser keeps an unknown key of a `-c`
  file without using it, and writes it back into its own args.yaml), so that reading the file back gives the recipe.

train.py's defaults are data here (`TRAIN_PY_DEFAULTS`: what timm 1.0's train.py parses from an empty command line),
with the flags of earlier versions that it no longer has. A flag the table lacks (a newer train.py's) is read safely:
off (None, False, 0, '', [], {}) it is ignored and listed, any other value is refused.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
from pydantic import ValidationError
from timm.data import resolve_data_config

from harness.build import _timm_schedule as harness_schedule
from harness.build import lr_scale_rule, scaled_lr
from harness.config import ConfigError
from harness.data.catalog import DATASETS, HUB_PREFIX
from harness.timm_defaults import EARLIER_TRAIN_PY_DEFAULTS, TRAIN_PY_DEFAULTS
from recipes import Recipe, Reference, setting_fields
from recipes._base import validation_message

KNOWN_DEFAULTS = {**EARLIER_TRAIN_PY_DEFAULTS, **TRAIN_PY_DEFAULTS}

# Flags that cannot change what is trained: where the data and the outputs lie, logging, loader and device
# mechanics, the seed (a run option here: --seed), checkpoint keeping, evaluation extras.
IGNORED = frozenset(
    {
        *("data", "data_dir", "train_split", "val_split"),
        *("dataset_download", "input_key", "target_key", "dataset_trust_remote_code"),
        *("resume", "no_resume_opt", "validation_batch_size", "validation_batch_size_multiplier"),
        *("channels_last", "fuser", "grad_checkpointing", "fast_norm", "torchscript", "torchcompile"),
        *("torchcompile_mode", "aot_autograd", "device", "device_modules", "local_rank"),
        *("synchronize_step", "amp_impl", "seed", "worker_seeding", "log_interval"),
        *("recovery_interval", "checkpoint_hist", "workers", "save_images", "pin_mem"),
        *("output", "use_multi_epochs_loader", "log_wandb", "wandb_project"),
        *("wandb_tags", "wandb_resume_id"),
    }
)
# Flags read onto recipe fields (or checked against what the harness does: remode, recount, clip_mode, dist_bn,
# num_classes).
MAPPED = frozenset(
    {
        *("model", "pretrained", "drop", "drop_path", "experiment", "dataset", "num_classes"),
        *("img_size", "input_size", "in_chans", "crop_pct", "mean", "std", "interpolation", "train_interpolation"),
        *("scale", "ratio", "hflip", "color_jitter", "aa", "reprob", "remode", "recount", "aug_repeats"),
        *("mixup", "cutmix", "mixup_prob", "mixup_switch_prob", "smoothing", "bce_loss", "bce_target_thresh"),
        *("opt", "lr", "lr_base", "lr_base_size", "lr_base_scale", "momentum", "weight_decay", "opt_kwargs"),
        *("clip_grad", "clip_mode", "batch_size", "grad_accum_steps"),
        *("sched", "epochs", "warmup_epochs", "warmup_lr", "min_lr", "decay_epochs", "decay_milestones"),
        *("decay_rate", "sched_on_updates", "cooldown_epochs", "warmup_prefix"),
        *("amp", "amp_dtype", "apex_amp", "native_amp", "model_ema", "model_ema_decay", "dist_bn"),
    }
)
# Every other known flag would change training and is not implemented: accepted only at its default.
NOT_IMPLEMENTED = frozenset(KNOWN_DEFAULTS) - IGNORED - MAPPED


def _set(flag: str) -> Callable[[dict], bool]:
    return lambda flags: not _is_off(flags.get(flag))


def _erases_mixed_batches(flags: dict) -> bool:
    """Random erasing and Mixup/CutMix both on: only then does train.py's prefetcher change the order of the two.
    (A value of the wrong type is reported where the flag is read.)"""

    def on(flag: str) -> bool:
        value = flags.get(flag)
        return isinstance(value, int | float) and value > 0

    return on("reprob") and (on("mixup") or on("cutmix")) and on("mixup_prob")


def _plateau(flags: dict) -> bool:
    return flags.get("sched") == "plateau"


def _iterable_dataset(flags: dict) -> bool:
    """train.py's dataset reads a stream whose length only --train/val-num-samples give (webdataset, TFDS)."""
    return str(flags.get("dataset") or "").startswith(("wds/", "tfds/"))


# Flags that act only while another flag is on; while it is off they are ignored, whatever their value.
ACTS_ONLY_WITH: dict[str, Callable[[dict], bool]] = {
    "lr_noise_pct": _set("lr_noise"),
    "lr_noise_std": _set("lr_noise"),
    "lr_cycle_mul": lambda flags: (flags.get("lr_cycle_limit") or 1) > 1,
    "lr_cycle_decay": lambda flags: (flags.get("lr_cycle_limit") or 1) > 1,
    "layer_decay_min_scale": _set("layer_decay"),
    "layer_decay_no_opt_scale": _set("layer_decay"),
    "resplit": _set("aug_splits"),
    "patience_epochs": _plateau,
    "eval_metric": _plateau,
    # Evaluation settings reach training only through the metric a plateau schedule watches: val_interval > 1 gives
    # it none on the skipped epochs, tta averages the evaluated logits.
    "val_interval": _plateau,
    "tta": _plateau,
    # An epoch of a stream is --train-num-samples long; the validation stream's length changes the plateau's metric.
    "train_num_samples": _iterable_dataset,
    "val_num_samples": lambda flags: _iterable_dataset(flags) and _plateau(flags),
    # train.py keeps a CPU EMA out of its evaluation and its dist_bn (the EMA it saves is not reduced).
    "model_ema_force_cpu": _set("model_ema"),
    **{k: _set("naflex_loader") for k in TRAIN_PY_DEFAULTS if k.startswith("naflex_") and k != "naflex_loader"},
    **{k: _set("kd_model_name") for k in TRAIN_PY_DEFAULTS if k.startswith("kd_") and k != "kd_model_name"},
    "distill_loss_weight": _set("kd_model_name"),
    "task_loss_weight": _set("kd_model_name"),
    **{k: _set("train_img_sizes") for k in ("train_batch_sizes", "train_size_probs", "variable_batch_loss_scale")},
    **{k: _set("train_img_sizes") for k in TRAIN_PY_DEFAULTS if k.startswith("train_size_")},
    "no_prefetcher": _erases_mixed_batches,
}
# Why a flag of ACTS_ONLY_WITH that acts is refused, where its name does not say it.
REFUSED_BECAUSE = {
    "no_prefetcher": "train.py without its prefetcher erases before Mixup/CutMix; the harness erases after them, "
    "as train.py does with its prefetcher",
}

HARNESS_KEY = "harness"  # recipe fields train.py has no flag for, in a file written here
TIMM_SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly")  # what create_scheduler_v2 builds
# harness dataset <-> train.py --dataset; an image folder is train.py's default ('').
TIMM_DATASET_NAMES = {
    "cifar10": "torch/cifar10",
    "cifar100": "torch/cifar100",
    "mnist": "torch/mnist",
    "fashion_mnist": "torch/fashion_mnist",
    "imagenet": "torch/imagenet",
}
FOLDER_DATASETS = ("imagenet", "folder")  # written as an image folder: train.py's --data-dir holds it
MAX_NAMED = 3  # flags a refusal names before it counts the rest
DEFAULT_MILESTONES = TRAIN_PY_DEFAULTS["decay_milestones"]


def _is_off(value: Any) -> bool:
    return value is None or value is False or value == 0 or value in ("", [], {})


def _show(value: Any) -> str:
    """A flag's value as a short readable token: 0.65, pixel, '', [90, 180], true."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, str):
        text = value or "''"
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _plain(value: Any) -> Any:
    """A recipe value as YAML holds it (tuples as lists)."""
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _whole(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _field_default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(Recipe) if f.name == name)


# A schedule that never decays, as the harness names it (its unused decay fields at their defaults).
CONSTANT = {
    "sched": "constant",
    "decay_epochs": _field_default("decay_epochs"),
    "decay_rate": _field_default("decay_rate"),
}


# --- reading ---------------------------------------------------------------------------------------------------


@dataclass
class _Reading:
    """One args file being read: its flags (train.py's defaults filled in), and what reading them found."""

    flags: dict
    origin: str
    refused: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def __getitem__(self, flag: str) -> Any:
        return self.flags.get(flag, KNOWN_DEFAULTS.get(flag))

    def refuse(self, flag: str, reason: str = "") -> None:
        self.refused.append(f"{flag}={_show(self[flag])}" + (f" ({reason})" if reason else ""))


def is_timm_args(fields: dict, path: Path | None = None) -> bool:
    """Whether a mapping holds train.py's flags (its args.yaml, or a `-c` config) rather than a recipe file's
    fields: it has no recipe `name`, and it is an `args.yaml` or mostly train.py flags, one at least not a recipe
    field's name."""
    if "name" in fields:
        return False
    if path is not None and path.name == "args.yaml":
        return True
    flags = set(fields) & (set(KNOWN_DEFAULTS) | {HARNESS_KEY})
    train_py_only = flags - {f.name for f in dataclasses.fields(Recipe)}
    return bool(train_py_only) and 2 * len(flags) >= len(fields)


def recipe_from_timm_args(
    args: dict,
    origin: str,
    batch_size: int | None = None,
    processes: int | None = None,
    name: str | None = None,
) -> tuple[Recipe, list[str]]:
    """The recipe timm's train.py trains with these flags (its args.yaml), and the notices reading them gave.

    `batch_size` (the global batch) or `processes` settles how many processes train.py ran on; without either,
    one (a notice says so). Flags the file lacks are at today's train.py defaults. ConfigError (one line) for a
    flag the harness does not implement, naming the first few."""
    reading = _Reading({**TRAIN_PY_DEFAULTS, **args}, origin)
    extras = reading.flags.pop(HARNESS_KEY, None) or {}
    ignored = _check_unmapped(reading)
    try:
        fields = _recipe_fields(reading, batch_size, processes)
    except (TypeError, ValueError, IndexError, AttributeError) as e:  # a flag of the wrong type (`reprob: high`)
        raise ConfigError(f"{origin}: a train.py flag has a value of the wrong type ({e})") from None
    if reading.refused:
        shown, more = reading.refused[:MAX_NAMED], len(reading.refused) - MAX_NAMED
        raise ConfigError(
            f"{origin}: train.py flags the harness does not implement: {', '.join(shown)}"
            + (f" and {more} more" if more > 0 else "")
        )
    recipe = _with_harness_settings(_recipe(fields, reading, name), extras, reading)
    missing = [flag for flag in TRAIN_PY_DEFAULTS if flag not in args]
    if missing:
        reading.notices.append(f"{len(missing)} train.py flags not in {origin} taken at train.py's defaults")
    return recipe, [*ignored, *reading.notices]


def _recipe_fields(r: _Reading, batch_size: int | None, processes: int | None) -> dict:
    fields = {
        **_model_fields(r),
        **_data_fields(r),
        **_augment_fields(r),
        **_loss_fields(r),
        **_schedule_fields(r),
        **_precision_fields(r),
        "batch_size": _global_batch(r, batch_size, processes),
    }
    return {**fields, **_optimizer_fields(r, fields["batch_size"])}


def _check_unmapped(r: _Reading) -> list[str]:
    """Refuse the flags that would change training and are not implemented; the notice that lists the ignored."""
    changed, unchanged = [], 0
    for flag, value in r.flags.items():
        if flag in MAPPED:
            continue
        acts = ACTS_ONLY_WITH.get(flag, lambda flags: True)(r.flags)
        if flag in IGNORED or (flag in NOT_IMPLEMENTED and not acts):
            if value == KNOWN_DEFAULTS[flag]:
                unchanged += 1
            else:
                changed.append(f"{flag}={_show(value)}")
        elif flag in NOT_IMPLEMENTED:
            if value != KNOWN_DEFAULTS[flag]:
                r.refuse(flag, REFUSED_BECAUSE.get(flag, ""))
        elif _is_off(value):
            changed.append(f"{flag}={_show(value)} (unknown, off)")
        else:
            r.refuse(flag, "unknown to the harness")
    if not changed and not unchanged:
        return []
    listed = ", ".join(changed) + (f" and {unchanged} more at train.py's defaults" if unchanged else "")
    if not changed:
        listed = f"{unchanged} flags, at train.py's defaults"
    return [f"ignored, as they cannot change what is trained: {listed}"]


def _model_fields(r: _Reading) -> dict:
    dataset = _dataset(r)
    _check_head(r, dataset)
    return {
        "model": r["model"],
        "pretrained": bool(r["pretrained"]),
        "drop_rate": r["drop"],
        "drop_path": r["drop_path"] or 0.0,
        "dataset": dataset,
    }


def _check_head(r: _Reading, dataset: str) -> None:
    """train.py gives the model --num-classes outputs (without it, the model's default head); the harness gives it
    one per class of the dataset. Where the dataset's class count is known they must agree."""
    info = DATASETS.get(dataset)
    classes = info.num_classes if info else None
    if not classes:
        return  # an image folder or a hub dataset: counted from the files when the run starts
    head = r["num_classes"]
    if head is None:
        try:
            head = timm.models.get_pretrained_cfg(r["model"]).num_classes
        except (AttributeError, RuntimeError, ValueError, KeyError):
            return  # an unknown model: the recipe's validation names it
    if head != classes:
        r.refuse("num_classes", f"train.py trained a {head}-class head; {dataset} has {classes} classes")


def _dataset(r: _Reading) -> str:
    name = r["dataset"] or ""
    if "/" not in name:  # train.py reads an image folder (or tar) from --data-dir
        r.notices.append(
            f"dataset {_show(name)} (train.py's image folder in --data-dir) read as the harness's folder dataset; "
            "pass --dataset imagenet when it holds ImageNet"
        )
        return "folder"
    if name.startswith(HUB_PREFIX):
        return name
    if name.startswith("wds/"):
        return "wds"
    by_timm_name = {timm_name: harness for harness, timm_name in TIMM_DATASET_NAMES.items()}
    if name.lower() in by_timm_name:
        return by_timm_name[name.lower()]
    r.refuse("dataset", f"the harness reads image folders, hfds/, wds/ and {', '.join(by_timm_name)}")
    return "folder"


def _data_config(r: _Reading) -> dict:
    """timm's own resolution of the input size, crop_pct, mean, std and interpolation: the flags where set, the
    model's pretrained config where not (as train.py's resolve_data_config does with the model it built)."""
    try:
        pretrained_cfg = timm.models.get_pretrained_cfg(r["model"])
    except (RuntimeError, ValueError, KeyError):
        pretrained_cfg = None  # an unknown model: the recipe's validation names it
    keys = ("in_chans", "input_size", "img_size", "crop_pct", "mean", "std", "interpolation")
    config = resolve_data_config(
        {k: r[k] for k in keys}, pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else None
    )
    if config is None:
        raise ConfigError(f"{r.origin}: timm's resolve_data_config returned nothing for model {r['model']}")
    return config


def _data_fields(r: _Reading) -> dict:
    channels = r["in_chans"] or (r["input_size"][0] if r["input_size"] else 3)
    if channels != 3:
        r.refuse("in_chans" if r["in_chans"] else "input_size", "the harness feeds three channels")
    config = _data_config(r)
    _, height, width = config["input_size"]
    if height != width:
        r.refuse("input_size", "square images only")
    evaluate = config["interpolation"]
    train = evaluate if r["no_aug"] or not r["train_interpolation"] else r["train_interpolation"]
    return {
        "train_interpolation": None if train == evaluate else train,
        "img_size": width,
        "test_img_size": width,  # train.py validates at the training size
        "crop_pct": config["crop_pct"],
        "mean": tuple(config["mean"]),
        "std": tuple(config["std"]),
        "interpolation": evaluate,
    }


def _augment_fields(r: _Reading) -> dict:
    if r["reprob"] > 0 and r["remode"] != "const":
        r.refuse("remode", "the harness erases with zeros: remode const")
    if r["reprob"] > 0 and r["recount"] != 1:
        r.refuse("recount", "the harness erases one box")
    repeats = r["aug_repeats"]
    if repeats != int(repeats):
        r.refuse("aug_repeats", "a whole number")
    return {
        "scale": tuple(r["scale"]),
        "ratio": tuple(r["ratio"]),
        "hflip": r["hflip"],
        "color_jitter": r["color_jitter"],
        "aa": r["aa"] or None,
        "reprob": r["reprob"],
        "aug_repeats": int(repeats),
        "mixup": r["mixup"],
        "cutmix": r["cutmix"],
        "mixup_prob": r["mixup_prob"],
        "mixup_switch_prob": r["mixup_switch_prob"],
    }


def _loss_fields(r: _Reading) -> dict:
    bce = bool(r["bce_loss"])
    if bce and not (r["mixup"] > 0 or r["cutmix"] > 0 or r["smoothing"]):
        bce = False  # train.py's loss choice: BCE only with Mixup/CutMix or smoothing, cross-entropy otherwise
        r.notices.append(
            "bce_loss without mixup, cutmix or smoothing: train.py trains with cross-entropy, so does this"
        )
    return {"smoothing": r["smoothing"], "bce_loss": bce, "bce_target_thresh": r["bce_target_thresh"]}


def _optimizer_fields(r: _Reading, global_batch: int) -> dict:
    opt = r["opt"]
    kwargs = dict(r["opt_kwargs"] or {})
    filter_bias_and_bn = kwargs.pop("filter_bias_and_bn", True)
    if kwargs:
        r.refuse("opt_kwargs", "only filter_bias_and_bn")
    if r["clip_grad"] is not None and r["clip_mode"] != "norm":
        r.refuse("clip_mode", "the harness clips the gradient norm")
    return {
        "opt": opt,
        "lr": r["lr"] or _lr_from_base(r, global_batch),  # train.py: `if not args.lr`
        "momentum": r["momentum"],
        "weight_decay": r["weight_decay"],
        "filter_bias_and_bn": filter_bias_and_bn,
        "clip_grad": r["clip_grad"],
    }


def _lr_from_base(r: _Reading, global_batch: int) -> float:
    """train.py's LR without --lr: lr_base scaled from lr_base_size to the global batch."""
    scale = r["lr_base_scale"]
    rule = ("sqrt" if scale == "sqrt" else "linear") if scale else lr_scale_rule(r["opt"])
    lr, _ = scaled_lr(r["lr_base"], r["opt"], r["lr_base_size"], global_batch, rule)
    r.notices.append(
        f"lr {lr:.4g} from lr_base {r['lr_base']:g} as train.py computes it for the global batch {global_batch} "
        f"({rule} rule from lr_base_size {r['lr_base_size']})"
    )
    return lr


def _global_batch(r: _Reading, batch_size: int | None, processes: int | None) -> int:
    if batch_size is not None:
        return batch_size
    per_process, accumulation = r["batch_size"], max(1, r["grad_accum_steps"] or 1)
    total = per_process * accumulation * (processes or 1)
    if processes is None:
        steps = f" x grad_accum_steps {accumulation}" if accumulation > 1 else ""
        r.notices.append(
            f"batch_size {per_process} per process{steps} in {r.origin} taken as the global batch {total} "
            f"(1 process); if it ran on N processes pass --set batch_size={total}*N"
        )
    return total


def _schedule_fields(r: _Reading) -> dict:
    if r["sched"] not in TIMM_SCHEDULERS:
        r.refuse("sched", f"timm's create_scheduler_v2 builds {', '.join(TIMM_SCHEDULERS)}")
    decay = {"sched": r["sched"], "decay_epochs": r["decay_epochs"], "decay_rate": r["decay_rate"]}
    if r["sched"] == "multistep":
        decay = _milestones(r)
    if decay["sched"] in ("step", "multistep") and decay["decay_rate"] == 1.0:
        decay = CONSTANT  # never decays: the harness's constant schedule
    return {
        **decay,
        "epochs": r["epochs"],
        "warmup_epochs": r["warmup_epochs"],
        "warmup_lr": r["warmup_lr"],
        "min_lr": r["min_lr"],
        "sched_on_updates": bool(r["sched_on_updates"]),
        "cooldown_epochs": r["cooldown_epochs"],
        "warmup_prefix": bool(r["warmup_prefix"]),
    }


def _milestones(r: _Reading) -> dict:
    """train.py's multistep milestones as the harness's schedules: none (constant), one decay (multistep at
    decay_epochs), or one at every epoch from a first one to the end (constant_exp, whose milestones harness.build
    places). timm decays once t + 1 reaches a milestone, so a milestone past the last epoch never acts."""
    given = r["decay_milestones"]
    milestones = sorted(given if given is not None else [r["decay_epochs"]])
    acting = [m for m in milestones if m <= r["epochs"]]
    if not milestones:
        return CONSTANT
    if len(acting) <= 1:
        return {"sched": "multistep", "decay_epochs": (acting or milestones)[0], "decay_rate": r["decay_rate"]}
    first = acting[0] - (0 if r["sched_on_updates"] else 1)
    if first >= 1 and acting == list(range(acting[0], r["epochs"] + 1)):
        return {"sched": "constant_exp", "decay_epochs": first, "decay_rate": r["decay_rate"]}
    r.refuse("decay_milestones", "the harness decays once (multistep) or every epoch from decay_epochs (constant_exp)")
    return {"sched": "multistep", "decay_epochs": acting[0], "decay_rate": r["decay_rate"]}


def _precision_fields(r: _Reading) -> dict:
    if r["dist_bn"] != "reduce":  # train.py's default, and what the harness does with several processes
        r.notices.append(
            f"dist_bn {_show(r['dist_bn'])}: the harness averages every process's BatchNorm statistics after each "
            "epoch, as train.py's default dist_bn reduce does"
        )
    return {
        "amp": bool(r["amp"] or r["apex_amp"] or r["native_amp"]),
        "amp_dtype": r["amp_dtype"],
        "model_ema": bool(r["model_ema"]),
        "model_ema_decay": r["model_ema_decay"],
    }


def _recipe(fields: dict, r: _Reading, name: str | None) -> Recipe:
    try:
        reference = Reference(
            source=f"timm train.py args.yaml {r.origin}",
            dataset=fields["dataset"],
            note="the settings of a timm training run, not a publication: no published figure",
            # args.yaml's batch_size is the per-process micro-batch: the images each BatchNorm normalised over
            per_device_batch=r["batch_size"],
            grad_accum_steps=max(1, r["grad_accum_steps"] or 1),
        )
        return Recipe(
            name=name or _name(r),
            summary=f"the settings timm's train.py ran with, from {r.origin}",
            reference=reference,
            **fields,
        )
    except ValidationError as e:
        raise ConfigError(f"{r.origin}: {validation_message(e)}") from None


def _name(r: _Reading) -> str:
    """The recipe's name: train.py's experiment, else the run folder's name (timm names it date-model-size)."""
    for candidate in (r["experiment"], Path(r.origin).parent.name):
        cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(candidate or "")).lstrip("_.-")
        if cleaned:
            return cleaned
    return "timm_args"


def _with_harness_settings(recipe: Recipe, extras: Any, r: _Reading) -> Recipe:
    """The recipe with the file's `harness` settings, which may only say what train.py's flags cannot: both must
    mean the same to train.py."""
    if not extras:
        return recipe
    valid = setting_fields()
    if not isinstance(extras, dict) or set(extras) - set(valid):
        unknown = sorted(set(extras) - set(valid)) if isinstance(extras, dict) else []
        raise ConfigError(
            f"{r.origin}: {HARNESS_KEY} must map recipe fields to values"
            + (f"; unknown: {', '.join(unknown)}; valid: {', '.join(valid)}" if unknown else "")
        )
    try:
        chosen = dataclasses.replace(recipe, **extras)
    except ValidationError as e:
        raise ConfigError(f"{r.origin}: {HARNESS_KEY}: {validation_message(e)}") from None
    before, after = _train_py_meaning(recipe), _train_py_meaning(chosen)
    disagree = [f for f in valid if getattr(before, f) != getattr(after, f)]
    if disagree:
        raise ConfigError(
            f"{r.origin}: the {HARNESS_KEY} settings change what train.py's flags say ({', '.join(disagree)}); "
            f"set those with train.py's flags and drop them from {HARNESS_KEY}"
        )
    return chosen


def _train_py_meaning(recipe: Recipe) -> Recipe:
    """What train.py would train for this recipe, read back as one (one process, the recipe's global batch)."""
    flags = train_py_flags(recipe)
    return recipe_from_timm_args(flags, "train.py's flags", batch_size=recipe.batch_size, name=recipe.name)[0]


# --- writing ---------------------------------------------------------------------------------------------------


def timm_args_from_recipe(
    recipe: Recipe, processes: int = 1, grad_accum_steps: int = 1, num_classes: int | None = None
) -> dict:
    """The args.yaml train.py would write for this recipe on `processes` processes: train.py's defaults for every
    flag, the recipe's values on the mapped ones (batch_size per process = global / processes / grad_accum_steps),
    and under `harness` the settings train.py's flags do not say, for `recipe_from_timm_args` to read back.
    `num_classes`: the class count of a dataset the catalog does not know it for (an image folder)."""
    flags = train_py_flags(recipe, processes, grad_accum_steps, num_classes)
    extras = harness_settings(recipe, flags)
    return {**flags, HARNESS_KEY: extras} if extras else flags


def harness_settings(recipe: Recipe, flags: dict) -> dict:
    """The recipe's settings that reading `flags` back would not give (rotate, freeze, a test size of its own...)."""
    back, _ = recipe_from_timm_args(flags, "train.py's flags", batch_size=recipe.batch_size, name=recipe.name)
    return {f: _plain(getattr(recipe, f)) for f in setting_fields() if getattr(back, f) != getattr(recipe, f)}


def train_py_flags(
    recipe: Recipe, processes: int = 1, grad_accum_steps: int = 1, num_classes: int | None = None
) -> dict:
    """train.py's flags (every one, at its default where the recipe does not set it) that train this recipe."""
    per_process, left = divmod(recipe.batch_size, processes * grad_accum_steps)
    if left or not per_process:
        raise ConfigError(
            f"the global batch {recipe.batch_size} does not split into {processes} processes x {grad_accum_steps} "
            "accumulation steps"
        )
    return {
        **TRAIN_PY_DEFAULTS,
        **_timm_dataset(recipe.dataset, num_classes),
        "experiment": recipe.name,
        "model": recipe.model,
        "pretrained": recipe.pretrained,
        "drop": recipe.drop_rate,
        "drop_path": recipe.drop_path or None,
        "img_size": recipe.img_size,
        "crop_pct": recipe.crop_pct,
        "mean": list(recipe.mean),
        "std": list(recipe.std),
        "interpolation": recipe.interpolation,
        "train_interpolation": recipe.training_interpolation,
        **_timm_augmentation(recipe, processes),
        "smoothing": recipe.smoothing,
        "bce_loss": recipe.bce_loss,
        "bce_target_thresh": recipe.bce_target_thresh,
        "opt": recipe.opt,
        "lr": recipe.lr,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "opt_kwargs": {} if recipe.filter_bias_and_bn else {"filter_bias_and_bn": False},
        "clip_grad": recipe.clip_grad,
        "batch_size": per_process,
        "grad_accum_steps": grad_accum_steps,
        **_timm_schedule(recipe),
        "amp": recipe.amp,
        "amp_dtype": recipe.amp_dtype,
        "model_ema": recipe.model_ema,
        "model_ema_decay": recipe.model_ema_decay,
        "dist_bn": "reduce",  # as the harness averages BatchNorm statistics over processes after each epoch
    }


def _timm_dataset(dataset: str, num_classes: int | None) -> dict:
    if dataset.startswith(HUB_PREFIX):
        name = dataset
    else:
        name = "" if dataset in FOLDER_DATASETS else TIMM_DATASET_NAMES.get(dataset, "")
    info = DATASETS.get(dataset)
    # without it train.py gives the model its default head (1000 classes for timm's ImageNet models)
    known = info.num_classes if info and info.num_classes else num_classes
    return {"dataset": name, "num_classes": known}


def _timm_augmentation(recipe: Recipe, processes: int) -> dict:
    return {
        "scale": list(recipe.scale),
        "ratio": list(recipe.ratio),
        "hflip": recipe.hflip,
        "color_jitter": recipe.color_jitter,
        "aa": recipe.aa,
        "reprob": recipe.reprob,
        "remode": "const",
        "recount": 1,
        # train.py repeats augmentation only across processes (it refuses aug_repeats on one); so does the harness
        "aug_repeats": recipe.aug_repeats if processes > 1 else 0,
        "mixup": recipe.mixup,
        "cutmix": recipe.cutmix,
        "mixup_prob": recipe.mixup_prob,
        "mixup_switch_prob": recipe.mixup_switch_prob,
    }


def _timm_schedule(recipe: Recipe) -> dict:
    """The schedule flags that make train.py build the scheduler harness.build builds (its constant schedule is
    step without decay, constant_exp multistep with a milestone at every later epoch)."""
    kwargs = harness_schedule(recipe)
    multistep = kwargs["sched"] == "multistep"
    return {
        "sched": kwargs["sched"],
        "decay_epochs": kwargs["decay_epochs"],
        "decay_rate": kwargs["decay_rate"],
        "decay_milestones": [_whole(m) for m in kwargs["decay_milestones"]] if multistep else DEFAULT_MILESTONES,
        "epochs": recipe.epochs,
        "warmup_epochs": recipe.warmup_epochs,
        "warmup_lr": recipe.warmup_lr,
        "min_lr": recipe.min_lr,
        "sched_on_updates": recipe.sched_on_updates,
        "cooldown_epochs": recipe.cooldown_epochs,
        "warmup_prefix": recipe.warmup_prefix,
    }


def export_notices(recipe: Recipe, args: dict) -> list[str]:
    """What train.py will not do as the harness does, for the file `timm_args_from_recipe` wrote from `recipe`."""
    notes = []
    extras = args.get(HARNESS_KEY) or {}
    if extras:
        listed = ", ".join(f"{k}={_show(v)}" for k, v in extras.items())
        notes.append(
            f"kept under `{HARNESS_KEY}:` for the harness to read back, as no train.py flag says them: {listed}; "
            "train.py leaves them out"
        )
    if args["num_classes"] is None and recipe.dataset != "imagenet":
        notes.append(
            f"train.py gives the model its default head (1000 classes) unless told: add --num-classes N for "
            f"{recipe.dataset}'s N classes"
        )
    return notes


def train_py_command(args_file: Path | str, processes: int = 1, data_dir: Path | str | None = None) -> str:
    """The train.py command line that trains the file (torchrun for several processes)."""
    launcher = "python" if processes == 1 else f"torchrun --nproc_per_node {processes}"
    folder = shlex.quote(str(data_dir)) if data_dir is not None else "DATA_DIR"
    return f"{launcher} train.py -c {shlex.quote(str(args_file))} --data-dir {folder}"
