"""From a published recipe to the one that runs: budget, overrides, LR rescale, and what differs.

Precedence: recipe < budget < command-line overrides (--epochs, --batch-size, --set key=value).
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

import timm
from timm.optim import list_optimizers

from harness.build import scaled_lr
from harness.data import DatasetInfo
from recipes import NON_SETTING_FIELDS, Recipe, setting_fields

BUDGETS = ("full", "proxy", "smoke")
SCHEDULERS = ("cosine", "step", "multistep", "tanh", "poly", "plateau", "constant", "constant_exp")
PROXY_BATCH = 64
SMOKE_BATCH = 16
SMOKE_SIZE = 32
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "random")


class ConfigError(Exception):
    """A bad recipe name, override or option; the message names the valid choices."""


@dataclass(frozen=True)
class Budget:
    name: str
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


def budget_limits(budget: str) -> Budget:
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; valid budgets: {', '.join(BUDGETS)}")
    if budget == "smoke":
        # 100 eval images split unevenly over processes, so duplicates padded in by the sampler must be dropped.
        return Budget("smoke", max_train_samples=4 * SMOKE_BATCH, max_eval_samples=100)
    return Budget(budget)


def _scaled_epochs(value: float, old_epochs: int, new_epochs: int) -> int:
    if value <= 0:
        return 0
    return max(1, round(value * new_epochs / old_epochs)) if new_epochs > 1 else 0


def adapt_to_dataset(recipe: Recipe, info: DatasetInfo) -> Recipe:
    """Augmentations that would change the label on this dataset are turned down (and so listed)."""
    changes: dict[str, Any] = {}
    if not info.mirror_symmetric and recipe.hflip > 0:
        changes["hflip"] = 0.0
    if recipe.scale[0] < info.min_crop_scale:
        changes["scale"] = (info.min_crop_scale, max(recipe.scale[1], info.min_crop_scale))
    return dataclasses.replace(recipe, **changes) if changes else recipe


def apply_budget(recipe: Recipe, budget: str, info: DatasetInfo) -> Recipe:
    """The recipe shortened to a budget: same procedure, fewer epochs, smaller batch and images."""
    budget_limits(budget)
    if budget == "full":
        return recipe
    epochs = recipe.proxy_epochs if budget == "proxy" else 1
    batch = PROXY_BATCH if budget == "proxy" else SMOKE_BATCH
    test_size = SMOKE_SIZE if budget == "smoke" else (info.proxy_size if info.native_size else None)
    changes: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": min(batch, recipe.batch_size),
        "warmup_epochs": _scaled_epochs(recipe.warmup_epochs, recipe.epochs, epochs),
    }
    if recipe.sched in ("step", "multistep", "constant_exp"):
        changes["decay_epochs"] = max(1, _scaled_epochs(recipe.decay_epochs, recipe.epochs, epochs))
    if recipe.freeze_epochs >= recipe.epochs:
        changes["freeze_epochs"] = epochs  # frozen for the whole run stays so
    elif recipe.freeze_epochs:
        changes["freeze_epochs"] = _scaled_epochs(recipe.freeze_epochs, recipe.epochs, epochs)
    if budget == "smoke" and recipe.pretrained:
        changes["pretrained"] = False  # CI has no hub; the run's fidelity list says so
    fixed_size = _fixed_input_size(recipe.model)
    if test_size is not None and fixed_size:
        test_size = fixed_size
    if test_size is not None:
        # Train and test at one size: a train/test gap like A3's 160/224 helps at ImageNet scale but at
        # 32 px leaves 1x1 feature maps whose statistics differ between the two sizes (measured on digits:
        # 23% top-1 with a 24/32 split against 90%+ at 32/32).
        changes["img_size"] = changes["test_img_size"] = test_size
    return dataclasses.replace(recipe, **changes)


def _fixed_input_size(model: str) -> int | None:
    """The input size of a model that accepts no other (timm's `fixed_input_size`), else None."""
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None or not cfg.fixed_input_size:
        return None
    return cfg.input_size[-1]


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings to a dict; values are Python literals, or plain strings otherwise."""
    valid = setting_fields()
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key not in valid:
            raise ConfigError(f"unknown --set key {key!r}; valid keys: {', '.join(sorted(valid))}")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = raw.strip()
        parsed[key] = value
    return parsed


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(key, v, a) for v, a in zip(value, args, strict=True))
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    name = getattr(hint, "__name__", str(hint)).replace("typing.", "")
    raise ConfigError(f"--set {key}={value!r} has the wrong type; {key} takes {name}")


def apply_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    hints = typing.get_type_hints(Recipe)
    coerced = {k: _coerce(k, v, hints[k]) for k, v in overrides.items()}
    return validate(dataclasses.replace(recipe, **coerced))


def validate(recipe: Recipe) -> Recipe:
    """Reject values timm would only reject mid-run, naming the supported ones."""
    if not timm.is_model(recipe.model):
        raise ConfigError(f"unknown model {recipe.model!r}; see timm.list_models() for valid names")
    if recipe.opt.lower() not in list_optimizers():
        raise ConfigError(f"unknown optimizer {recipe.opt!r}; valid: {', '.join(list_optimizers())}")
    if recipe.sched not in SCHEDULERS:
        raise ConfigError(f"unknown lr scheduler {recipe.sched!r}; only {', '.join(SCHEDULERS)} are supported")
    if recipe.interpolation not in INTERPOLATIONS:
        raise ConfigError(f"unknown interpolation {recipe.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    positive = {"epochs": recipe.epochs, "batch_size": recipe.batch_size, "img_size": recipe.img_size,
                "test_img_size": recipe.test_img_size, "lr": recipe.lr}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    for key in ("freeze_epochs", "early_stop_patience", "rotate"):
        if getattr(recipe, key) < 0:
            raise ConfigError(f"{key} must be zero or positive, got {getattr(recipe, key)}")
    if recipe.freeze_epochs and not recipe.freeze:
        raise ConfigError("freeze_epochs is set but freeze names nothing; set freeze=backbone or parameter prefixes")
    if recipe.warmup_epochs >= recipe.epochs and recipe.warmup_epochs > 0:
        raise ConfigError(f"warmup_epochs ({recipe.warmup_epochs}) must be fewer than epochs ({recipe.epochs})")
    return recipe


def follow_test_size(published: Recipe, recipe: Recipe, overrides: dict[str, Any]) -> tuple[Recipe, str | None]:
    """When overrides set img_size but not test_img_size, the test size keeps the published ratio to it
    (1.0 for most recipes, 224/160 for RSB A3), as the recipe's evaluation was designed for its training size."""
    if "img_size" not in overrides or "test_img_size" in overrides:
        return recipe, None
    ratio = published.test_img_size / published.img_size
    test_size = max(1, round(recipe.img_size * ratio))
    if test_size == recipe.test_img_size:
        return recipe, None
    notice = (
        f"test_img_size follows img_size: {recipe.test_img_size} -> {test_size} (the published "
        f"{published.test_img_size}/{published.img_size} ratio; set test_img_size to choose another)"
    )
    return dataclasses.replace(recipe, test_img_size=test_size), notice


def rescale_lr(published: Recipe, resolved: Recipe, lr_overridden: bool) -> tuple[Recipe, dict | None]:
    """Scale the peak LR to the global batch actually used, unless the user set the LR."""
    if lr_overridden or resolved.batch_size == published.batch_size:
        return resolved, None
    lr, rule = scaled_lr(published.lr, published.opt, published.batch_size, resolved.batch_size)
    record = {
        "rule": rule,
        "published_lr": published.lr,
        "published_batch_size": published.batch_size,
        "lr": lr,
        "batch_size": resolved.batch_size,
    }
    return dataclasses.replace(resolved, lr=lr), record


def fidelity(published: Recipe, resolved: Recipe, extra: list[str]) -> list[str]:
    """Every way the run differs from the published setting, one readable line each."""
    lines = []
    for f in dataclasses.fields(Recipe):
        if f.name in NON_SETTING_FIELDS:
            continue
        old, new = getattr(published, f.name), getattr(resolved, f.name)
        if old != new:
            lines.append(f"{f.name}: {_fmt(old)} -> {_fmt(new)}")
    return lines + extra


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)
