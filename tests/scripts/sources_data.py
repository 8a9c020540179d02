"""The same small JPEGs as class folders, WebDataset shards, parquet files and a hub-cache snapshot, for
tests/test_sources.py: 48-px crops of scikit-learn's two sample photographs, in three classes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("china", "flower", "swapped")  # crops of each photograph; the third: the first with its channels swapped
TRAIN_PER_CLASS, EVAL_PER_CLASS, SIZE = 24, 8, 48
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class Sample:
    key: str
    label: int
    jpeg: bytes


def make_samples(seed: int = 0) -> dict[str, list[Sample]]:
    """{"train": [...], "val": [...]}, each in class-folder order (class, then key)."""
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    sources = (china, flower, china[..., ::-1])
    rng = np.random.default_rng(seed)
    splits: dict[str, list[Sample]] = {"train": [], "val": []}
    for label, (name, photo) in enumerate(zip(CLASSES, sources, strict=True)):
        for split, count in (("train", TRAIN_PER_CLASS), ("val", EVAL_PER_CLASS)):
            for i in range(count):
                top, left = rng.integers(0, photo.shape[0] - SIZE), rng.integers(0, photo.shape[1] - SIZE)
                buffer = io.BytesIO()
                Image.fromarray(np.ascontiguousarray(photo[top : top + SIZE, left : left + SIZE])).save(
                    buffer, "JPEG", quality=90
                )
                splits[split].append(Sample(f"{name}_{split}{i:03d}", label, buffer.getvalue()))
    return splits


def write_folder(root: Path, splits: dict[str, list[Sample]]) -> Path:
    for split, samples in splits.items():
        for s in samples:
            folder = root / split / CLASSES[s.label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{s.key}.jpg").write_bytes(s.jpeg)
    return root


def write_shards(
    root: Path, splits: dict[str, list[Sample]], per_shard: int = 40, info: bool = False, prefix: str = "toy"
) -> Path:
    """`{prefix}-train-0000.tar`, ... and `{prefix}-validation-0000.tar` with webdataset's TarWriter; `info`: also
    timm's `_info.json` with the class names."""
    import webdataset as wds

    root.mkdir(parents=True, exist_ok=True)
    layout = {}
    for split, name in (("train", "train"), ("val", "validation")):
        samples, files, lengths = splits[split], [], []
        for n, start in enumerate(range(0, len(samples), per_shard)):
            files.append(f"{prefix}-{name}-{n:04d}.tar")
            chunk = samples[start : start + per_shard]
            lengths.append(len(chunk))
            with wds.TarWriter(str(root / files[-1])) as sink:
                for s in chunk:
                    sink.write({"__key__": s.key, "jpg": s.jpeg, "cls": s.label})
        layout[name] = {"name": name, "num_samples": len(samples), "filenames": files, "shard_lengths": lengths}
    if info:
        (root / "_info.json").write_text(json.dumps({"name": prefix, "splits": layout, "class_names": CLASSES}))
    return root


def write_parquet(root: Path, splits: dict[str, list[Sample]], per_file: int = 40, names=CLASSES) -> Path:
    """`data/train-0000N-of-0000M.parquet` and `data/validation-...` with the `datasets` library: `image` as the
    hub's {bytes, path}, `label` a ClassLabel of `names` (plain integers when `names` is None)."""
    import datasets

    label = datasets.ClassLabel(names=list(names)) if names else datasets.Value("int64")
    features = datasets.Features({"image": datasets.Image(), "label": label})
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("val", "validation")):
        samples = splits[split]
        chunks = [samples[i : i + per_file] for i in range(0, len(samples), per_file)]
        for n, chunk in enumerate(chunks):
            table = datasets.Dataset.from_dict(
                {
                    "image": [{"bytes": s.jpeg, "path": f"{s.key}.jpg"} for s in chunk],
                    "label": [s.label for s in chunk],
                },
                features=features,
            )
            table.to_parquet(str(root / "data" / f"{name}-{n:05d}-of-{len(chunks):05d}.parquet"))
    return root


def write_hub_cache(cache: Path, repo: str, write: Callable[[Path], Path]) -> Path:
    """A hub-cache entry for dataset `repo` laid out as huggingface_hub lays it out: the files `write(folder)` makes
    stored in blobs/ by content, symlinked from snapshots/COMMIT/, and refs/main naming COMMIT."""
    entry = cache / f"datasets--{repo.replace('/', '--')}"
    staging = write(entry / "staging")
    snapshot = entry / "snapshots" / HUB_COMMIT
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        blob = entry / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        path.replace(blob)
        link = snapshot / path.relative_to(staging)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    shutil.rmtree(staging)
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(HUB_COMMIT)
    return cache
