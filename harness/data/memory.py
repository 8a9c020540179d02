"""The in-memory data path: a whole split as one uint8 tensor on the training device, augmented a batch at a time.

For datasets that fit in memory (digits, MNIST, Fashion-MNIST, CIFAR) the per-image PIL pipeline is the
bottleneck, not the model: every image is decoded, cropped, resized and normalised one at a time on CPU
workers. Here a split is indexed on the device and each batch is augmented there in a few tensor ops:

- rotation is one affine sampling grid per image at the native size; random resized crop, horizontal flip and
  the resize to the recipe's resolution are a second (`affine_grid` + `grid_sample`), with timm's crop
  parameters;
- the recipe's RandAugment/AutoAugment/AugMix policy (`harness.data.autoaugment`) runs on the crops rounded to
  8 bits, as timm's PIL ops see them; colour jitter draws torchvision's brightness/contrast/saturation factors per
  image (timm leaves jitter off when a policy runs, except after its '3a' policy);
- normalisation follows (mean and std held on the device); batches leave in channels_last. Random erasing (timm's
  batched `RandomErasing`) runs in the training loop after Mixup/CutMix, as timm's prefetcher orders them.

Repeated augmentation (RSB A1/A2 on several processes) draws its indices from timm's `RepeatAugSampler`.

Evaluation resizes and centre-crops the whole batch with torchvision's tensor functions, as timm's eval
transform does per image. Mixup/CutMix stay in the training loop, where timm's `Mixup` works on batches, and
random erasing after them.
Each batch's random draws come from a generator seeded by (seed, epoch, step, rank), so a resumed run sees
the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import Dataset, Subset

from harness.data.capabilities import jitter_active
from harness.data.device import DeviceStage, Normalise, batch_generator, to_uint8, to_unit_float
from harness.data.transforms import tensor_interpolation
from recipes import Recipe


def split_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(images as uint8 N x C x H x W, labels as int64) of a torchvision-style in-memory dataset or a Subset."""
    index = None
    if isinstance(dataset, Subset):
        dataset, index = dataset.dataset, torch.as_tensor(list(dataset.indices))
    data = torch.as_tensor(dataset.data)
    images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # CIFAR arrays are N x H x W x C
    labels = torch.as_tensor(dataset.targets, dtype=torch.long)
    if index is not None:
        images, labels = images[index], labels[index]
    return images.contiguous(), labels


def _uniform(shape, low, high, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device) * (high - low) + low


