"""The per-image path's workers hand over uint8 and the device finishes each batch: the result equals timm's float
pipeline where nothing is random, random erasing on the device keeps timm's statistics, and a resumed loader draws
what an uninterrupted one would."""

import dataclasses
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from accelerate import Accelerator
from PIL import Image
from scipy import stats
from sklearn.datasets import load_sample_images
from timm.data import create_transform
from timm.data.transforms import RandomResizedCropAndInterpolation

from harness.build import transform_kwargs
from harness.data import DigitsDataset, first
from harness.data.decode import DeviceDecoder, EncodedImage
from harness.data.device import DeviceStage, random_erasing
from harness.data.loader import worker_eval_loader, worker_train_loader
from harness.data.memory import BatchAugment, BatchEvalTransform
from harness.data.transforms import RandomResizedCropToTensor, build_transforms
from recipes import get_recipe

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """Crops of scikit-learn's two real photographs at a few sizes and aspect ratios."""
    pictures = [Image.fromarray(p) for p in load_sample_images().images]
    boxes = [(0, 0, 640, 427), (100, 50, 400, 350), (200, 0, 500, 427), (10, 10, 170, 130)]
    return [p.crop(box) for p in pictures for box in boxes]


def timm_float(transform, images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([transform(image) for image in images])


def ours(transform, recipe, images: list[Image.Image], train: bool) -> torch.Tensor:
    batch = torch.stack([transform(image) for image in images])
    assert batch.dtype == torch.uint8
    return DeviceStage(recipe, CPU, train)(batch)


def deterministic(**changes):
    fixed = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip": 0.0, "aa": None, "reprob": 0.0}
    return dataclasses.replace(get_recipe("rsb_a3"), **{**fixed, **changes})


def test_evaluation_batches_equal_timms_float_transform(photos):
    recipe = deterministic(test_img_size=96, crop_pct=0.95)
    reference = create_transform(**transform_kwargs(recipe, is_training=False, mean=recipe.mean, std=recipe.std))
    _, eval_tf = build_transforms(recipe, channels=3)
    expected, got = timm_float(reference, photos), ours(eval_tf, recipe, photos, train=False)
    assert got.shape == expected.shape == (len(photos), 3, 96, 96)
    assert (got - expected).abs().max() <= 1e-6
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("interpolation", "largest"), [("bicubic", 10), ("bilinear", 1)])
def test_training_crops_resized_as_tensors_stay_within_a_fraction_of_a_level_of_timms(photos, interpolation, largest):
    """The workers draw timm's crop boxes (same seeds, same boxes) and resize uint8 tensors with torch's antialiased
    resampling; timm resizes PIL images. The run record's note quotes this bound."""
    recipe = dataclasses.replace(get_recipe("rsb_a3"), img_size=160, interpolation=interpolation)
    timms = create_transform(
        160,
        is_training=True,
        scale=recipe.scale,
        ratio=recipe.ratio,
        hflip=recipe.hflip,
        color_jitter=None,
        interpolation=interpolation,
        use_prefetcher=True,
    )
    train_tf, _ = build_transforms(recipe, channels=3, aa_in_workers=False)
    images = photos * 4
    batches = []
    for transform in (timms, train_tf):
        random.seed(0)
        torch.manual_seed(0)
        batches.append(torch.stack([transform(image) for image in images]).int())
    difference = (batches[0] - batches[1]).abs()
    assert batches[1].shape == (len(images), 3, 160, 160)
    assert (difference > 0).float().mean() < 0.03 and difference.max() <= largest


