"""Which reader serves a dataset name: availability checks before any work, and the (train, eval) splits, each
carrying a `source` record of where it was read from (format, root, files, sizes) for the run record."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, Subset

from harness.data.catalog import DataError, dataset_info, hub_repo
from harness.data.layouts import Layout, files_record, find_layout, refuse_remote
from harness.data.readers.bundled import DigitsDataset, Mnist5kDataset
from harness.data.readers.folder import folder_splits
from harness.data.readers.idx import CIFAR, IDX_DATASETS, check_cifar, cifar_splits, idx_root, idx_splits
from harness.data.readers.parquet import parquet_classes, parquet_splits
from harness.data.readers.shards import check_shards, shard_splits

# Read from files in one of the layouts of harness.data.layouts (class folders, parquet, tar shards).
FILE_DATASETS = ("imagenet", "folder", "hfds", "wds")


def reads_files(name: str) -> bool:
    return name in FILE_DATASETS or hub_repo(name) is not None


def check_available(name: str, data_dir: Path | None, download: bool) -> None:
    """Raise DataError, naming where we looked, if `name` cannot be loaded without training first. Parquet files
    and tar shards are checked whole here (columns, classes, labels; every shard indexed), so a malformed one is
    refused before a run directory exists."""
    info = dataset_info(name)
    if reads_files(name):
        refuse_remote(data_dir)
    if data_dir is not None and not data_dir.is_dir() and not download:
        raise DataError(f"--data-dir {data_dir} does not exist; {info.how_to_get}")
    if name in IDX_DATASETS:
        idx_root(name, data_dir, download)
    elif name in CIFAR:
        check_cifar(name, data_dir, download)
    elif reads_files(name):
        check_layout(find_layout(name, data_dir))


def check_layout(layout: Layout) -> None:
    if layout.format == "parquet":
        parquet_classes(layout)
    elif layout.format == "wds":
        check_shards(layout)


def build_datasets(name: str, data_dir: Path | None, download: bool, train_tf, eval_tf):
    """Return (train, eval, num_classes) for a dataset that `check_available` accepted; both splits carry `source`."""
    train, evaluated, classes, source = _read(name, data_dir, download, train_tf, eval_tf)
    source["samples"] = {"train": len(train), "eval": len(evaluated)}
    train.source = evaluated.source = source
    return train, evaluated, classes


def _read(name: str, data_dir: Path | None, download: bool, train_tf, eval_tf):
    if name == "digits":
        return DigitsDataset(True, train_tf), DigitsDataset(False, eval_tf), 10, {"format": "bundled"}
    if name == "mnist_5k":
        return Mnist5kDataset(True, train_tf), Mnist5kDataset(False, eval_tf), 10, {"format": "bundled"}
    if name in IDX_DATASETS:
        root = idx_root(name, data_dir, download)
        return *idx_splits(name, data_dir, download, train_tf, eval_tf), {"format": "idx", "root": str(root)}
    if name in CIFAR:
        return *cifar_splits(name, data_dir, download, train_tf, eval_tf), {"format": "cifar", "root": str(data_dir)}
    layout = find_layout(name, data_dir)
    return *layout_splits(name, layout, train_tf, eval_tf), layout_record(layout)


def layout_splits(name: str, layout: Layout, train_tf, eval_tf):
    if layout.format == "parquet":
        return parquet_splits(layout, train_tf, eval_tf)
    if layout.format == "wds":
        return shard_splits(layout, train_tf, eval_tf)
    return folder_splits(name, layout.root, train_tf, eval_tf)


def layout_record(layout: Layout) -> dict:
    record = {"format": layout.format, "root": str(layout.root)}
    if layout.hub is not None:
        record["hub"] = layout.hub
    record["files"] = {"train": files_record(layout.train), "eval": files_record(layout.eval)}
    record["eval_split"] = layout.eval_split
    return record


def dataset_source(dataset: Dataset) -> dict | None:
    """Where a split (or the Subset a budget cut from it) was read from: the `source` record of build_datasets."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    return getattr(base, "source", None)


def first(dataset: Dataset, n: int | None) -> Dataset:
    """The first n samples of a dataset (all of it when n is None)."""
    if n is None or n >= len(dataset):
        return dataset
    return Subset(dataset, range(n))
