"""The loaders a `DataRoute` names. On the per-image path DataLoader workers decode and transform each image to
uint8 (or hand over JPEG bytes to decode on the device), accelerate shards and moves the batches, and a
`DeviceStage` finishes each batch on the device; the in-memory path is `harness.data.memory`'s."""

from __future__ import annotations

import functools

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset

from harness.data.capabilities import resizes_tensors
from harness.data.decode import DECODE_NOTE, DecodingLoader, DeviceDecoder, EncodedTrainTransform, collate_encoded
from harness.data.device import DeviceLoader, DeviceStage
from harness.data.memory import MemoryLoader, memory_eval_loader, memory_loaders
from harness.data.route import DataRoute
from harness.data.seeding import NumberedRepeats, SeededSamples
from harness.data.transforms import TENSOR_RESIZE_NOTE, build_transforms
from harness.data.unreadable import collate_readable
from recipes import Recipe

# What build_loaders hands back: the in-memory path's loader or the per-image path's.
Loader = MemoryLoader | DeviceLoader


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    workers: int,
    seed: int,
    pin_memory: bool,
    sampler=None,
    collate_fn=None,
) -> DataLoader:
    """A DataLoader that shuffles (by `seed`) and drops the last partial batch in training; a `sampler` replaces the
    shuffle, a `collate_fn` the collation around undecodable images (`collate_readable`)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed) if sampler is None else None,
        collate_fn=collate_fn or functools.partial(collate_readable, train=train),
    )


def _sharded_train_loader(
    accelerator: Accelerator, recipe: Recipe, dataset: Dataset, batch: int, workers: int, seed: int, collate_fn=None
):
    """Repeated augmentation shards by itself (timm's RepeatAugSampler); otherwise accelerate shards. The shuffle is
    the same on every process (a function of seed and epoch); each sample's augmentation is its process's own."""
    pin = accelerator.device.type == "cuda"
    dataset = SeededSamples(dataset, seed, accelerator.process_index)
    if recipe.aug_repeats > 0:
        repeats = RepeatAugSampler(
            dataset,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
            num_repeats=recipe.aug_repeats,
        )
        sampler = NumberedRepeats(repeats, len(dataset))
        loader = make_loader(dataset, batch, True, workers, seed, pin, sampler=sampler, collate_fn=collate_fn)
        # The sampler already shards; accelerate only moves the batches (it leaves them on the host unless asked).
        return prepare_data_loader(
            loader, accelerator.device, num_processes=1, process_index=0, put_on_device=True, non_blocking=pin
        )
    return accelerator.prepare(make_loader(dataset, batch, True, workers, seed, pin, collate_fn=collate_fn))


def worker_train_loader(
    accelerator: Accelerator,
    recipe: Recipe,
    dataset: Dataset,
    batch: int,
    workers: int,
    seed: int,
    policy=None,
    decode_on_device: bool = False,
) -> DeviceLoader:
    """Training batches from workers, finished on the device (`policy`: the recipe's policy run there, if any).
    With `decode_on_device` the workers hand over JPEG bytes and timm's draws (a dataset whose transform is
    `harness.data.decode.EncodedTrainTransform`), decoded on the device one batch ahead."""
    device, rank = accelerator.device, accelerator.process_index
    stage = DeviceStage(recipe, device, train=True, policy=policy)
    if not decode_on_device:
        return DeviceLoader(
            _sharded_train_loader(accelerator, recipe, dataset, batch, workers, seed), stage, seed, rank, device
        )
    loader = _sharded_train_loader(accelerator, recipe, dataset, batch, workers, seed, collate_encoded)
    return DecodingLoader(loader, stage, DeviceDecoder(recipe.img_size, device, dataset), seed, rank, device)


def worker_eval_loader(
    accelerator: Accelerator, recipe: Recipe, dataset: Dataset, batch: int, workers: int, seed: int
) -> DeviceLoader:
    """Evaluation batches from workers: accelerate pads the processes to equal batches and `gather_for_metrics`
    drops the padding, so each image is counted once on any number of processes."""
    pin = accelerator.device.type == "cuda"
    loader = accelerator.prepare(make_loader(dataset, batch, False, workers, seed, pin))
    stage = DeviceStage(recipe, accelerator.device, train=False)
    return DeviceLoader(loader, stage, seed, accelerator.process_index, accelerator.device)


def worker_transforms(recipe: Recipe, channels: int, route: DataRoute) -> tuple:
    """The per-image (train, eval) transforms a route needs: none on the in-memory path."""
    if route.path == "memory":
        return None, None
    train, evaluate = build_transforms(recipe, channels, aa_in_workers=route.augment_on == "workers")
    if route.decode_on == "device":
        train = EncodedTrainTransform(recipe)
    return train, evaluate


def worker_notes(recipe: Recipe, route: DataRoute) -> list[str]:
    """What the run record should say about the workers' transforms."""
    if route.path == "memory" or not resizes_tensors(recipe, route.augment_on == "workers"):
        return []
    if route.decode_on == "device":
        return [DECODE_NOTE.format(interpolation=recipe.training_interpolation)]
    return [TENSOR_RESIZE_NOTE.format(interpolation=recipe.training_interpolation)]


def build_loaders(
    accelerator: Accelerator,
    recipe: Recipe,
    train_set: Dataset,
    eval_set: Dataset,
    route: DataRoute,
    micro_batch: int,
    workers: int,
    seed: int,
    policy=None,
) -> tuple[Loader, Loader]:
    """(train loader, eval loader) on the route's path, `micro_batch` images a process; `policy` is the recipe's
    augmentation policy on the device (None where it runs in the workers, or there is none)."""
    if route.path == "memory":
        device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
        return memory_loaders(recipe, train_set, eval_set, micro_batch, seed, device, rank, world, policy)
    on_device = route.decode_on == "device"
    train = worker_train_loader(accelerator, recipe, train_set, micro_batch, workers, seed, policy, on_device)
    return train, worker_eval_loader(accelerator, recipe, eval_set, micro_batch, workers, seed)


def build_eval_loader(
    accelerator: Accelerator,
    recipe: Recipe,
    eval_set: Dataset,
    route: DataRoute,
    micro_batch: int,
    workers: int,
    seed: int,
) -> Loader:
    """The eval loader alone on the route's path (what an evaluation of saved weights needs)."""
    if route.path == "memory":
        device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
        return memory_eval_loader(recipe, eval_set, micro_batch, seed, device, rank, world)
    return worker_eval_loader(accelerator, recipe, eval_set, micro_batch, workers, seed)
