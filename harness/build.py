"""Pure factories: a resolved Recipe becomes timm / torchvision objects. No training logic here."""

from __future__ import annotations

import math

import timm
import torch
from timm.data import Mixup
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from harness import models  # noqa: F401  (registers the seed reports' architectures with timm)
from recipes import Recipe

# timm's train.py scales the LR with the square root of the batch ratio for any optimizer whose name contains one of
# these (lamb, lambc, adamw, nadamw, adafactor, ...), linearly for every other one (sgd, lars, lion, ...).
SQRT_SCALED_OPTIMIZERS = ("ada", "lamb")


class WeightsError(Exception):
    """Pretrained weights could not be loaded; the message says how to provide them."""


def build_model(recipe: Recipe, num_classes: int) -> torch.nn.Module:
    """A timm model, with the hub's weights when the recipe is pretrained (timm drops their classifier when the
    class count differs). Weights from a file: `harness.weights.model_with_weights`."""
    try:
        return timm.create_model(
            recipe.model,
            pretrained=recipe.pretrained,
            num_classes=num_classes,
            drop_rate=recipe.drop_rate,
            drop_path_rate=recipe.drop_path or None,
        )
    except Exception as e:  # torch, safetensors and the hub client each raise their own types
        if not recipe.pretrained:
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise WeightsError(
            f"pretrained weights for {recipe.model} could not be fetched ({reason}); "
            "pass --pretrained-file PATH, or --set pretrained=False to train from scratch"
        ) from None


def build_mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    if recipe.mixup <= 0 and recipe.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        prob=recipe.mixup_prob,
        switch_prob=recipe.mixup_switch_prob,
        label_smoothing=recipe.smoothing,
        num_classes=num_classes,
    )


def build_train_loss(recipe: Recipe, mixup_active: bool) -> torch.nn.Module:
    """The training loss timm's train.py chooses for these flags: BCE only with Mixup/CutMix (which smooths the
    targets itself) or label smoothing, plain cross-entropy otherwise."""
    if mixup_active:
        if recipe.bce_loss:
            return BinaryCrossEntropy(target_threshold=recipe.bce_target_thresh)
        return SoftTargetCrossEntropy()
    if recipe.smoothing > 0:
        if recipe.bce_loss:
            return BinaryCrossEntropy(smoothing=recipe.smoothing, target_threshold=recipe.bce_target_thresh)
        return LabelSmoothingCrossEntropy(smoothing=recipe.smoothing)
    return torch.nn.CrossEntropyLoss()


def build_optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    # As train.py: momentum always given, timm passes it to the optimizers that take one.
    return create_optimizer_v2(
        model,
        opt=recipe.opt,
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        filter_bias_and_bn=recipe.filter_bias_and_bn,
    )


def transform_kwargs(recipe: Recipe, is_training: bool, **overrides) -> dict:
    """timm's `create_transform` (and `create_loader`) arguments for the recipe's training or evaluation images, as
    timm's `optimizer_kwargs` gives `create_optimizer_v2`'s; `overrides` add arguments or replace these."""
    if is_training:
        kwargs = {
            "input_size": recipe.img_size,
            "is_training": True,
            "scale": recipe.scale,
            "ratio": recipe.ratio,
            "hflip": recipe.hflip,
            "color_jitter": recipe.color_jitter,
            "auto_augment": recipe.aa,
            "interpolation": recipe.training_interpolation,
        }
    else:
        kwargs = {
            "input_size": recipe.test_img_size,
            "is_training": False,
            "interpolation": recipe.interpolation,
            "crop_pct": recipe.crop_pct,
        }
    return {**kwargs, **overrides}


