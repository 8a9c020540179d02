"""Which way a run's data goes: the in-memory path or DataLoader workers, and where the recipe's RandAugment /
AutoAugment / AugMix policy runs (on the device, batched, or per image in the workers)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.data.autoaugment import unsupported_on_device
from harness.data.memory import unsupported
from recipes import Recipe

LOADERS = ("auto", "memory", "workers")
AUGMENT_ON = ("auto", "device", "workers")


class RouteError(ValueError):
    """The options ask for a path the recipe cannot take; the message says why and what would work."""


@dataclass(frozen=True)
class DataRoute:
    path: str  # "memory" or "workers"
    augment_on: str | None  # where the recipe's policy runs: "device" or "workers"; None without a policy


def choose_route(loader: str, augment_on: str, recipe: Recipe, dataset: str, world: int) -> DataRoute:
    """The route for these options (`auto` picks the device wherever it can), or RouteError for a request the
    recipe cannot take."""
    policy_reason = unsupported_on_device(recipe) if recipe.aa else None
    if augment_on == "device" and policy_reason:
        raise RouteError(f"--augment-on device cannot run {recipe.name}: {policy_reason}; use --augment-on workers")
    if loader == "memory":
        reasons = unsupported(recipe, dataset, world)
        if augment_on == "workers" and recipe.aa:
            reasons.append("--augment-on workers runs the policy per image, which the in-memory path does not")
        if reasons:
            raise RouteError(f"--loader memory cannot run {recipe.name}: {'; '.join(reasons)}; use --loader workers")
    path = loader
    if loader == "auto":
        path = "workers" if unsupported(recipe, dataset, world) or augment_on == "workers" and recipe.aa else "memory"
    if not recipe.aa:
        return DataRoute(path, None)
    policy_on = "workers" if augment_on == "workers" or (augment_on == "auto" and policy_reason) else "device"
    return DataRoute(path, policy_on)
