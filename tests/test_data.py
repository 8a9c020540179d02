"""Dataset sources: the fixed digits split and reading MNIST-style idx files where they are."""

import gzip
import struct

import numpy as np
import pytest

from harness.data import DataError, DigitsDataset, build_datasets, check_available
from harness.data.readers import idx


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
    monkeypatch.setattr(idx, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(idx, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
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
    monkeypatch.setattr(idx, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DataError, match=r"fashion_mnist not found; looked in .*absent.*dataset-fashion-mnist"):
        check_available("fashion_mnist", tmp_path, download=False)
    with pytest.raises(DataError, match="lacks train/ and val/"):
        check_available("imagenet", tmp_path, download=False)
    with pytest.raises(DataError, match="unknown dataset 'svhn'; valid datasets: digits"):
        check_available("svhn", None, download=False)


def test_labels_outside_the_class_range_are_refused_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "CACHE_DIR", tmp_path / "cache")
    src = tmp_path / "fmnist"
    src.mkdir()
    _write_idx(src, "train", 20, gz=False)
    _write_idx(src, "t10k", 10, gz=False)
    labels = src / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[8 + 4] = 12  # image 4 gets label 12
    labels.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 12 of image 4 is outside 0..9"):
        build_datasets("fashion_mnist", src, False, None, None)


def test_image_folders_with_empty_or_broken_files_are_refused(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / cls / "a.png")
    train, val, classes = build_datasets("folder", tmp_path, False, None, None)
    assert (len(train), len(val), classes) == (2, 2, 2)
    (tmp_path / "val" / "dog" / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"val/dog/b.png is an empty file"):
        build_datasets("folder", tmp_path, False, None, None)
    (tmp_path / "val" / "dog" / "b.png").unlink()
    (tmp_path / "train" / "cat" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"train/cat/a.png is not a readable image"):
        build_datasets("folder", tmp_path, False, None, None)
