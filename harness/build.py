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
    """The training loss timm's train.py would choose for these flags."""
    if recipe.bce_loss:
        return BinaryCrossEntropy(smoothing=recipe.smoothing, target_threshold=recipe.bce_target_thresh)
    if mixup_active:
        return SoftTargetCrossEntropy()
    if recipe.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.smoothing)
    return torch.nn.CrossEntropyLoss()


def build_optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    kwargs = {"momentum": recipe.momentum} if recipe.opt in ("sgd", "momentum", "nesterov") else {}
    return create_optimizer_v2(
        model,
        opt=recipe.opt,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        filter_bias_and_bn=recipe.filter_bias_and_bn,
        **kwargs,
    )


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, updates_per_epoch: int):
    """timm scheduler stepped once per optimizer update (`step_update`).

    "constant_exp" (constant LR, then multiplied by decay_rate each epoch after the first decay_epochs, as in
    Keras' LearningRateScheduler example) is timm's multistep schedule with a milestone at every later epoch."""
    sched, milestones = recipe.sched, None
    if sched == "constant_exp":
        sched, milestones = "multistep", list(range(max(1, round(recipe.decay_epochs)), recipe.epochs))
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=sched,
        num_epochs=recipe.epochs,
        decay_epochs=recipe.decay_epochs,
        decay_milestones=milestones or (recipe.decay_epochs,),
        decay_rate=recipe.decay_rate,
        min_lr=recipe.min_lr,
        warmup_lr=recipe.warmup_lr,
        warmup_epochs=recipe.warmup_epochs,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler


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
