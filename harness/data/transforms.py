"""What runs per image in a DataLoader worker: timm's transforms, ending in uint8 CHW tensors.

As timm's `create_transform(use_prefetcher=True)` builds them: decoding, crops, flips (and, when the device cannot
run the recipe's RandAugment/AutoAugment policy, that policy) stay on the host; conversion to float, normalisation,
random erasing and channels_last happen per batch on the device (`harness.data.device`), so a worker hands over a
quarter of the bytes and spends no time on float arithmetic.
"""

from __future__ import annotations

from timm.data import create_transform
from torchvision import transforms as T

from recipes import Recipe


def build_transforms(recipe: Recipe, channels: int, aa_in_workers: bool = True):
    """(train, eval) per-image transforms ending in uint8 CHW; grey images are expanded to three channels first.

    With `aa_in_workers=False` the train transform stops after crop and flip, and the recipe's `aa` policy is left
    to the device stage."""
    train = create_transform(
        recipe.img_size,
        is_training=True,
        scale=recipe.scale,
        ratio=recipe.ratio,
        hflip=recipe.hflip,
        # timm turns colour jitter off when a policy runs; it stays off when the policy runs on the device instead
        color_jitter=recipe.color_jitter if aa_in_workers or not recipe.aa else None,
        auto_augment=recipe.aa if aa_in_workers else None,
        interpolation=recipe.interpolation,
        use_prefetcher=True,
    )
    evaluate = create_transform(
        recipe.test_img_size,
        is_training=False,
        interpolation=recipe.interpolation,
        crop_pct=recipe.crop_pct,
        use_prefetcher=True,
    )
    if recipe.rotate > 0:
        train = T.Compose([T.RandomRotation(recipe.rotate), train])
    if channels == 1:
        to_rgb = T.Grayscale(num_output_channels=3)
        train, evaluate = T.Compose([to_rgb, train]), T.Compose([to_rgb, evaluate])
    return train, evaluate


def worker_transforms(recipe: Recipe, channels: int, route) -> tuple:
    """The per-image transforms a `DataRoute` needs: none on the in-memory path."""
    if route.path == "memory":
        return None, None
    return build_transforms(recipe, channels, aa_in_workers=route.augment_on == "workers")
