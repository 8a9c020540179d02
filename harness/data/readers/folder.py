"""Class folders (`DIR/train/CLASS/*.jpg`, `DIR/val/CLASS/*.jpg`), read with torchvision's ImageFolder."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torchvision import datasets as tvd

from harness.data.catalog import DataError
from harness.data.unreadable import UNDECODABLE, note_unreadable


def folder_root(data_dir: Path | None, name: str) -> Path:
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir DIR holding train/ and val/ class folders")
    missing = [s for s in ("train", "val") if not (data_dir / s).is_dir()]
    if missing:
        raise DataError(
            f"--data-dir {data_dir} lacks {' and '.join(m + '/' for m in missing)}; "
            f"expected {data_dir}/train/CLASS/*.jpg and {data_dir}/val/CLASS/*.jpg"
        )
    return data_dir


def check_folder(split_dir: Path) -> None:
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
            if getattr(self.transform, "takes_encoded", False):  # decoded on the device: the file's bytes
                path, target = self.samples[index]
                return self.transform(Path(path).read_bytes(), path, index), target
            return super().__getitem__(index)
        except UNDECODABLE:
            note_unreadable(self.unreadable_log, self.split, self.samples[index][0])
            return None


def folder_splits(name: str, data_dir: Path | None, train_tf, eval_tf):
    root = folder_root(data_dir, name)
    for split in ("train", "val"):
        check_folder(root / split)
    train = SkippingImageFolder(root / "train", train_tf)
    val = SkippingImageFolder(root / "val", eval_tf)
    if train.classes != val.classes:
        raise DataError(f"{root}/train and {root}/val hold different class folders")
    return train, val, len(train.classes)
