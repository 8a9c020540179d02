"""The device stage of the per-image path: what timm's `PrefetchLoader` does per batch, and the recipe's policy.

Workers hand over uint8 CHW batches (`harness.data.transforms`); accelerate moves them to the device (pinned and
non-blocking on a GPU); here each batch is, on the device and never read back: augmented by the recipe's
RandAugment/AutoAugment policy where it runs on the device, converted to float, normalised with mean and std held
on the device (as timm's `PrefetchLoader` holds them: no copy from the host per batch) and laid out channels_last.
Mixup/CutMix and then random erasing follow in the training loop (`random_erasing`), in the order of timm's
prefetcher: its collate mixes (`FastCollateMixup`), its `PrefetchLoader` erases the mixed batch.
Random draws come from a generator seeded by (seed, epoch, step, rank), as on the in-memory path, so a resumed run
draws what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torchvision.transforms.v2.functional as TF
from accelerate.data_loader import skip_first_batches
from timm.data.random_erasing import RandomErasing

from recipes import Recipe


def batch_generator(seed: int, epoch: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The generator of one batch's random draws: a function of where the batch falls in the run."""
    key = ((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 + rank
    return torch.Generator(device=device).manual_seed(key % (2**63))


class Normalise:
    """torchvision's `normalize` for batches on one device, with mean and std built there once, shaped (1, C, 1, 1),
    as timm's `PrefetchLoader` builds them. torchvision builds them from the lists on every call: on a GPU that is a
    copy from pageable host memory, which waits for the work queued before it. Grey images become three equal
    channels, as Grayscale(3) makes them."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        if not all(std):
            raise ValueError(f"std {tuple(std)} has a zero: normalising would divide by zero")
        self.by_dtype = {torch.float32: _per_channel(mean, std, torch.float32, device)}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = TF.grayscale_to_rgb(images)
        if images.dtype not in self.by_dtype:  # once per dtype, from the float32 pair already on the device
            self.by_dtype[images.dtype] = tuple(t.to(images.dtype) for t in self.by_dtype[torch.float32])
        mean, std = self.by_dtype[images.dtype]
        return images.sub(mean).div_(std)


def _per_channel(mean, std, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.tensor(list(v), dtype=dtype, device=device).view(1, -1, 1, 1) for v in (mean, std))


def random_erasing(recipe: Recipe, device: torch.device) -> RandomErasing | None:
    """timm's `RandomErasing` as its `PrefetchLoader` builds it for the recipe (None when it erases nothing): on a
    normalised batch, after Mixup/CutMix."""
    if recipe.reprob <= 0:
        return None
    return RandomErasing(recipe.reprob, mode="const", max_count=1, device=device)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 to float in [0, 1], as torchvision's ToTensor divides (the same bits as the per-image path)."""
    return images.float().div(255)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] to uint8, rounded to the nearest level as PIL stores a resized image."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


class DeviceStage:
    """One batch's device work: [policy on uint8], to float, normalise, channels_last.

    `policy(images_uint8, generator) -> images_uint8` is the recipe's augmentation policy on the device (training
    only, None when the workers ran it). Random erasing is not part of it: it follows Mixup/CutMix in the training
    loop (`random_erasing`)."""

    def __init__(self, recipe: Recipe, device: torch.device, train: bool, policy: Callable | None = None):
        self.normalise = Normalise(recipe.mean, recipe.std, device)
        self.policy = policy if train else None

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.policy is not None:
            images = self.policy(images, generator)
        return self.finish(to_unit_float(images))

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1]: normalised, channels_last."""
        return self.normalise(images).contiguous(memory_format=torch.channels_last)


class DeviceLoader:
    """A loader of uint8 batches already on the device (an accelerate-prepared DataLoader), each batch finished by a
    DeviceStage. It keeps the loader's length, epochs and resume: `skip_first_batches(n)` starts at batch n without
    loading the batches before it, and every batch's random draws depend only on its place in the run."""

    def __init__(self, loader, stage: DeviceStage, seed: int, rank: int, device: torch.device):
        self.loader, self.stage = loader, stage
        self.seed, self.rank, self.device = seed, rank, device
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)
        if hasattr(self.loader.dataset, "set_epoch"):
            self.loader.dataset.set_epoch(epoch)  # per-sample draws in the workers (harness.data.seeding)

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = skip_first_batches(self.loader, start) if start else self.loader
        for step, (images, labels) in enumerate(loader, start):
            generator = batch_generator(self.seed, self.epoch, step, self.rank, self.device)
            yield self.stage(images, generator), labels

    def __iter__(self):
        return self.batches(0)

    def skip_first_batches(self, n: int):
        return self.batches(n)
