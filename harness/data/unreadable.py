"""Images that cannot be decoded: skipped and named, or stopping the run past a small share of a split."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, default_collate

from harness.data.catalog import DataError

# A split with more undecodable images than this fraction stops the run; fewer are skipped and listed.
UNREADABLE_LIMIT = 0.001
UNREADABLE_LOG = "unreadable.txt"
# What PIL raises for bytes that are not a whole image (truncated, corrupt, not an image at all).
UNDECODABLE = (OSError, SyntaxError, Image.DecompressionBombError)


def note_unreadable(log: Path | None, split: str, name: str) -> None:
    """Append one undecodable image to the run's log (one line per failure, from any worker or process)."""
    if log is not None:
        with open(log, "a") as f:
            f.write(f"{split}\t{name}\n")


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
    """Have the datasets among `datasets` (possibly inside a Subset) that can meet undecodable images record them
    in `log` (they carry an `unreadable_log` attribute)."""
    for dataset in datasets:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        if hasattr(base, "unreadable_log"):
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
