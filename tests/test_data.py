"""Dataset sources: the fixed digits split and reading MNIST-style idx files where they are."""

import gzip
import struct

import numpy as np
import pytest

from harness import data
from harness.data import DataError, DigitsDataset, build_datasets, check_available


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = DigitsDataset(True), DigitsDataset(False)
    assert (len(train), len(test)) == (1437, 360)
    assert np.bincount(test.targets.numpy()).min() >= 35  # every class present in proportion
    again = DigitsDataset(False)
    assert (again.data == test.data).all()
    image, label = train[0]
    assert image.size == (8, 8) and image.mode == "L" and 0 <= label < 10


def _write_idx(folder, prefix, n, gz):
    images = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
    with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels.tobytes())


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_a_plain_folder_of_idx_files(tmp_path, monkeypatch, gz):
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    src = tmp_path / "fmnist"
    src.mkdir()
    _write_idx(src, "train", 20, gz)
    _write_idx(src, "t10k", 10, gz)
    check_available("fashion_mnist", src, download=False)
    train, test, classes = build_datasets("fashion_mnist", src, False, None, None)
    assert (len(train), len(test), classes) == (20, 10, 10)
    image, label = test[3]
    assert image.size == (28, 28) and label == 3


def test_missing_dataset_names_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DataError, match=r"fashion_mnist not found; looked in .*absent.*dataset-fashion-mnist"):
        check_available("fashion_mnist", tmp_path, download=False)
    with pytest.raises(DataError, match="lacks train/ and val/"):
        check_available("imagenet", tmp_path, download=False)
    with pytest.raises(DataError, match="unknown dataset 'svhn'; valid datasets: digits"):
        check_available("svhn", None, download=False)
