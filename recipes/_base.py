"""Recipes as data: one frozen dataclass per published training procedure.

Field names follow timm's `train.py` flags so a recipe feeds timm's factories directly.
Every value the publication sets is set explicitly; nothing is inherited from a library default.
Variants are `dataclasses.replace` of a base recipe, never subclasses.

The dataclasses are pydantic's: each field declares its type and range once, here, and every construction
(registry, recipe file, `dataclasses.replace` for a budget or a `--set`) checks them. Validators reach into timm
only where a constraint needs it (a known model or optimizer, an augmentation string timm parses).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import timm
from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass
from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform
from timm.optim import list_optimizers

import harness.models  # noqa: F401  (registers the project's own architectures with timm, for `model`)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCHEDULERS = ("cosine", "step", "multistep", "tanh", "poly", "plateau", "constant", "constant_exp")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "random")
AA_EXAMPLES = "rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, v0, original"


def _tuples(value: Any) -> Any:
    """Lists (from YAML, JSON or a recipe.json) become the tuples the fields hold, nested ones too."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def _values(n: int, what: str):
    """A before-validator: a list or tuple of exactly n values, as a tuple."""

    def check(value: Any) -> Any:
        value = _tuples(value)
        if isinstance(value, tuple) and len(value) != n:
            raise ValueError(f"expected {n} values ({what}), got {len(value)}")
        return value

    return BeforeValidator(check)


# Strict types (no "1" for 1, no 1 for True); ints still widen to floats. Tuples also accept lists.
Probability = Annotated[float, Field(ge=0, le=1)]
Rate = Annotated[float, Field(ge=0, lt=1)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
Size = Annotated[int, Field(gt=0)]
Pair = Annotated[tuple[Positive, Positive], _values(2, "low, high")]
Channels = Annotated[tuple[float, float, float], _values(3, "one per RGB channel")]
PositiveChannels = Annotated[tuple[Positive, Positive, Positive], _values(3, "one per RGB channel")]
Percent = Annotated[float, Field(gt=0, le=100)]

STRICT = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True, config=STRICT)
class Reference:
    """What a publication reported for a recipe, and where it says so."""

    source: Annotated[str, Field(min_length=1)]
    dataset: Annotated[str, Field(min_length=1)]
    top1: Percent | None = None
    top5: Percent | None = None
    others: Annotated[tuple[tuple[str, float], ...], BeforeValidator(_tuples)] = ()
    unverified: bool = False
    note: str = ""
    # the images each device's BatchNorm normalised over in the publication (its per-GPU batch), where stated
    per_device_batch: Size | None = None
    # the micro-batches each of the publication's updates accumulated (timm's --grad-accum-steps); 1 unless stated
    grad_accum_steps: Size = 1


def _reference(value: Any) -> Any:
    return Reference(**value) if isinstance(value, dict) else value


