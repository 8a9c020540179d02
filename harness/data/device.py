"""The device stage of the per-image path: what timm's `PrefetchLoader` does per batch, and the recipe's policy.

Workers hand over uint8 CHW batches (`harness.data.transforms`); accelerate moves them to the device (pinned and
non-blocking on a GPU); here each batch is, on the device and never read back: augmented by the recipe's
RandAugment/AutoAugment policy where it runs on the device, converted to float, normalised, randomly erased
(timm's `RandomErasing(device=...)`) and laid out channels_last. Mixup/CutMix follow in the training loop.
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


def normalise(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """Float images in [0, 1] normalised; grey images become three equal channels, as Grayscale(3) makes them."""
    if images.shape[1] == 1:
        images = TF.grayscale_to_rgb(images)
    return TF.normalize(images, mean, std)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 to float in [0, 1], as torchvision's ToTensor divides (the same bits as the per-image path)."""
    return images.float().div(255)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] to uint8, rounded to the nearest level as PIL stores a resized image."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


class DeviceStage:
    """One batch's device work: [policy on uint8], to float, normalise, [random erasing], channels_last.

    `policy(images_uint8, generator) -> images_uint8` is the recipe's augmentation policy on the device (training
    only, None when the workers ran it)."""

    def __init__(self, recipe: Recipe, device: torch.device, train: bool, policy: Callable | None = None):
        self.mean, self.std = list(recipe.mean), list(recipe.std)
        self.policy = policy if train else None
        self.erase = None
        if train and recipe.reprob > 0:
            self.erase = RandomErasing(recipe.reprob, mode="const", max_count=1, device=device)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.policy is not None:
            images = self.policy(images, generator)
        return self.finish(to_unit_float(images))

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1]: normalised, randomly erased, channels_last."""
        images = normalise(images, self.mean, self.std)
        if self.erase is not None:
            images = self.erase(images)
        return images.contiguous(memory_format=torch.channels_last)


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
