"""Weights from a file or the hub into any model the harness builds, with a record of what was loaded.

A file is read by timm's `load_state_dict` (safetensors, or `torch.load(weights_only=True)`: nothing is unpickled),
which takes the tensors nested under `state_dict_ema`, `state_dict` or `model` and strips `module.` (DDP). The
tensors are then matched to the model by name and shape under a few layouts real checkpoints come in: as saved, a
`model.` prefix removed, the model's own timm checkpoint filter (torchvision-named VGG...) and, for a model that
wraps a `backbone`, the file mapped into that backbone. The layout that covers the most of the model wins.

Every tensor of the model outside its classifier must come from the file with its shape, or the file is refused.
The classifier (timm's `get_classifier()`) starts fresh for training and must come from the file for evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from timm.models import load_state_dict

from harness.build import WeightsError, build_model
from recipes import Recipe

# BatchNorm's update counter: torchvision's released files lack it and nothing reads it in evaluation or training.
OPTIONAL_SUFFIX = "num_batches_tracked"
SHOWN_PROBLEMS = 3


def model_with_weights(
    recipe: Recipe, num_classes: int, pretrained_file: Path | None, keep_head: bool
) -> tuple[torch.nn.Module, dict | None]:
    """The recipe's model with its starting weights and the `weights` record (None when it starts at random).

    `keep_head`: the classifier comes from the weights too (evaluation), instead of starting fresh (training)."""
    if pretrained_file is not None:
        model = build_model(dataclasses.replace(recipe, pretrained=False), num_classes)
        return model, load_file_into(model, pretrained_file, keep_head)
    if not recipe.pretrained:
        return build_model(recipe, num_classes), None
    if keep_head:
        _check_hub_classes(recipe.model, num_classes)
    model = build_model(recipe, num_classes)
    return model, hub_record(model, keep_head)


def load_file_into(model: torch.nn.Module, path: Path, keep_head: bool) -> dict:
    """Load `path` into `model` in place, or raise WeightsError (one line) when it does not fit."""
    state = read_state_dict(path)
    target = model.state_dict()
    head = head_keys(model)
    wanted = {k for k in target if keep_head or k not in head}
    required = {k for k in wanted if not k.endswith(OPTIONAL_SUFFIX)}
    candidate, taken = max(
        ((c, _fitting(c, target, wanted)) for c in candidate_layouts(state, model)),
        key=lambda pair: len(required & pair[1].keys()),
    )
    problems = _problems(candidate, target, required)
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = f" and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        part = "tensors" if keep_head else "backbone tensors"
        raise WeightsError(
            f"{path} does not fit {_architecture(model)}: {len(problems)} of {len(required)} {part} missing or "
            f"shaped differently ({shown}{more}); pass weights saved from {_architecture(model)} "
            "(e.g. by --save-weights) or the standard timm/torchvision file of that architecture"
        )
    missing, unexpected = model.load_state_dict(taken, strict=False)
    if unexpected or set(missing) != set(target) - taken.keys():
        raise RuntimeError(f"load_state_dict disagrees with the matching: missing {missing}, unexpected {unexpected}")
    counted = {k for k in target if not k.endswith(OPTIONAL_SUFFIX)}
    return {
        "file": str(path),
        "sha256": sha256_of(path),
        "loaded": len(taken),
        "skipped": len(candidate) - len(taken),
        "fresh": len(counted - taken.keys()),
    }


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or weights-only torch file, unnested and without DDP's `module.` prefix."""
    try:
        with warnings.catch_warnings():
            # torch warns on stderr as it refuses a pickle; the refusal below already says so in one line.
            warnings.filterwarnings("ignore", module="torch._weights_only_unpickler")
            state = load_state_dict(str(path), use_ema=True, weights_only=True)
    except Exception as e:  # torch, safetensors and pickle each raise their own types
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise WeightsError(f"pretrained weights {path} cannot be loaded ({reason})") from None
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors; pass a state dict (safetensors, or a weights-only torch file)")
    return tensors


def candidate_layouts(state: dict[str, torch.Tensor], model: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    """The file's tensors renamed in each way a checkpoint of this architecture may be laid out."""
    bases = [state]
    if all(k.startswith("model.") for k in state):
        bases.append({k.removeprefix("model."): v for k, v in state.items()})
    layouts = []
    backbone = getattr(model, "backbone", None)
    for base in bases:
        layouts += [base, *_filtered(base, model)]
        if isinstance(backbone, torch.nn.Module):
            for inner in (base, *_filtered(base, backbone)):
                layouts.append({f"backbone.{k}": v for k, v in inner.items()})
    return layouts


def head_keys(model: torch.nn.Module) -> set[str]:
    """State-dict keys of the model's classifier (timm's `get_classifier()`)."""
    classifier = model.get_classifier()
    prefixes = [name for name, module in model.named_modules() if module is classifier and name]
    return {k for k in model.state_dict() for p in prefixes if k.startswith(p + ".")}


def hub_record(model: torch.nn.Module, keep_head: bool) -> dict:
    """What timm loaded from the hub: every tensor but a classifier it dropped for another class count."""
    cfg = getattr(getattr(model, "backbone", model), "pretrained_cfg", {}) or {}
    tag = cfg.get("hf_hub_id") or f"{cfg.get('architecture')}.{cfg.get('tag')}"
    counted = {k for k in model.state_dict() if not k.endswith(OPTIONAL_SUFFIX)}
    fresh = set() if keep_head else counted & head_keys(model)
    return {
        "hub": tag,
        "file": None,
        "sha256": None,
        "loaded": len(counted - fresh),
        "skipped": None,
        "fresh": len(fresh),
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_hub_classes(model_name: str, num_classes: int) -> None:
    """Hub weights evaluated as they are must bring a classifier for the eval split's classes."""
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise WeightsError(
            f"the hub has no weights with a classifier for {model_name}; pass --pretrained-file with the whole model"
        )
    if cfg.num_classes != num_classes:
        raise WeightsError(
            f"the hub weights of {model_name} classify {cfg.num_classes} classes and the eval split has {num_classes}; "
            "evaluate them on a dataset with their classes, or pass --pretrained-file with a classifier for yours"
        )


def _fitting(candidate: dict, target: dict, wanted: set[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in candidate.items() if k in wanted and v.shape == target[k].shape}


def _problems(candidate: dict, target: dict, required: set[str]) -> list[str]:
    problems = []
    order = {k: i for i, k in enumerate(target)}
    for key in sorted(required, key=order.__getitem__):
        if key not in candidate:
            problems.append(f"{key} missing")
        elif candidate[key].shape != target[key].shape:
            problems.append(f"{key} is {tuple(candidate[key].shape)} in the file, {tuple(target[key].shape)} here")
    return problems


def _filtered(state: dict, model: torch.nn.Module) -> list[dict]:
    """The state dict through the model's timm checkpoint filter, where its module has one that accepts it."""
    filter_fn = _checkpoint_filter(model)
    if filter_fn is None:
        return []
    try:
        takes_model = len(inspect.signature(filter_fn).parameters) > 1
        return [filter_fn(dict(state), model) if takes_model else filter_fn(dict(state))]
    except Exception:  # a filter written for another layout of the file fails in its own way; skip it
        return []


def _checkpoint_filter(model: torch.nn.Module) -> Callable | None:
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not arch or not timm.is_model(arch):
        return None
    module = sys.modules[timm.models.model_entrypoint(arch).__module__]
    return getattr(module, "checkpoint_filter_fn", None) or getattr(module, "_filter_fn", None)


def _architecture(model: torch.nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