@dataclass(frozen=True, config=STRICT)
class Recipe:
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    summary: Annotated[str, Field(min_length=1)]
    reference: Annotated[Reference, BeforeValidator(_reference)]
    tolerance: Positive = 0.5
    # model
    model: str = "resnet50"
    pretrained: bool = False
    drop_rate: Rate = 0.0
    drop_path: Rate = 0.0
    # data and evaluation
    dataset: Annotated[str, Field(min_length=1)] = "imagenet"
    img_size: Size = 224
    test_img_size: Size = 224
    crop_pct: Annotated[float, Field(gt=0, le=1)] = 0.875
    interpolation: Literal[INTERPOLATIONS] = "bilinear"
    # timm's --train-interpolation: the training crops' resize ("random": bilinear or bicubic per image); none = the
    # evaluation's `interpolation`
    train_interpolation: Literal[INTERPOLATIONS] | None = None
    mean: Channels = IMAGENET_MEAN
    std: PositiveChannels = IMAGENET_STD
    # augmentation
    scale: Pair = (0.08, 1.0)
    ratio: Pair = (3 / 4, 4 / 3)
    hflip: Probability = 0.5
    rotate: Annotated[float, Field(ge=0, le=180)] = 0.0  # degrees of torchvision RandomRotation, 0 = off
    color_jitter: NonNegative = 0.0
    aa: str | None = None
    reprob: Probability = 0.0
    aug_repeats: Count = 0
    mixup: NonNegative = 0.0
    cutmix: NonNegative = 0.0
    mixup_prob: Probability = 1.0
    mixup_switch_prob: Probability = 0.5
    # loss
    smoothing: Rate = 0.0
    bce_loss: bool = False
    bce_target_thresh: Rate | None = None
    # optimizer; lr is the peak LR at the published global batch_size
    opt: str = "sgd"
    lr: Positive = 0.1
    momentum: Rate = 0.9
    weight_decay: NonNegative = 1e-4
    filter_bias_and_bn: bool = True
    clip_grad: Positive | None = None
    batch_size: Size = 256
    # schedule; for "constant_exp" decay_epochs is the constant phase and decay_rate the factor per later epoch
    sched: Literal[SCHEDULERS] = "cosine"
    epochs: Size = 90
    warmup_epochs: Count = 0
    warmup_lr: NonNegative = 0.0
    min_lr: NonNegative = 0.0
    decay_epochs: Positive = 30
    decay_rate: Positive = 0.1
    # timm's train.py flags: the LR changes at each epoch boundary unless sched_on_updates; cooldown_epochs at
    # min_lr are trained after `epochs` (cosine, tanh, poly); warmup_prefix adds the warmup before `epochs`
    sched_on_updates: bool = False
    cooldown_epochs: Count = 0
    warmup_prefix: bool = False
    # transfer learning: parameters frozen for the first `freeze_epochs` epochs ("backbone" = all but the
    # classifier, or comma-separated parameter-name prefixes); freeze_epochs >= epochs keeps them frozen
    freeze: str = ""
    freeze_epochs: Count = 0
    # stop when eval loss has not improved by min_delta for `patience` epochs (0 = never)
    early_stop_patience: Count = 0
    early_stop_min_delta: NonNegative = 0.0
    # precision and averaging; amp_dtype is timm's --amp-dtype (train.py's --amp trains float16 unless told)
    amp: bool = False
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    model_ema: bool = False
    model_ema_decay: Rate = 0.9998
    # length of the shortened schedule used by `--budget proxy`
    proxy_epochs: Size = 15
    notes: Annotated[tuple[str, ...], BeforeValidator(_tuples)] = ()

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        if not timm.is_model(model):
            hint = did_you_mean(model, timm.list_models())
            raise ValueError(f"not a timm model; {hint + ' ' if hint else ''}see timm.list_models() for valid names")
        return model

    @field_validator("opt")
    @classmethod
    def _known_optimizer(cls, opt: str) -> str:
        if opt.lower() not in list_optimizers():
            valid = list_optimizers()
            hint = did_you_mean(opt.lower(), valid)
            raise ValueError(f"not a timm optimizer; {hint or 'valid: ' + ', '.join(valid)}")
        return opt

    @field_validator("aa")
    @classmethod
    def _timm_parses_aa(cls, aa: str | None) -> str | None:
        if aa is not None:
            _parse_auto_augment(aa)
        return aa

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered(cls, pair: tuple[float, float]) -> tuple[float, float]:
        if pair[0] > pair[1]:
            raise ValueError("must be an ordered pair (low, high)")
        return pair

    @field_validator("scale")
    @classmethod
    def _area_fraction(cls, pair: tuple[float, float]) -> tuple[float, float]:
        if pair[1] > 1:
            raise ValueError("crop area fractions must lie in (0, 1]")
        return pair

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.warmup_epochs and self.warmup_epochs >= self.epochs and not self.warmup_prefix:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")
        if self.sched == "plateau" and self.sched_on_updates:
            raise ValueError("sched=plateau steps on the eval metric once per epoch; set sched_on_updates=False")
        if self.freeze_epochs and not self.freeze:
            raise ValueError("freeze_epochs is set but freeze names nothing; set freeze=backbone or parameter prefixes")
        return self

    @property
    def training_interpolation(self) -> str:
        """How training crops are resized: `train_interpolation`, else `interpolation`."""
        return self.train_interpolation or self.interpolation

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _parse_auto_augment(aa: str) -> None:
    """Raise ValueError unless timm's create_transform would accept `aa` (same dispatch on the prefix)."""
    parse = auto_augment_transform
    if aa.startswith("rand"):
        parse = rand_augment_transform
    elif aa.startswith("augmix"):
        parse = augment_and_mix_transform
    try:
        policy = parse(aa, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except (AssertionError, ValueError, KeyError, IndexError) as e:
        raise ValueError(f"timm cannot parse it ({e or 'malformed'}); examples: {AA_EXAMPLES}") from None
    weighted = getattr(policy, "choice_weights", None) is not None
    if weighted and policy.num_layers > len(policy.ops):
        raise ValueError(
            f"timm draws its {policy.num_layers} ops from {len(policy.ops)} weighted ones without replacement, which "
            f"fails on the first image; use at most n{len(policy.ops)}"
        )
    # timm skips a section without a number (a misspelt 'inc1' as 'incx' is dropped without a word); refuse it.
    ignored = [
        c
        for c in aa.split("-")[1:]
        if not re.search(r"\d", c) and not (parse is rand_augment_transform and c.startswith("t"))
    ]
    if ignored:
        raise ValueError(
            f"timm would silently ignore {', '.join(map(repr, ignored))} (a section is a key and a number, "
            f"e.g. m9, mstd0.5, inc1); examples: {AA_EXAMPLES}"
        )


def recipe_schema() -> dict:
    """The JSON Schema of a recipe (what a recipe file may hold, with every constraint)."""
    return TypeAdapter(Recipe).json_schema()


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_message(error: ValidationError) -> str:
    """pydantic's errors as one line: each names the field, the value given and what is valid."""
    parts = []
    for e in error.errors(include_url=False):
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        message = e["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        if e["type"] == "unexpected_keyword_argument":
            parts.append(f"unknown field {field!r}")
        elif e["type"] in ("missing", "missing_argument"):
            parts.append(f"{field} is required")
        elif field:
            parts.append(f"{field}={_short(e['input'])}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


# Fields that identify a recipe or carry its evidence rather than a training setting.
NON_SETTING_FIELDS = frozenset({"name", "summary", "reference", "tolerance", "notes", "proxy_epochs"})

_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in _REGISTRY:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    _REGISTRY[recipe.name] = recipe
    return recipe


def list_recipes() -> list[str]:
    return sorted(_REGISTRY)


def get_recipe(name: str) -> Recipe:
    """The registered recipe `name` (`rsb-a3` is taken as `rsb_a3`); KeyError naming the closest names."""
    if name not in _REGISTRY and name.replace("-", "_") in _REGISTRY:
        name = name.replace("-", "_")
    if name not in _REGISTRY:
        raise KeyError(unknown_name("recipe", name, sorted(_REGISTRY)))
    return _REGISTRY[name]


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """`did you mean X?` for the closest of `valid` (difflib's close matches, up to three), or "" when none is."""
    matches = difflib.get_close_matches(name, list(valid), n=3)
    if not matches:
        return ""
    return f"did you mean {matches[0] if len(matches) == 1 else ', '.join(matches[:-1]) + ' or ' + matches[-1]}?"


def unknown_name(kind: str, name: str, valid: list[str], plural: str = "") -> str:
    """One line for a name not among `valid`: the close matches, or all of them when none is close."""
    hint = did_you_mean(name, valid)
    return f"unknown {kind} {name!r}; " + (hint or f"valid {plural or kind + 's'}: {', '.join(valid)}")


def setting_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Recipe) if f.name not in NON_SETTING_FIELDS]
