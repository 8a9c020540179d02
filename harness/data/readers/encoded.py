"""A split of images held as encoded bytes (parquet rows, tar members), read by index and decoded per access."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from harness.data.unreadable import UNDECODABLE, note_unreadable


def decode_rgb(data: bytes) -> Image.Image:
    """An encoded image as an RGB PIL image, as torchvision's ImageFolder loader opens a file."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


class EncodedImages(Dataset):
    """Map-style images with integer labels: sample i is `read(i)` decoded, transformed, with `targets[i]`.

    A transform that `takes_encoded` (harness.data.decode) gets the bytes instead of the decoded image.
    An image PIL cannot decode gives None and its `name(i)` is appended to `unreadable_log`, as the class-folder
    reader does; `collate_readable` fills the gap. `split` is "train" or "val", the names the run's log uses."""

    def __init__(self, targets: np.ndarray, classes: list[str], split: str, transform=None):
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = classes
        self.split = split
        self.transform = transform
        self.unreadable_log: Path | None = None

    def read(self, index: int) -> bytes:
        raise NotImplementedError

    def name(self, index: int) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        try:
            data = self.read(index)
            if getattr(self.transform, "takes_encoded", False):  # decoded on the device: the bytes
                return self.transform(data, self.name(index), index), int(self.targets[index])
            image = decode_rgb(data)
        except UNDECODABLE:
            note_unreadable(self.unreadable_log, self.split, self.name(index))
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])
