"""What runs per image in a DataLoader worker: timm's transforms, ending in uint8 CHW tensors.

As timm's `create_transform(use_prefetcher=True)` builds them: decoding and cropping stay on the host; conversion to
float, normalisation, random erasing and channels_last happen per batch on the device (`harness.data.device`), so a
worker hands over a quarter of the bytes and spends no time on float arithmetic.

When the workers run no PIL-only augmentation (the recipe's RandAugment/AutoAugment policy runs on the device, or
there is none; no colour jitter or rotation), a training image becomes a uint8 tensor as soon as it is decoded and
timm's random-resized crop (the same box, drawn by timm's own `get_params`, and the same interpolation) resizes it
with torch's antialiased uint8 resampling, about twice PIL's speed on one core; the result differs from PIL's
by a fraction of a level on average (`TENSOR_RESIZE_NOTE`, tested in tests/test_device_stage.py). Evaluation keeps
timm's PIL transform, so an evaluation equals timm's `validate.py` image for image.
"""

from __future__ import annotations

import random

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from timm.data import create_transform
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from harness.build import transform_kwargs
from harness.data.capabilities import resizes_tensors
from recipes import Recipe

TENSOR_RESIZE_NOTE = (
    "training crops are resized in the workers as uint8 tensors by torch's antialiased {interpolation} (timm's crop "
    "boxes, drawn by timm), not as PIL images: on photographs about 1% of values differ from PIL's by one level of "
    "255 (bicubic up to 10 at sharp edges, bilinear at most 1)"
)


def tensor_interpolation(mode: InterpolationMode) -> InterpolationMode:
    """The mode that resizes a tensor as PIL resizes an image with `mode`: for tensors NEAREST is torch's legacy
    rule (the source pixel at floor(x * scale)), PIL's nearest takes the pixel under the centre, NEAREST_EXACT."""
    return InterpolationMode.NEAREST_EXACT if mode == InterpolationMode.NEAREST else mode


class RandomResizedCropToTensor:
    """timm's `RandomResizedCropAndInterpolation`, the same boxes and interpolation drawn by timm's own code, with
    the crop resized as a uint8 tensor (torch's antialiased resampling) instead of as a PIL image."""

    def __init__(self, size: int, scale: tuple, ratio: tuple, interpolation: str):
        self.timm = RandomResizedCropAndInterpolation(size, scale, ratio, interpolation)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        box, mode = self.draw(image)
        return self.resize(image, box, mode)

    def draw(self, image: Image.Image) -> tuple[tuple[int, int, int, int], InterpolationMode]:
        """timm's draws for this image: the box (top, left, height, width) by timm's `get_params`, which reads only
        the image's size, then the interpolation (timm's random choice where it has several)."""
        timm_crop = self.timm
        box = timm_crop.get_params(image, timm_crop.scale, timm_crop.ratio)
        mode = timm_crop.interpolation
        if isinstance(mode, tuple | list):
            mode = random.choice(mode)
        return box, mode

    def resize(self, image: Image.Image, box: tuple[int, int, int, int], mode: InterpolationMode) -> torch.Tensor:
        """The box of a decoded image as a uint8 tensor at the train size."""
        top, left, height, width = box
        crop = TF.pil_to_tensor(image.crop((left, top, left + width, top + height)))
        return TF.resize(crop, list(self.timm.size), interpolation=tensor_interpolation(mode), antialias=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.timm!r})"


def _tensor_train_transform(recipe: Recipe) -> T.Compose:
    ops = [RandomResizedCropToTensor(recipe.img_size, recipe.scale, recipe.ratio, recipe.training_interpolation)]
    if recipe.hflip > 0:
        ops.append(T.RandomHorizontalFlip(recipe.hflip))
    return T.Compose(ops)


def build_transforms(recipe: Recipe, channels: int, aa_in_workers: bool = True):
    """(train, eval) per-image transforms ending in uint8 CHW; grey images are expanded to three channels first.

    With `aa_in_workers=False` the recipe's `aa` policy is left to the device stage."""
    if resizes_tensors(recipe, aa_in_workers):
        train = _tensor_train_transform(recipe)
    else:
        train = create_transform(**transform_kwargs(recipe, is_training=True, use_prefetcher=True))
    evaluate = create_transform(**transform_kwargs(recipe, is_training=False, use_prefetcher=True))
    if recipe.rotate > 0:
        train = T.Compose([T.RandomRotation(recipe.rotate), train])
    if channels == 1:
        to_rgb = T.Grayscale(num_output_channels=3)
        train, evaluate = T.Compose([to_rgb, train]), T.Compose([to_rgb, evaluate])
    return train, evaluate
