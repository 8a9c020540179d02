"""From a published recipe to the one that runs: budget, overrides, LR rescale, and what differs.

Precedence: recipe < budget < command-line overrides (--epochs, --batch-size, --set key=value). Epochs set at or
below the warmup shorten the warmup in proportion, as the proxy budget does.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import timm
from pydantic import ValidationError

from harness.build import scaled_lr
from harness.data import DatasetInfo
from harness.flag_hints import set_key_hint
from recipes import NON_SETTING_FIELDS, Recipe, setting_fields
from recipes._base import validation_message

BUDGETS = ("full", "proxy", "smoke")
PROXY_BATCH = 64
SMOKE_BATCH = 16
SMOKE_SIZE = 32


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
    return override(recipe, f"on {info.name}", **changes) if changes else recipe


def apply_budget(recipe: Recipe, budget: str, info: DatasetInfo) -> Recipe:
    """The recipe shortened to a budget: same procedure, fewer epochs, smaller batch and images."""
    budget_limits(budget)
    if budget == "full":
        return recipe
    epochs = recipe.proxy_epochs if budget == "proxy" else 1
    batch = PROXY_BATCH if budget == "proxy" else SMOKE_BATCH
    test_size = SMOKE_SIZE if budget == "smoke" else (info.proxy_size if info.native_size else None)
    changes: dict[str, Any] = {
        # a shortened schedule changes the LR every update, so a one-epoch warmup ramps rather than waits
        "sched_on_updates": True,
        "epochs": epochs,
        "batch_size": min(batch, recipe.batch_size),
        "warmup_epochs": min(_scaled_epochs(recipe.warmup_epochs, recipe.epochs, epochs), epochs - 1),
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
    return override(recipe, f"--budget {budget}", **changes)


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
            hint = set_key_hint(key) or f"valid keys: {', '.join(sorted(valid))}"
            raise ConfigError(f"unknown --set key {key!r}; {hint}")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = raw.strip()
        parsed[key] = value
    return parsed


def override(recipe: Recipe, origin: str, **changes: Any) -> Recipe:
    """The recipe with `changes` (`dataclasses.replace`, which re-validates every field); a refusal becomes one
    ConfigError line that names `origin`, what made the changes ("--dataset", "--budget proxy")."""
    try:
        return dataclasses.replace(recipe, **changes)
    except ValidationError as e:
        raise ConfigError(f"{origin}: {validation_message(e)}") from None


def apply_overrides(recipe: Recipe, overrides: dict[str, Any], given: dict[str, str] | None = None) -> Recipe:
    """The overrides on the recipe. `given` names the option that set each field ("--set", "--epochs",
    "--batch-size"), so a refusal names the options the user typed (all "--set" by default)."""
    try:
        return dataclasses.replace(recipe, **overrides)
    except ValidationError as e:
        raise ConfigError(f"{_options_behind(e, overrides, given)}: {validation_message(e)}") from None


def _options_behind(error: ValidationError, overrides: dict[str, Any], given: dict[str, str] | None) -> str:
    """The options that set the fields a refusal is about: the field of a field error, the fields a cross-field
    error names (warmup_epochs and epochs)."""
    if not given:
        return "--set"
    involved = set()
    for e in error.errors(include_url=False):
        if e["loc"]:
            involved.add(str(e["loc"][0]))
        else:
            involved |= {f for f in overrides if re.search(rf"\b{f}\b", e["msg"])}
    options = [option for field, option in given.items() if field in involved] or list(given.values())
    return " and ".join(dict.fromkeys(options))


def shorten_warmup(recipe: Recipe, overrides: dict[str, Any], given: dict[str, str]) -> tuple[dict, str | None]:
    """Epochs set at or below the recipe's warmup, with no warmup set, shorten the warmup in proportion (as the
    proxy budget does); returns the overrides and the notice that says so. A warmup set by hand is left to be
    refused when it is not below the epochs."""
    epochs = overrides.get("epochs")
    if type(epochs) is not int or epochs < 1 or "warmup_epochs" in overrides or recipe.warmup_epochs < epochs:
        return overrides, None
    warmup = min(_scaled_epochs(recipe.warmup_epochs, recipe.epochs, epochs), epochs - 1)
    option = "--epochs " if given.get("epochs") == "--epochs" else "--set epochs="
    notice = (
        f"{option}{epochs} is not above the warmup: warmup_epochs {recipe.warmup_epochs} -> {warmup}, "
        f"shortened in proportion to epochs {recipe.epochs} -> {epochs}"
    )
    return {**overrides, "warmup_epochs": warmup}, notice


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


def has_batchnorm(model) -> bool:
    import torch

    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def step_differences(published: Recipe, model, split, train_loader) -> list[str]:
    """How the run's steps differ from the publication's beyond the recipe's fields: BatchNorm's batch per device
    (where the reference states the publication's) and micro-batches an epoch leaves untrained.

    Every epoch here trains whole updates. timm's train.py (drop_last) trains every micro-batch its loader gives:
    with --grad-accum-steps above 1 the last `len(loader) % grad_accum_steps` of them make one shorter update;
    without accumulation its batches are whole updates and the images short of one are left, as here. So the
    micro-batches left here differ from the publication only where it accumulated."""
    lines = []
    stated = published.reference.per_device_batch
    if stated and has_batchnorm(model) and split.micro_batch != stated:
        lines.append(f"BatchNorm batch per device: {stated} -> {split.micro_batch}")
    left = len(train_loader) % split.accum_steps
    if left and published.reference.grad_accum_steps > 1:
        lines.append(
            f"last {left} of each epoch's {len(train_loader)} micro-batches per process not trained (timm's train.py "
            "trains them as one shorter update)"
        )
    return lines


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
