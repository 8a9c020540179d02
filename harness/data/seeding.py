"""Per-sample random draws on the per-image path: each training sample's augmentation is drawn from Python's, NumPy's
and torch's generators seeded by (seed, epoch, rank, index).

timm's train.py seeds each process with seed + rank and each DataLoader worker from there, so processes draw
differently; the copies of one image that repeated augmentation sends to different processes get different crops.
Keying each sample by its rank keeps that, and by its epoch and index makes the draws independent of the worker
count and of which worker loads it, so a resumed run, whose workers start afresh, draws what the uninterrupted run
drew. With the workers in the training process (`--workers 0`) the process's own generators, which Mixup/CutMix and
drop path use, are left as they were around each sample.
"""

from __future__ import annotations

import collections
import contextlib
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


def sample_key(seed: int, epoch: int, rank: int, index: int) -> int:
    """One 63-bit seed per (seed, epoch, rank, index); `index` counts a sample's repeats past the dataset's length
    (`NumberedRepeats`), so the copies of one image on one process draw differently too."""
    key = ((seed * 1_000_003 + epoch) * 1_000_033 + index) * 1_013 + rank
    return key % (2**63)


class NumberedRepeats(Sampler):
    """timm's RepeatAugSampler, each index numbered by its copy on this process: the k-th copy of index i is
    i + k * len(dataset), which `SeededSamples` reads back as index i with a draw of its own."""

    def __init__(self, sampler: Sampler, length: int):
        self.sampler, self.length = sampler, length

    def __iter__(self):
        copies: collections.Counter = collections.Counter()
        for index in self.sampler:
            yield index + self.length * copies[index]
            copies[index] += 1

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


@contextlib.contextmanager
def _kept_generators():
    """Python's, NumPy's and torch's CPU generator states restored on the way out."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def seed_sample(key: int) -> None:
    """Seed Python's, NumPy's and torch's CPU generator, the ones a sample's transforms draw from. Not
    `torch.manual_seed`, which also seeds every CUDA generator (dropout and drop path draw from those) that
    `_kept_generators` would not restore."""
    random.seed(key)
    np.random.seed(key % (2**32))
    torch.random.default_generator.manual_seed(key)


class SeededSamples(Dataset):
    """A training dataset whose every sample is drawn with its own (seed, epoch, rank, index) seed. The epoch lives in
    shared memory, so persistent workers see `set_epoch` from the training process."""

    def __init__(self, dataset: Dataset, seed: int, rank: int):
        self.dataset, self.seed, self.rank = dataset, seed, rank
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name in ("dataset", "_epoch") or name.startswith("__"):  # not yet set while unpickling in a worker
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, numbered: int):
        key = sample_key(self.seed, int(self._epoch), self.rank, numbered)
        index = numbered % len(self.dataset)
        if get_worker_info() is not None:
            seed_sample(key)
            return self.dataset[index]
        with _kept_generators():
            seed_sample(key)
            return self.dataset[index]
