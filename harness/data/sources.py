"""Which reader serves a dataset name: availability checks before any work, and the (train, eval) splits."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, Subset

from harness.data.catalog import DataError, dataset_info
from harness.data.readers.bundled import DigitsDataset, Mnist5kDataset
from harness.data.readers.folder import folder_root, folder_splits
from harness.data.readers.idx import CIFAR, IDX_DATASETS, check_cifar, cifar_splits, idx_root, idx_splits


def check_available(name: str, data_dir: Path | None, download: bool) -> None:
    """Raise DataError, naming where we looked, if `name` cannot be loaded without training first."""
    info = dataset_info(name)
    if data_dir is not None and not data_dir.is_dir() and not download:
        raise DataError(f"--data-dir {data_dir} does not exist; {info.how_to_get}")
    if name in IDX_DATASETS:
        idx_root(name, data_dir, download)
    elif name in CIFAR:
        check_cifar(name, data_dir, download)
    elif name in ("imagenet", "folder"):
        folder_root(data_dir, name)


def build_datasets(name: str, data_dir: Path | None, download: bool, train_tf, eval_tf):
    """Return (train, eval, num_classes) for a dataset that `check_available` accepted."""
    if name == "digits":
        return DigitsDataset(True, train_tf), DigitsDataset(False, eval_tf), 10
    if name == "mnist_5k":
        return Mnist5kDataset(True, train_tf), Mnist5kDataset(False, eval_tf), 10
    if name in IDX_DATASETS:
        return idx_splits(name, data_dir, download, train_tf, eval_tf)
    if name in CIFAR:
        return cifar_splits(name, data_dir, download, train_tf, eval_tf)
    return folder_splits(name, data_dir, train_tf, eval_tf)


def first(dataset: Dataset, n: int | None) -> Dataset:
    """The first n samples of a dataset (all of it when n is None)."""
    if n is None or n >= len(dataset):
        return dataset
    return Subset(dataset, range(n))
