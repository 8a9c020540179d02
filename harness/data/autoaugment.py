"""timm's RandAugment, AutoAugment and AugMix policies as batched, per-sample operations on the device."""

from __future__ import annotations

import torch

from recipes import Recipe


def unsupported_on_device(recipe: Recipe) -> str | None:
    """Why the recipe's policy cannot run on the device (None when it can)."""
    return f"aa={recipe.aa!r} has no device implementation yet"


def device_policy(recipe: Recipe, device: torch.device):
    raise NotImplementedError
