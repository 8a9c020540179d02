"""Which way a run's data goes: the in-memory path or DataLoader workers, where the recipe's RandAugment /
AutoAugment / AugMix policy runs (on the device, batched, or per image in the workers), and where training JPEGs
are decoded (on the device or in the workers). One decision, `choose_route`, from the checks of
`harness.data.capabilities`; `harness.data.loader` builds the loaders a route names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from harness.data.capabilities import (
    decode_reason,
    device_decodes_jpeg,
    planned_device,
    policy_reason,
    reads_files,
    unsupported_in_memory,
    why_no_nvjpeg,
)
from harness.data.catalog import dataset_info
from recipes import Recipe

LOADERS = ("auto", "memory", "workers")
AUGMENT_ON = ("auto", "device", "workers")
DECODE_ON = ("auto", "device", "workers")


class RouteError(ValueError):
    """The options ask for a path the recipe cannot take; the message says why and what would work."""


class DecodeError(RouteError):
    """--decode-on device was asked for where it cannot run; the message says why and what would work."""


@dataclass(frozen=True)
class DataRoute:
    path: str  # "memory" or "workers"
    augment_on: str | None  # where the recipe's policy runs: "device" or "workers"; None without a policy
    # where training images are decoded: "device" or "workers"; None where none are decoded from files
    decode_on: str | None = None


def choose_route(
    loader: str,
    augment_on: str,
    decode_on: str,
    recipe: Recipe,
    dataset: str,
    world: int,
    source: str | None,
    device: torch.device | None = None,
) -> DataRoute:
    """The route for these options (`auto` picks the in-memory path and the device wherever they can), or RouteError
    for a request the recipe cannot take. `source` is the dataset name the images are read under, None for stand-in
    data not read from files; `device` None while planning, before the device exists (`choose_decode`)."""
    route = _path_and_policy(loader, augment_on, recipe, dataset, world)
    from_files = source is not None and reads_files(source)
    channels = dataset_info(recipe.dataset).channels
    where = choose_decode(decode_on, route, recipe, from_files, channels, device)
    return dataclasses.replace(route, decode_on=where)


def _path_and_policy(loader: str, augment_on: str, recipe: Recipe, dataset: str, world: int) -> DataRoute:
    """The data path and where the policy runs (the route before decoding is decided)."""
    memory_reasons = unsupported_in_memory(recipe, dataset, world)
    if augment_on == "workers" and recipe.aa:
        memory_reasons.append("--augment-on workers runs the policy per image, which the in-memory path does not")
    if loader == "memory" and memory_reasons:
        reasons = "; ".join(memory_reasons)
        raise RouteError(f"--loader memory cannot run {recipe.name}: {reasons}; use --loader workers")
    path = loader if loader != "auto" else ("workers" if memory_reasons else "memory")
    if not recipe.aa:
        return DataRoute(path, None)
    reason = policy_reason(recipe, path)
    if augment_on == "device" and reason:
        raise RouteError(f"--augment-on device cannot run {recipe.name}: {reason}; use --augment-on workers")
    return DataRoute(path, "workers" if augment_on == "workers" or reason else "device")


def choose_decode(
    decode_on: str,
    route: DataRoute,
    recipe: Recipe,
    from_files: bool,
    channels: int,
    device: torch.device | None = None,
) -> str | None:
    """Where training images are decoded (`choose_route`'s last step): "device", "workers", or None where none are
    decoded from files (the in-memory path, datasets held as arrays). `auto` is the device where torchvision decodes
    JPEGs on CUDA. `device` None: the one the run is planned to train on (`planned_device`). On a GPU,
    `--decode-on device` needs nvJPEG working there; on a CPU its "device" is the CPU's own decoder (libjpeg),
    always there."""
    reason = decode_reason(route.path, route.augment_on, recipe, from_files, channels)
    if reason is None and decode_on == "device":
        device = device if device is not None else planned_device()
        missing = why_no_nvjpeg(device) if device.type == "cuda" else None
        reason = missing and f"torchvision's decode_jpeg (nvJPEG) does not run on {device} ({missing})"
    if reason is not None:
        if decode_on == "device":
            raise DecodeError(f"--decode-on device cannot run {recipe.name}: {reason}; use --decode-on auto or workers")
        return None if route.path == "memory" or not from_files else "workers"
    if decode_on == "auto":
        return "device" if device_decodes_jpeg(device) else "workers"
    return decode_on
