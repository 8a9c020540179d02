"""The global batch as micro-batches: how many forward/backward passes each optimizer update accumulates.

`--batch-size` is the global batch the optimizer sees per update; `--micro-batch` the per-process batch of one
forward/backward. Updates accumulate `global / (micro x processes)` micro-steps through accelerate's gradient
accumulation, so the published global batch (and its LR) is kept on any number of devices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from harness.config import ConfigError


@dataclass(frozen=True)
class BatchSplit:
    global_batch: int
    processes: int
    micro_batch: int

    @property
    def per_process(self) -> int:
        return self.global_batch // self.processes

    @property
    def accum_steps(self) -> int:
        return self.per_process // self.micro_batch


def mixes_pairs(recipe) -> bool:
    """Mixup/CutMix pair the images of a batch, so they need an even micro-batch."""
    return recipe.mixup > 0 or recipe.cutmix > 0


def working_micro_batches(global_batch: int, processes: int, even: bool = False) -> list[int]:
    """Every micro-batch that divides the per-process share of the global batch (only even ones for `even`)."""
    if global_batch % processes:
        return []
    per_process = global_batch // processes
    return [m for m in range(1, per_process + 1) if per_process % m == 0 and not (even and m % 2)]


def split_batch(global_batch: int, processes: int, micro_batch: int | None, even: bool = False) -> BatchSplit:
    """The split, or a ConfigError naming the micro-batches that would work; `even` for Mixup/CutMix pairs."""
    if global_batch % processes:
        raise ConfigError(f"global batch {global_batch} does not split over {processes} processes")
    per_process = global_batch // processes
    micro = per_process if micro_batch is None else micro_batch
    working = working_micro_batches(global_batch, processes, even)
    if micro not in working:
        why = "a positive divisor of" if not even else "an even divisor of"
        raise ConfigError(
            f"--micro-batch {micro} does not divide the global batch {global_batch} over {processes} process(es) "
            f"into whole accumulation steps; it must be {why} {per_process}: {', '.join(map(str, working)) or 'none'}"
        )
    return BatchSplit(global_batch, processes, micro)


def probe_micro_batch(split: BatchSplit, try_step: Callable[[int], None], even: bool = False) -> int:
    """The largest working micro-batch for which `try_step(micro)` (one forward/backward at the recipe's train
    size) does not run out of device memory: accelerate's `find_executable_batch_size`, backing off to the next
    smaller divisor of the per-process batch instead of by 10%."""
    from accelerate.utils import find_executable_batch_size

    working = working_micro_batches(split.global_batch, split.processes, even)
    candidates = sorted(working, reverse=True)

    def next_smaller() -> int:
        candidates.pop(0)
        if not candidates:
            raise ConfigError(f"no micro-batch of {split.per_process} fits in device memory, not even {working[0]}")
        return candidates[0]

    @find_executable_batch_size(starting_batch_size=candidates[0], reduce_batch_size_fn=next_smaller)
    def fits(micro: int) -> int:
        try_step(micro)
        return micro

    return fits()


@contextmanager
def leaves_no_trace(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Trial forward/backward passes of `model` in the block (train mode, random images) leave nothing behind: its
    buffers (BatchNorm's running statistics and batch counts), gradients and mode as they were, and torch's
    generators on the host and on `device` (the random images, dropout and drop path draw from them) too. The
    block must not step an optimizer."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    gradients = {name: p.grad for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    training = model.training
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        for name, p in model.named_parameters():
            p.grad = gradients[name]
        model.train(training)
