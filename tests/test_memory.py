"""The in-memory path produces the augmentations the recipe names, checked against the per-image transforms."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Subset

from harness.data import DigitsDataset
from harness.data.autoaugment import device_policy
from harness.data.capabilities import unsupported_in_memory
from harness.data.device import DeviceStage
from harness.data.memory import (
    BatchAugment,
    BatchEvalTransform,
    MemoryLoader,
    crop_boxes,
    rotation_theta,
    split_tensors,
)
from harness.data.transforms import build_transforms
from harness.run import main
from recipes import get_recipe, list_recipes
from tests.conftest import run_cli

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return split_tensors(DigitsDataset(True))


def per_image(transform, images: torch.Tensor, seed: int, recipe, train: bool = False) -> torch.Tensor:
    """The per-image path: each image through the worker transform (uint8), the batch through the device stage."""
    torch.manual_seed(seed)
    uint8 = torch.stack([transform(Image.fromarray(img[0].numpy(), mode="L")) for img in images])
    assert uint8.dtype == torch.uint8
    return DeviceStage(recipe, CPU, train)(uint8)


def plain(recipe_name="cnn_fmnist", **changes):
    fixed = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip": 0.0, "rotate": 0.0, "color_jitter": 0.0,
             "crop_pct": 1.0, "interpolation": "bilinear", "reprob": 0.0}  # fmt: skip
    return dataclasses.replace(get_recipe(recipe_name), **{**fixed, **changes})


def test_split_tensors_match_the_dataset_items_and_follow_subsets():
    dataset = DigitsDataset(True)
    images, labels = split_tensors(Subset(dataset, [5, 0, 7]))
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 8, 8)
    for row, i in enumerate([5, 0, 7]):
        image, label = dataset[i]
        assert np.array_equal(np.asarray(image), images[row, 0].numpy()) and label == labels[row]


def test_split_tensors_read_cifar_style_channel_last_arrays():
    class Cifarish:
        data = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
        targets = [3, 1]

    images, labels = split_tensors(Cifarish())
    assert images.shape == (2, 3, 4, 4) and labels.tolist() == [3, 1]
    assert torch.equal(images[1, 2], torch.from_numpy(Cifarish.data[1, :, :, 2]))


@pytest.mark.parametrize("size", [8, 32])
def test_without_randomness_a_batch_equals_the_per_image_transform(digits, size):
    images = digits[0][:64]
    recipe = plain(img_size=size, test_img_size=size)
    train_tf, eval_tf = build_transforms(recipe, channels=1)
    batch = BatchAugment(recipe, CPU)(images, torch.Generator().manual_seed(0))
    reference = per_image(train_tf, images, 0, recipe, train=True)
    assert batch.shape == reference.shape == (64, 3, size, size)
    # PIL resizes in fixed point; a resize may differ from the tensor one in the last bit of a channel.
    assert (batch - reference).abs().max() < 0.02
    assert torch.allclose(BatchEvalTransform(recipe, CPU)(images), per_image(eval_tf, images, 0, recipe), atol=1e-5)


def test_eval_transform_resizes_by_crop_pct_and_centre_crops_like_timm(digits):
    images = digits[0][:32]
    recipe = plain(img_size=24, test_img_size=24, crop_pct=0.875)
    _, eval_tf = build_transforms(recipe, channels=1)
    batch = BatchEvalTransform(recipe, CPU)(images)
    assert batch.shape == (32, 3, 24, 24)
    assert torch.allclose(batch, per_image(eval_tf, images, 0, recipe), atol=0.02)


def test_flip_always_mirrors_and_channels_last_leaves(digits):
    images = digits[0][:16]
    straight = BatchAugment(plain(img_size=8), CPU)(images, torch.Generator().manual_seed(0))
    flipped = BatchAugment(plain(img_size=8, hflip=1.0), CPU)(images, torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, straight.flip(-1), atol=1e-6)
    assert flipped.is_contiguous(memory_format=torch.channels_last)


def test_a_ninety_degree_rotation_turns_the_image_exactly():
    square = torch.arange(64.0).view(1, 1, 8, 8)
    grid = F.affine_grid(rotation_theta(torch.tensor([90.0]), 8, 8), [1, 1, 8, 8], align_corners=False)
    turned = F.grid_sample(square, grid, mode="nearest", align_corners=False)[0, 0]
    assert any(torch.equal(turned, torch.rot90(square[0, 0], k)) for k in (1, -1))


def test_crop_boxes_stay_inside_the_image_with_the_recipe_area_and_aspect():
    g = torch.Generator().manual_seed(0)
    boxes = crop_boxes(4000, 28, 28, (0.08, 1.0), (3 / 4, 4 / 3), g, CPU)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 28).all()
    area = h * w / 28**2
    assert area.min() >= 0.04 and area.max() <= 1.0
    assert 0.45 < area.mean() < 0.6  # U(0.08, 1) of the area, rounded to whole pixels
    aspect = w / h
    assert aspect.min() >= 0.6 and aspect.max() <= 1.7


def test_crop_boxes_fall_back_to_the_whole_image_when_nothing_fits():
    boxes = crop_boxes(10, 28, 28, (2.0, 3.0), (1.0, 1.0), torch.Generator().manual_seed(0), CPU)
    assert boxes.tolist() == [[0.0, 0.0, 28.0, 28.0]] * 10


def stats(batch: torch.Tensor) -> dict:
    ink = batch.mean(dim=1)
    return {
        "mean": batch.mean().item(),
        "std": batch.std().item(),
        "min": batch.min().item(),
        "max": batch.max().item(),
        "mean_image": ink.mean(dim=0),
        "left_right": (ink[..., : ink.shape[-1] // 2].mean() - ink[..., ink.shape[-1] // 2 :].mean()).item(),
    }


MEMORY_RECIPES = [name for name in list_recipes() if not unsupported_in_memory(get_recipe(name), "digits", 1)]


@pytest.mark.parametrize("name", MEMORY_RECIPES)
def test_random_augmentations_match_the_per_image_pipeline_in_distribution(digits, name):
    images = digits[0]  # the whole training split: 1,437 images
    recipe = dataclasses.replace(get_recipe(name), img_size=32, test_img_size=32)
    train_tf, _ = build_transforms(recipe, channels=1)  # the policy, if any, per image in PIL as timm runs it
    augment = BatchAugment(recipe, CPU, device_policy(recipe, CPU))
    batch = augment(images, torch.Generator().manual_seed(1))
    reference = per_image(train_tf, images, 1, recipe, train=True)
    ours, theirs = stats(batch), stats(reference)
    assert batch.shape == reference.shape and batch.dtype == reference.dtype
    spread = theirs["std"]
    assert abs(ours["mean"] - theirs["mean"]) < 0.06 * spread
    assert abs(ours["std"] - theirs["std"]) < 0.06 * spread
    assert theirs["min"] - 1e-4 <= ours["min"] and ours["max"] <= theirs["max"] + 0.05 * spread
    assert abs(ours["left_right"] - theirs["left_right"]) < 0.1 * spread
    correlation = torch.corrcoef(torch.stack([ours["mean_image"].flatten(), theirs["mean_image"].flatten()]))[0, 1]
    assert correlation > 0.97


def test_every_recipe_takes_the_memory_path_on_data_that_fits_the_rsb_recipes_too():
    assert {"cnn_fmnist", "baseline", "cosine", "resnet18_fmnist_transfer", "rsb_a1", "rsb_a2", "rsb_a3"} <= set(
        MEMORY_RECIPES
    )
    assert unsupported_in_memory(get_recipe("cosine"), "imagenet", 1) and not unsupported_in_memory(
        get_recipe("cosine"), "cifar10", 8
    )


def loader(n=100, batch=8, train=True, rank=0, world=1, seed=0):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    labels = torch.arange(n)
    return MemoryLoader(images, labels, batch, lambda x, g: x[:, 0, 0, 0].long(), train, seed, rank, world)


def test_training_batches_shuffle_per_epoch_and_drop_the_last_partial_batch():
    one = loader()
    first = torch.cat([x for x, _ in one])
    assert len(one) == 12 and len(first) == 96 and len(set(first.tolist())) == 96
    again = torch.cat([x for x, _ in loader()])
    one.set_epoch(1)
    assert torch.equal(first, again) and not torch.equal(first, torch.cat([x for x, _ in one]))


def test_training_shards_are_disjoint_across_processes():
    shards = [torch.cat([x for x, _ in loader(rank=r, world=2)]) for r in range(2)]
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_evaluation_counts_every_image_once_over_uneven_processes():
    seen = []
    for rank in range(3):
        for _images, labels in loader(n=101, batch=8, train=False, rank=rank, world=3):
            seen += labels[labels >= 0].tolist()
    assert sorted(seen) == list(range(101))
    assert len({len(loader(n=101, train=False, rank=r, world=3)) for r in range(3)}) == 1


@pytest.mark.slow  # augments every training image of digits at 224 px, twice: seconds on a CPU
def test_skipping_batches_yields_the_same_augmented_batches_as_running_through():
    recipe = get_recipe("resnet18_fmnist_transfer")
    images, labels = split_tensors(DigitsDataset(True))
    make = lambda: MemoryLoader(images, labels, 16, BatchAugment(recipe, CPU), True, seed=3)  # noqa: E731
    full = list(make())
    tail = list(make().skip_first_batches(5))
    assert len(tail) == len(full) - 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[5:], tail, strict=True))


@pytest.mark.slow
def test_the_run_record_says_which_data_path_ran(tmp_path):
    result = run_cli("--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    assert summary["data_path"] == "memory" and summary["eval_samples"] == 100
    assert summary["compiled"] is False and 0 < summary["peak_rss_mb"] < 2048


def test_forcing_the_memory_path_with_the_policy_in_workers_is_refused(tmp_path, capsys):
    returncode = main(["--recipe", "rsb_a3", "--budget", "smoke", "--loader", "memory", "--augment-on", "workers",
                       "--output", str(tmp_path)])  # fmt: skip
    assert returncode == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --loader memory cannot run rsb_a3: ")
    assert "--augment-on workers runs the policy per image" in lines[0] and lines[0].endswith("use --loader workers")
    assert not any(tmp_path.iterdir())


def test_compile_wraps_the_prepared_model_in_torch_compile():
    from accelerate.state import AcceleratorState

    from harness.accelerator import make_accelerator

    optimized = torch._dynamo.eval_frame.OptimizedModule
    try:
        AcceleratorState._reset_state(reset_partial_state=True)
        assert not isinstance(make_accelerator(amp=False).prepare(torch.nn.Linear(2, 2)), optimized)
        AcceleratorState._reset_state(reset_partial_state=True)
        assert isinstance(make_accelerator(amp=False, compile_model=True).prepare(torch.nn.Linear(2, 2)), optimized)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
