"""Per-process randomness as timm's train.py has it (seed + rank): Mixup/CutMix, the workers' crops and drop path draw
differently on every process, the copies of repeated augmentation differ, and the same run repeats exactly."""

import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset

from harness.data.seeding import NumberedRepeats, SeededSamples
from tests.conftest import launch_script

RSB_A1_TWO_PROCESSES = ["--recipe", "rsb_a1", "--budget", "smoke", "--loader", "workers", "--augment-on", "workers"]


def launch_two(script: str, *args: str) -> None:
    result = launch_script(2, script, *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


@pytest.fixture(scope="module")
def draws(tmp_path_factory):
    """What each of two processes draws in an RSB A1 run (3 repeats)."""
    out = tmp_path_factory.mktemp("draws")
    launch_two("tests/scripts/rank_draws.py", str(out), *RSB_A1_TWO_PROCESSES, "--workers", "1", "--output", str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.slow
def test_mixup_cutmix_and_torch_draw_differently_on_each_process(draws):
    rank0, rank1 = draws
    assert not torch.equal(rank0["lam"], rank1["lam"])
    assert not torch.equal(rank0["torch"], rank1["torch"])  # drop path's generator


@pytest.mark.slow
def test_repeated_copies_of_an_image_get_different_crops_on_and_across_processes(draws):
    rank0, rank1 = draws
    pairs = [
        (a, b)
        for batch_a, batch_b in ((rank0, rank1), (rank0, rank0), (rank1, rank1))
        for i, x in enumerate(batch_a["indices"].tolist())
        for j, y in enumerate(batch_b["indices"].tolist())
        if x == y and (batch_a is not batch_b or i < j)
        for a, b in [(batch_a["images"][i], batch_b["images"][j])]
    ]
    assert len(pairs) >= 4  # 3 copies of each image over 2 processes: some on both, some twice on one
    assert all(not torch.allclose(a, b) for a, b in pairs)


@pytest.mark.slow
def test_the_same_two_process_run_twice_trains_the_same_weights(tmp_path):
    weights = []
    for attempt in range(2):
        saved = tmp_path / f"w{attempt}.safetensors"
        launch_two(
            "harness/run.py", *RSB_A1_TWO_PROCESSES, "--workers", "1", "--set", "drop_path=0.2",
            "--output", str(tmp_path / f"runs{attempt}"), "--save-weights", str(saved),
        )  # fmt: skip
        weights.append(load_file(str(saved)))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


class RandomDraws(Dataset):
    """A sample is what Python's, NumPy's and torch's generators draw for it, as a transform would."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        return torch.tensor([random.random(), np.random.rand(), torch.rand(()).item(), float(index)])


def _epoch(dataset: SeededSamples, epoch: int, workers: int, sampler=None) -> torch.Tensor:
    dataset.set_epoch(epoch)
    # The loader's own generator: without one, a DataLoader draws its workers' base seed from torch's.
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, sampler=sampler, generator=torch.Generator())
    return torch.cat(list(loader))


def test_a_samples_draws_depend_on_seed_epoch_rank_and_index_not_on_the_workers():
    dataset = SeededSamples(RandomDraws(), seed=3, rank=1)
    in_process, in_workers = _epoch(dataset, 0, 0), _epoch(dataset, 0, 2)
    assert torch.equal(in_process, in_workers)
    assert not torch.equal(_epoch(dataset, 1, 2)[:, :3], in_process[:, :3])
    assert not torch.equal(_epoch(SeededSamples(RandomDraws(), seed=3, rank=0), 0, 0)[:, :3], in_process[:, :3])


def test_persistent_workers_see_the_next_epoch():
    dataset = SeededSamples(RandomDraws(), seed=0, rank=0)
    loader = DataLoader(dataset, batch_size=3, num_workers=1, persistent_workers=True)
    dataset.set_epoch(0)
    first = torch.cat(list(loader))
    dataset.set_epoch(1)
    second = torch.cat(list(loader))
    assert torch.equal(first, _epoch(SeededSamples(RandomDraws(), seed=0, rank=0), 0, 0))
    assert torch.equal(second, _epoch(SeededSamples(RandomDraws(), seed=0, rank=0), 1, 0))


def test_in_the_training_process_the_processs_own_generators_are_left_alone():
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    expected = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    _epoch(SeededSamples(RandomDraws(), seed=0, rank=0), 0, 0)
    assert (torch.rand(1), np.random.rand(), random.random()) == expected


def test_per_sample_seeding_leaves_the_cuda_generators_alone(monkeypatch):
    """torch.manual_seed also seeds every CUDA generator (dropout and drop path draw there), which fork_rng(devices=[])
    does not restore: with the workers in the training process their draws would follow the samples'."""
    cuda_seeds = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", cuda_seeds.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", cuda_seeds.append)
    draws = _epoch(SeededSamples(RandomDraws(), seed=0, rank=0), 0, 0)
    assert cuda_seeds == []
    assert torch.equal(draws, _epoch(SeededSamples(RandomDraws(), seed=0, rank=0), 0, 2))  # the same draws as before


def test_copies_of_one_index_on_one_process_draw_differently():
    dataset = SeededSamples(RandomDraws(), seed=0, rank=0)
    copies = _epoch(dataset, 0, 0, sampler=NumberedRepeats([2, 2, 2, 5], len(dataset)))
    assert copies[:, 3].tolist() == [2.0, 2.0, 2.0, 5.0]  # the dataset's own index
    assert len({tuple(row[:3].tolist()) for row in copies[:3]}) == 3