def _timm_schedule(recipe: Recipe) -> dict:
    """The schedule as create_scheduler_v2 arguments. "constant" is timm's step schedule with a decay rate of 1 (timm
    releases without a "constant" schedule return None for it); "constant_exp" (constant LR, then multiplied by
    decay_rate each epoch after the first decay_epochs, as in Keras' LearningRateScheduler example) is its multistep
    schedule with a milestone at every later epoch (timm's multistep decays once t + 1 reaches a milestone, so
    stepped per epoch the milestones sit one epoch later)."""
    kwargs = {"sched": recipe.sched, "decay_epochs": recipe.decay_epochs, "decay_rate": recipe.decay_rate}
    kwargs["decay_milestones"] = (recipe.decay_epochs,)
    if recipe.sched == "constant":
        kwargs.update(sched="step", decay_epochs=recipe.epochs, decay_rate=1.0)
    elif recipe.sched == "constant_exp":
        first = max(1, round(recipe.decay_epochs)) + (0 if recipe.sched_on_updates else 1)
        kwargs.update(sched="multistep", decay_milestones=list(range(first, recipe.epochs + 1)))
    return kwargs


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, updates_per_epoch: int) -> tuple[object, int]:
    """timm's scheduler as timm's train.py builds it, and the epochs it spans (the recipe's epochs, plus the cooldown
    of a cycle schedule, plus the warmup with warmup_prefix). Driven as train.py drives it (`harness.engine`):
    `step_update` after every optimizer update and `step(epoch + 1, metric)` after each epoch; the LR changes at the
    epoch boundary unless the recipe sets sched_on_updates, and the other call is a no-op."""
    scheduler, num_epochs = create_scheduler_v2(
        optimizer,
        **_timm_schedule(recipe),
        num_epochs=recipe.epochs,
        min_lr=recipe.min_lr,
        warmup_lr=recipe.warmup_lr,
        warmup_epochs=recipe.warmup_epochs,
        warmup_prefix=recipe.warmup_prefix,
        cooldown_epochs=recipe.cooldown_epochs,
        plateau_mode="max",  # train.py's default eval metric, top-1
        step_on_epochs=not recipe.sched_on_updates,
        updates_per_epoch=updates_per_epoch,
    )
    if scheduler is None:
        raise ValueError(f"this timm ({timm.__version__}) builds no scheduler for sched={recipe.sched!r}")
    return scheduler, int(num_epochs)


def scheduled_epochs(recipe: Recipe) -> int:
    """The epochs a run of the recipe trains: timm's own count for its schedule (see `build_scheduler`)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    return build_scheduler(recipe, optimizer, updates_per_epoch=1)[1]


def frozen_parameters(model: torch.nn.Module, spec: str) -> list[torch.nn.Parameter]:
    """The parameters a recipe's `freeze` names: "backbone" is every parameter outside the classifier
    (timm's `get_classifier()`), otherwise comma-separated parameter-name prefixes."""
    if not spec:
        return []
    named = dict(model.named_parameters())
    if spec == "backbone":
        head = {id(p) for p in model.get_classifier().parameters()}
        return [p for p in named.values() if id(p) not in head]
    chosen: list[torch.nn.Parameter] = []
    for prefix in (s.strip() for s in spec.split(",")):
        matched = [p for name, p in named.items() if name == prefix or name.startswith(prefix + ".")]
        if not matched:
            top = sorted({name.split(".")[0] for name in named})
            raise ValueError(f"freeze={prefix!r} names no parameter; top-level parts: {', '.join(top)}")
        chosen += [p for p in matched if all(p is not q for q in chosen)]
    return chosen


def lr_scale_rule(opt: str) -> str:
    """train.py's rule for an optimizer name: "sqrt" when it contains "ada" or "lamb", else "linear"."""
    return "sqrt" if any(part in opt.lower() for part in SQRT_SCALED_OPTIMIZERS) else "linear"


def scaled_lr(lr: float, opt: str, from_batch: int, to_batch: int, rule: str | None = None) -> tuple[float, str]:
    """The peak LR for another global batch by `rule` ("linear" or "sqrt"; train.py's rule for `opt` if None)."""
    rule = rule or lr_scale_rule(opt)
    ratio = to_batch / from_batch
    return (lr * math.sqrt(ratio) if rule == "sqrt" else lr * ratio), rule
