"""Data: where each dataset lives (`catalog`, `readers/`, `sources`), what a worker does per image (`transforms`),
what the device does per batch (`device`, and the whole in-memory path in `memory`), training JPEGs decoded on the
device (`decode`), which path a run takes (`route`, from the checks of `capabilities`) and the loaders that wire it
(`loader`). timm's `timm/data/` is the model for the layout."""

from harness.data.catalog import CACHE_DIR, DATASETS, DataError, DatasetInfo, catalog_name, dataset_info
from harness.data.loader import make_loader
from harness.data.readers.bundled import (
    DIGITS_TEST_SIZE,
    MNIST_5K_PROVENANCE,
    MNIST_5K_TEST_SIZE,
    DigitsDataset,
    Mnist5kDataset,
)
from harness.data.readers.folder import SkippingImageFolder
from harness.data.readers.idx import DEBIAN_FASHION_MNIST
from harness.data.sources import build_datasets, check_available, dataset_source, first
from harness.data.unreadable import (
    UNREADABLE_LIMIT,
    UNREADABLE_LOG,
    check_unreadable,
    collate_readable,
    log_unreadable_to,
    unreadable_images,
)

__all__ = [
    "CACHE_DIR",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "DIGITS_TEST_SIZE",
    "MNIST_5K_PROVENANCE",
    "MNIST_5K_TEST_SIZE",
    "UNREADABLE_LIMIT",
    "UNREADABLE_LOG",
    "DataError",
    "DatasetInfo",
    "DigitsDataset",
    "Mnist5kDataset",
    "SkippingImageFolder",
    "build_datasets",
    "catalog_name",
    "check_available",
    "check_unreadable",
    "collate_readable",
    "dataset_info",
    "dataset_source",
    "first",
    "log_unreadable_to",
    "make_loader",
    "unreadable_images",
]