def test_nearest_resizes_tensors_exactly_as_pils_nearest_on_every_path():
    """PIL's NEAREST (timm's) takes the source pixel under each output pixel's centre; torch's NEAREST on tensors
    floors instead, which differs from PIL on a crop of a 97x131 image resized to 64."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (131, 97, 3), dtype=np.uint8))
    recipe = dataclasses.replace(get_recipe("rsb_a3"), img_size=64, train_interpolation="nearest")
    timm_crop = RandomResizedCropAndInterpolation(64, recipe.scale, recipe.ratio, "nearest")
    worker_crop = RandomResizedCropToTensor(64, recipe.scale, recipe.ratio, "nearest")
    decoder = DeviceDecoder(64, CPU, [image])
    for k in range(8):
        random.seed(k)
        expected = torch.from_numpy(np.array(timm_crop(image))).permute(2, 0, 1)
        random.seed(k)
        box, mode = worker_crop.draw(image)
        assert torch.equal(worker_crop.resize(image, box, mode), expected)  # the workers' tensor path
        decoded = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        assert torch.equal(decoder.crop(decoded, EncodedImage(None, box, mode, False, "x")), expected)  # the device's
    evaluation = dataclasses.replace(recipe, interpolation="nearest", test_img_size=48, crop_pct=0.9)
    timm_eval = create_transform(**transform_kwargs(evaluation, is_training=False, mean=recipe.mean, std=recipe.std))
    batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    assert (BatchEvalTransform(evaluation, CPU)(batch)[0] - timm_eval(image)).abs().max() <= 1e-6  # in memory


def test_grey_images_become_three_equal_channels_as_in_the_float_path():
    recipe = deterministic(img_size=24, test_img_size=24, crop_pct=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    digits = [image for image, _ in first(DigitsDataset(False), 16)]
    _, eval_tf = build_transforms(recipe, channels=1)
    got = ours(eval_tf, recipe, digits, train=False)
    grey = create_transform(**transform_kwargs(recipe, is_training=False, mean=recipe.mean, std=recipe.std))
    expected = torch.stack([grey(image.convert("RGB")) for image in digits])
    assert (got - expected).abs().max() <= 1e-6
    assert torch.equal(got[:, 0], got[:, 1]) and torch.equal(got[:, 1], got[:, 2])


def test_normalisation_builds_no_tensor_per_batch_and_equals_torchvisions(monkeypatch):
    """torchvision's normalize builds mean and std from lists on every call: on a GPU a copy from pageable host
    memory that waits for the queued work. The device stages build them once."""
    recipe = dataclasses.replace(deterministic(img_size=16, test_img_size=16, crop_pct=1.0), rotate=10.0)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 256, (4, channels, 16, 16), dtype=torch.uint8, generator=generator)
               for channels in (3, 1)]  # fmt: skip
    stages = [DeviceStage(recipe, CPU, train=True), DeviceStage(recipe, CPU, train=False),
              BatchAugment(recipe, CPU), BatchEvalTransform(recipe, CPU)]  # fmt: skip
    expected = [TF.normalize(TF.grayscale_to_rgb(b.float() / 255) if b.shape[1] == 1 else b.float() / 255,
                             list(recipe.mean), list(recipe.std)) for b in batches]  # fmt: skip

    def built(*args, **kwargs):
        raise AssertionError("a tensor built from host values for a batch")

    monkeypatch.setattr(torch, "tensor", built)
    monkeypatch.setattr(torch, "as_tensor", built)
    for batch, want in zip(batches, expected, strict=True):
        for stage in stages:
            got = stage(batch, torch.Generator().manual_seed(1))
            assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
            if not isinstance(stage, BatchAugment):  # no random draws here: torchvision's values, bit for bit
                assert torch.equal(got, want)


def erased_areas(batch: torch.Tensor) -> np.ndarray:
    """The share of each image set to exactly zero (timm's 'const' erasing fills zeros after normalisation)."""
    return (batch == 0).all(dim=1).float().mean(dim=(1, 2)).numpy()


def test_random_erasing_on_the_device_keeps_timms_per_image_statistics(photos):
    """The stage's batch erased as the training loop erases it (after Mixup/CutMix, none here)."""
    recipe = deterministic(img_size=32, reprob=0.5)
    images = [photos[i % len(photos)] for i in range(1200)]
    kwargs = transform_kwargs(recipe, is_training=True, color_jitter=None, mean=recipe.mean, std=recipe.std)
    reference = create_transform(**kwargs, re_prob=recipe.reprob)
    train_tf, _ = build_transforms(recipe, channels=3)
    erased = random_erasing(recipe, CPU)(ours(train_tf, recipe, images, True))
    theirs, mine = erased_areas(timm_float(reference, images)), erased_areas(erased)
    erased_theirs, erased_mine = theirs[theirs > 0], mine[mine > 0]
    # Half the images erased, each over about 2% to 1/3 of its area (timm's defaults), alike in distribution.
    assert abs(len(erased_mine) / len(images) - 0.5) < 0.06 and abs(len(erased_theirs) / len(images) - 0.5) < 0.06
    assert erased_mine.min() >= 0.015 and erased_mine.max() <= 0.36  # whole pixels round the rectangle
    assert stats.ks_2samp(erased_mine, erased_theirs).pvalue > 0.001


def generator_drawn_shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A stand-in policy whose result depends on every draw of the batch's generator."""
    shift = torch.randint(0, 64, (len(images), 1, 1, 1), generator=generator, dtype=torch.uint8)
    return images + shift


def test_a_resumed_worker_loader_repeats_the_order_and_the_device_draws():
    from harness.accelerator import make_accelerator

    recipe = deterministic(img_size=16)
    train_tf, _ = build_transforms(recipe, channels=1)
    dataset = first(DigitsDataset(True, train_tf), 96)
    accelerator = make_accelerator(amp=False)  # the run's accelerator: its sampler's order is a function of the epoch
    loader = worker_train_loader(accelerator, recipe, dataset, 16, 0, seed=3, policy=generator_drawn_shift)
    loader.set_epoch(1)
    whole = [(x.clone(), y.clone()) for x, y in loader]
    loader.set_epoch(1)
    resumed = list(loader.skip_first_batches(2))
    assert len(whole) == 6 and len(resumed) == 4
    for (x, y), (rx, ry) in zip(whole[2:], resumed, strict=True):
        assert torch.equal(y, ry) and torch.equal(x, rx)
    loader.set_epoch(2)
    assert not torch.equal(next(iter(loader))[0], whole[0][0])


def test_the_evaluation_loader_counts_each_image_once_with_uint8_batches():
    recipe = deterministic(test_img_size=16, crop_pct=1.0)
    _, eval_tf = build_transforms(recipe, channels=1)
    accelerator = Accelerator(cpu=True)
    loader = worker_eval_loader(accelerator, recipe, first(DigitsDataset(False, eval_tf), 50), 16, 0, seed=0)
    batches = list(loader)
    assert sum(len(y) for _, y in batches) == 50
    assert all(x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16) for x, _ in batches)
