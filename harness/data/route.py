"""Which way a run's data goes: the in-memory path or DataLoader workers, and where the recipe's RandAugment /
AutoAugment / AugMix policy runs (on the device, batched, or per image in the workers)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.data.autoaugment import unsupported_on_device
from harness.data.memory import unsupported
from harness.data.transforms import jitter_active
from recipes import Recipe

LOADERS = ("auto", "memory", "workers")
AUGMENT_ON = ("auto", "device", "workers")


class RouteError(ValueError):
    """The options ask for a path the recipe cannot take; the message says why and what would work."""


@dataclass(frozen=True)
class DataRoute:
    path: str  # "memory" or "workers"
    augment_on: str | None  # where the recipe's policy runs: "device" or "workers"; None without a policy
    # where training images are decoded: "device" or "workers"; None where none are decoded from files
    # (harness.data.decode.choose_decode sets it once the device is known)
    decode_on: str | None = None


def _policy_reason(recipe: Recipe, path: str) -> str | None:
    """Why the recipe's policy cannot run on the device on this path (None when it can, or there is none)."""
    if not recipe.aa:
        return None
    reason = unsupported_on_device(recipe)
    if reason is None and path == "workers" and jitter_active(recipe):
        reason = "its colour jitter follows the 3a policy per image in the workers"
    return reason


def choose_route(loader: str, augment_on: str, recipe: Recipe, dataset: str, world: int) -> DataRoute:
    """The route for these options (`auto` picks the in-memory path and the device wherever they can), or RouteError
    for a request the recipe cannot take."""
    memory_reasons = unsupported(recipe, dataset, world)
    if augment_on == "workers" and recipe.aa:
        memory_reasons.append("--augment-on workers runs the policy per image, which the in-memory path does not")
    if loader == "memory" and memory_reasons:
        reasons = "; ".join(memory_reasons)
        raise RouteError(f"--loader memory cannot run {recipe.name}: {reasons}; use --loader workers")
    path = loader if loader != "auto" else ("workers" if memory_reasons else "memory")
    if not recipe.aa:
        return DataRoute(path, None)
    reason = _policy_reason(recipe, path)
    if augment_on == "device" and reason:
        raise RouteError(f"--augment-on device cannot run {recipe.name}: {reason}; use --augment-on workers")
    return DataRoute(path, "workers" if augment_on == "workers" or reason else "device")
