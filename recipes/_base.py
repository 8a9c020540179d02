"""Recipes as data: one frozen dataclass per published training procedure.

Field names follow timm's `train.py` flags so a recipe feeds timm's factories directly.
Every value the publication sets is set explicitly; nothing is inherited from a library default.
Variants are `dataclasses.replace` of a base recipe, never subclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Reference:
    """What a publication reported for a recipe, and where it says so."""

    source: str
    dataset: str
    top1: float | None = None
    top5: float | None = None
    others: tuple[tuple[str, float], ...] = ()
    unverified: bool = False
    note: str = ""


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    reference: Reference
    tolerance: float = 0.5
    # model
    model: str = "resnet50"
    pretrained: bool = False
    drop_rate: float = 0.0
    drop_path: float = 0.0
    # data and evaluation
    dataset: str = "imagenet"
    img_size: int = 224
    test_img_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # augmentation
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    rotate: float = 0.0  # degrees of torchvision RandomRotation, 0 = off
    color_jitter: float = 0.0
    aa: str | None = None
    reprob: float = 0.0
    aug_repeats: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    # loss
    smoothing: float = 0.0
    bce_loss: bool = False
    bce_target_thresh: float | None = None
    # optimizer; lr is the peak LR at the published global batch_size
    opt: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    filter_bias_and_bn: bool = True
    clip_grad: float | None = None
    batch_size: int = 256
    # schedule; for "constant_exp" decay_epochs is the constant phase and decay_rate the factor per later epoch
    sched: str = "cosine"
    epochs: int = 90
    warmup_epochs: int = 0
    warmup_lr: float = 0.0
    min_lr: float = 0.0
    decay_epochs: float = 30
    decay_rate: float = 0.1
    # transfer learning: parameters frozen for the first `freeze_epochs` epochs ("backbone" = all but the
    # classifier, or comma-separated parameter-name prefixes); freeze_epochs >= epochs keeps them frozen
    freeze: str = ""
    freeze_epochs: int = 0
    # stop when eval loss has not improved by min_delta for `patience` epochs (0 = never)
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.0
    # precision and averaging
    amp: bool = False
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    # length of the shortened schedule used by `--budget proxy`
    proxy_epochs: int = 15
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Fields that identify a recipe or carry its evidence rather than a training setting.
NON_SETTING_FIELDS = frozenset({"name", "summary", "reference", "tolerance", "notes", "proxy_epochs"})

_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in _REGISTRY:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    _REGISTRY[recipe.name] = recipe
    return recipe


def list_recipes() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_recipe(name: str) -> Recipe:
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown recipe {name!r}; valid recipes: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def setting_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Recipe) if f.name not in NON_SETTING_FIELDS]


def _load_all() -> None:
    # Importing the recipe modules registers their recipes.
    from recipes import ablation, baseline, rsb, seeds  # noqa: F401
