"""torchvision's in-memory datasets read from their files: MNIST-style IDX files and CIFAR's batches."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from torchvision import datasets as tvd
from torchvision.datasets.utils import extract_archive

from harness.data.catalog import CACHE_DIR, DATASETS, DataError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_DATASETS = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}
CIFAR = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}


def idx_root(name: str, data_dir: Path | None, download: bool) -> Path:
    """A root that torchvision's MNIST-style class can read, decompressing a gz-only copy if needed."""
    cls = IDX_DATASETS[name]
    folder = cls.__name__
    raw_names = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    candidates = []
    if data_dir is not None:
        candidates += [data_dir / folder / "raw", data_dir]
    if name == "fashion_mnist":
        candidates.append(DEBIAN_FASHION_MNIST)
    for raw in candidates:
        if all((raw / f).is_file() for f in raw_names):
            if raw.name == "raw" and raw.parent.name == folder:
                return raw.parent.parent
            return _decompress_into_cache(name, raw, raw_names, gz=False)
        if all((raw / f"{f}.gz").is_file() for f in raw_names):
            return _decompress_into_cache(name, raw, raw_names, gz=True)
    if download:
        return data_dir if data_dir is not None else CACHE_DIR
    looked = ", ".join(str(c) for c in candidates) or "nowhere (no --data-dir given)"
    raise DataError(f"{name} not found; looked in {looked}; {DATASETS[name].how_to_get}")


def _decompress_into_cache(name: str, src: Path, raw_names: list[str], gz: bool) -> Path:
    # One cache entry per source folder and file version, so two copies never shadow each other.
    stats = [(src / f"{f}.gz" if gz else src / f).stat() for f in raw_names]
    key = hashlib.sha1(repr((str(src.resolve()), [(s.st_size, s.st_mtime_ns) for s in stats])).encode())
    root = CACHE_DIR / name / key.hexdigest()[:16]
    raw = root / IDX_DATASETS[name].__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in raw_names:
        if not (raw / f).is_file():
            if gz:
                extract_archive(str(src / f"{f}.gz"), str(raw))
            else:
                os.symlink(src / f, raw / f)
    return root


def idx_splits(name: str, data_dir: Path | None, download: bool, train_tf, eval_tf):
    """(train, eval, 10) of an MNIST-style dataset, each split checked for shape and labels."""
    root = idx_root(name, data_dir, download)
    cls = IDX_DATASETS[name]
    splits = []
    for train in (True, False):
        try:
            split = cls(str(root), train, train_tf if train else eval_tf, download=download)
        except (AssertionError, RuntimeError, ValueError, OSError) as e:
            folder = root / cls.__name__ / "raw"
            reason = f"{type(e).__name__} {e}".strip()
            raise DataError(f"{name} files in {folder} are unreadable or malformed ({reason})") from None
        _check_idx_split(split, root / cls.__name__ / "raw", "train" if train else "t10k")
        splits.append(split)
    return splits[0], splits[1], 10


def _check_idx_split(split, raw: Path, prefix: str) -> None:
    """MNIST-style files must hold 28x28 images and one label in 0..9 per image."""
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    if split.data.ndim != 3 or tuple(split.data.shape[1:]) != (28, 28):
        raise DataError(f"{images} holds images of shape {tuple(split.data.shape[1:])}; expected 28x28")
    if len(split.targets) != len(split.data):
        raise DataError(f"{labels} has {len(split.targets)} labels for {len(split.data)} images")
    bad = ((split.targets < 0) | (split.targets >= len(split.classes))).nonzero()
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{labels}: label {int(split.targets[i])} of image {i} is outside 0..{len(split.classes) - 1}")


def check_cifar(name: str, data_dir: Path | None, download: bool) -> None:
    root = data_dir if data_dir is not None else CACHE_DIR
    if not download and not (root / CIFAR[name].base_folder).is_dir():
        raise DataError(f"{name} not found under {root}; {DATASETS[name].how_to_get}")


def cifar_splits(name: str, data_dir: Path | None, download: bool, train_tf, eval_tf):
    root = str(data_dir if data_dir is not None else CACHE_DIR)
    cls = CIFAR[name]
    train = cls(root, True, train_tf, download=download)
    return train, cls(root, False, eval_tf, download=download), len(train.classes)