def crop_boxes(n: int, height: int, width: int, scale, ratio, generator, device) -> torch.Tensor:
    """(top, left, h, w) per image, as timm's RandomResizedCropAndInterpolation.get_params draws them."""
    attempts = 10
    area = _uniform((n, attempts), scale[0], scale[1], generator, device) * (height * width)
    log_ratio = _uniform((n, attempts), math.log(ratio[0]), math.log(ratio[1]), generator, device)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w <= width) & (h <= height)
    first = torch.argmax(fits.int(), dim=1, keepdim=True)  # the first attempt that fits
    any_fit = fits.any(dim=1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # timm's fallback: the whole image, clamped to the ratio range
    in_ratio = width / height
    fw, fh = float(width), float(height)
    if in_ratio < min(ratio):
        fh = float(round(fw / min(ratio)))
    elif in_ratio > max(ratio):
        fw = float(round(fh * max(ratio)))
    w = torch.where(any_fit, w, torch.full_like(w, fw))
    h = torch.where(any_fit, h, torch.full_like(h, fh))
    u = torch.rand((n, 2), generator=generator, device=device)
    top = torch.floor(u[:, 0] * (height - h + 1))
    left = torch.floor(u[:, 1] * (width - w + 1))
    top = torch.where(any_fit, top, torch.floor((height - h) / 2))
    left = torch.where(any_fit, left, torch.floor((width - w) / 2))
    return torch.stack([top, left, h, w], dim=1)


def crop_theta(boxes: torch.Tensor, flip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per image, the map from output to input coordinates (grid_sample's normalised, align_corners=False)
    that crops `boxes`, resizes them to the output and mirrors the rows where `flip` is set."""
    top, left, h, w = boxes.unbind(1)
    zeros = torch.zeros_like(top)
    sx = (w / width) * torch.where(flip, -1.0, 1.0)
    cx, cy = -1 + (2 * left + w) / width, -1 + (2 * top + h) / height
    return torch.stack([torch.stack([sx, zeros, cx], 1), torch.stack([zeros, h / height, cy], 1)], 1)


def rotation_theta(angle_deg: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per image, a rotation about the centre in pixel units, as grid_sample's normalised affine map."""
    rad = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zeros = torch.zeros_like(rad)
    return torch.stack(
        [torch.stack([cos, -sin * height / width, zeros], 1), torch.stack([sin * width / height, cos, zeros], 1)], 1
    )


def color_jitter(images: torch.Tensor, strength: float, generator, order: list[int]) -> torch.Tensor:
    """torchvision's ColorJitter(strength, strength, strength) with factors drawn per image."""
    n, device = images.shape[0], images.device
    low, high = max(0.0, 1 - strength), 1 + strength
    factors = _uniform((3, n, 1, 1, 1), low, high, generator, device)
    for op in order:
        f = factors[op]
        if op == 0:  # brightness: blend with black
            images = (images * f).clamp(0, 1)
        elif op == 1:  # contrast: blend with the mean grey level of the image
            mean = TF.rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
            images = (f * images + (1 - f) * mean).clamp(0, 1)
        else:  # saturation: blend with the grey image
            images = (f * images + (1 - f) * TF.rgb_to_grayscale(images)).clamp(0, 1)
    return images


class BatchAugment:
    """The recipe's per-image training transforms, applied to a uint8 batch on its device, in timm's order: rotation
    (the seed reports'), random-resized crop and flip, the recipe's policy (`policy`, uint8 to uint8, on images
    rounded to 8 bits as PIL holds them), colour jitter where timm keeps it, then normalisation (random erasing
    follows Mixup/CutMix in the training loop)."""

    def __init__(self, recipe: Recipe, device: torch.device, policy=None):
        self.size = recipe.img_size
        self.scale, self.ratio = recipe.scale, recipe.ratio
        self.hflip, self.rotate = recipe.hflip, recipe.rotate
        self.jitter = recipe.color_jitter if jitter_active(recipe) else 0.0
        self.mode = recipe.training_interpolation
        self.policy = policy
        self.stage = DeviceStage(recipe, device, train=True)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, channels, height, width = batch.shape
        device = batch.device
        images = to_unit_float(batch)
        if self.rotate > 0:
            # torchvision's RandomRotation: nearest neighbour at the native size, corners filled with 0
            angle = _uniform((n,), -self.rotate, self.rotate, generator, device)
            theta = rotation_theta(angle, height, width)
            grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
            images = F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        boxes = crop_boxes(n, height, width, self.scale, self.ratio, generator, device)
        flip = torch.rand(n, generator=generator, device=device) < self.hflip
        grid = F.affine_grid(
            crop_theta(boxes, flip, height, width), [n, channels, self.size, self.size], align_corners=False
        )
        # Edge pixels repeat beyond the border, as in PIL's resize.
        images = F.grid_sample(images, grid, mode=self.mode, padding_mode="border", align_corners=False).clamp(0, 1)
        if self.policy is not None:
            rgb = TF.grayscale_to_rgb(images) if channels == 1 else images
            images = to_unit_float(self.policy(to_uint8(rgb), generator))
        if self.jitter > 0:  # off when a policy runs, except after timm's '3a'
            # torchvision's random order of ops, drawn on the host from the batch's seed: reading a device
            # permutation back would make every training step wait for the device
            order = random.Random(generator.initial_seed()).sample(range(3), 3)
            images = color_jitter(images, self.jitter, generator, order)
        return self.stage.finish(images)


class BatchEvalTransform:
    """timm's eval transform (resize to size / crop_pct, centre crop, normalise) on a uint8 batch."""

    def __init__(self, recipe: Recipe, device: torch.device):
        self.size = recipe.test_img_size
        self.resize_to = math.floor(recipe.test_img_size / recipe.crop_pct)
        self.interpolation = tensor_interpolation(TF.InterpolationMode(recipe.interpolation))
        self.normalise = Normalise(recipe.mean, recipe.std, device)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        images = TF.resize(batch, [self.resize_to], interpolation=self.interpolation, antialias=True)
        images = TF.center_crop(images, [self.size, self.size])
        return self.normalise(to_unit_float(images)).contiguous(memory_format=torch.channels_last)


class MemoryLoader:
    """Batches of one split held on the device, each process taking every `world`-th image.

    Training shuffles by index each epoch (the order a function of seed and epoch) and drops the last
    partial batch. Evaluation pads each process to the same number of batches with label -1, which the
    evaluation drops after gathering, so every image is counted exactly once on any number of processes."""

    def __init__(
        self,
        images,
        labels,
        batch_size: int,
        transform,
        train: bool,
        seed: int,
        rank: int = 0,
        world: int = 1,
        repeats: int = 0,
    ):
        self.images, self.labels = images, labels
        self.batch_size, self.transform, self.train = batch_size, transform, train
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0
        # Repeated augmentation: timm's sampler, which spreads each image's repeats over the processes.
        self.repeat_sampler = None
        if train and repeats:
            self.repeat_sampler = RepeatAugSampler(range(len(labels)), world, rank, num_repeats=repeats)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_process(self) -> int:
        n = len(self.labels)
        if self.repeat_sampler is not None:
            return len(self.repeat_sampler)
        return n // self.world if self.train else math.ceil(n / self.world)

    def __len__(self) -> int:
        per = self._per_process()
        return per // self.batch_size if self.train else math.ceil(per / self.batch_size)

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.repeat_sampler is not None:
            self.repeat_sampler.set_epoch(self.epoch)
            return torch.tensor(list(self.repeat_sampler), dtype=torch.long)
        if self.train:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
            return order[self.rank :: self.world][: self._per_process()]
        order = torch.arange(self.rank, n, self.world)
        return torch.cat([order, order.new_full((self._per_process() - len(order),), -1)])

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._indices().to(self.images.device)
        for step in range(start, len(self)):
            idx = indices[step * self.batch_size : (step + 1) * self.batch_size]
            real = idx >= 0
            safe = torch.where(real, idx, torch.zeros_like(idx))
            labels = torch.where(real, self.labels[safe], torch.full_like(idx, -1))
            generator = batch_generator(self.seed, self.epoch, step, self.rank, self.images.device)
            yield self.transform(self.images[safe], generator), labels

    def __iter__(self):
        return self.batches(0)

    def skip_first_batches(self, n: int):
        return self.batches(n)


def memory_loaders(
    recipe: Recipe,
    train_set: Dataset,
    eval_set: Dataset,
    per_device: int,
    seed: int,
    device: torch.device,
    rank: int,
    world: int,
    policy=None,
) -> tuple[MemoryLoader, MemoryLoader]:
    """Train and eval loaders over the two splits, copied once to `device`; `policy` is the recipe's augmentation
    policy on the device."""
    train_images, train_labels = (t.to(device) for t in split_tensors(train_set))
    augment = BatchAugment(recipe, device, policy)
    train = MemoryLoader(
        train_images, train_labels, per_device, augment, True, seed, rank, world, repeats=recipe.aug_repeats
    )
    return train, memory_eval_loader(recipe, eval_set, per_device, seed, device, rank, world)


def memory_eval_loader(
    recipe: Recipe, eval_set: Dataset, per_device: int, seed: int, device: torch.device, rank: int, world: int
) -> MemoryLoader:
    """The eval loader alone (what an evaluation of saved weights needs), the split copied once to `device`."""
    images, labels = (t.to(device) for t in split_tensors(eval_set))
    return MemoryLoader(images, labels, per_device, BatchEvalTransform(recipe, device), False, seed, rank, world)
