"""WebDataset tar shards read map-style: each shard indexed once, then any sample read by its offset.

A shard's members are grouped into samples by webdataset's own rules (`group_by_keys` with `base_plus_ext`: the
key is the member name up to the first dot of its base name, consecutive members with one key form a sample,
extensions are lower-cased), so a shard means here what it means to the library it was written with. Indexing
walks the tar headers only (and reads each `cls`), records each sample's image offset, size and class, and is
cached under CACHE_DIR/shards keyed by the shard's path, size and modification time. After that a sample is one
`pread` of its image bytes, from any DataLoader worker, in any order: the shards are as random-access as a class
folder, so the sampler, the budgets, the process split and a mid-epoch resume work exactly as they do there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from harness.data import catalog
from harness.data.catalog import DataError
from harness.data.layouts import Layout, require
from harness.data.readers.encoded import EncodedImages

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # the first a sample holds is its image (timm: "jpg;png;webp")
INDEX_VERSION = 1  # part of the cache key: a new layout of the index never reads an old one
_METADATA = re.compile(r"__[^/]*__($|/)")  # members webdataset's tar iterator skips (its `skip_meta`)


def _members(path: Path, tar: tarfile.TarFile):
    """Regular members as webdataset's tar iterator passes them on (`__name__` metadata skipped), with (offset, size)
    in place of the bytes."""
    for info in tar:
        if info.isreg() and not _METADATA.match(info.name):
            yield {"fname": info.name, "data": (info.offset_data, info.size), "__url__": str(path)}


def _label(f, sample: dict, path: Path) -> int:
    if "cls" not in sample:
        kinds = ", ".join(k for k in sample if not k.startswith("__"))
        raise DataError(f"sample {sample['__key__']} of {path} has no cls member (it has {kinds}); expected KEY.cls")
    offset, size = sample["cls"]
    f.seek(offset)
    text = f.read(size).decode("utf-8", "replace").strip()
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}: {sample['__key__']}.cls holds {text[:20]!r}, not a class index") from None


def index_shard(path: Path) -> dict:
    """{"keys", "offsets", "sizes", "labels"} of a shard's samples in tar order, read from its headers."""
    group_by_keys = require("webdataset", "a WebDataset shard").tariterators.group_by_keys
    keys, offsets, sizes, labels = [], [], [], []
    try:
        with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for sample in group_by_keys(_members(path, tar)):
                image = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
                if image is None:
                    kinds = ", ".join(k for k in sample if not k.startswith("__"))
                    raise DataError(f"sample {sample['__key__']} of {path} has no image ({kinds}); expected KEY.jpg")
                keys.append(sample["__key__"])
                offsets.append(sample[image][0])
                sizes.append(sample[image][1])
                labels.append(_label(f, sample, path))
            # tarfile stops quietly at a cut header; a whole archive ends in two zero blocks after its last member
            if os.fstat(f.fileno()).st_size < tar.offset + 2 * tarfile.BLOCKSIZE:
                raise tarfile.ReadError(f"the file ends before the end-of-archive marker, after {len(keys)} samples")
    except (tarfile.TarError, ValueError, EOFError) as e:  # group_by_keys raises ValueError on a repeated member
        raise DataError(f"{path} is not a readable tar shard ({type(e).__name__}: {e})") from None
    return {"keys": keys, "offsets": offsets, "sizes": sizes, "labels": labels}


def cached_index(path: Path) -> dict:
    """The shard's index, built once and kept under CACHE_DIR/shards (keyed by path, size and mtime). Processes
    that start together build each shard once: the first takes a lock, the others read its result."""
    from filelock import FileLock

    stat = path.stat()
    identity = (INDEX_VERSION, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    key = hashlib.sha1(repr(identity).encode()).hexdigest()[:20]
    cache = catalog.CACHE_DIR / "shards" / f"{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        if cache.is_file():
            return json.loads(cache.read_text())
        index = index_shard(path)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, cache)
    return index


def _local_rotation(n: int) -> int:
    """Where this process starts indexing, so local processes that start together index different shards."""
    rank, world = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return rank * n // max(world, 1)


def split_index(layout: Layout, files: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One split's samples over its shards, in shard order: shard number, offset, size, label and key."""
    start = _local_rotation(len(files))
    order = list(range(start, len(files))) + list(range(start))
    indexes = {i: cached_index(layout.root / files[i]) for i in order}
    lengths = _info_lengths(layout.info)
    for i, name in enumerate(files):
        if name in lengths and lengths[name] != len(indexes[i]["keys"]):
            raise DataError(
                f"{layout.root / name} holds {len(indexes[i]['keys'])} samples; {layout.info_file} says {lengths[name]}"
            )
    parts = [indexes[i] for i in range(len(files))]
    return {
        "shard": np.concatenate([np.full(len(p["keys"]), i, dtype=np.int32) for i, p in enumerate(parts)]),
        "offset": np.concatenate([np.asarray(p["offsets"], dtype=np.int64) for p in parts]),
        "size": np.concatenate([np.asarray(p["sizes"], dtype=np.int64) for p in parts]),
        "label": np.concatenate([np.asarray(p["labels"], dtype=np.int64) for p in parts]),
        # Fixed-width bytes: one array, not a million Python strings for every forked worker to touch.
        "key": np.asarray([k.encode() for p in parts for k in p["keys"]], dtype=np.bytes_),
    }


def _info_lengths(info: dict) -> dict[str, int]:
    """Samples per shard as _info.json gives them (timm's `shard_lengths`, parallel to `filenames`)."""
    lengths = {}
    for split in info.get("splits", {}).values():
        lengths.update(zip(split.get("filenames", []), split.get("shard_lengths", []), strict=False))
    return lengths


def shard_classes(layout: Layout, train: np.ndarray, evaluated: np.ndarray) -> list[str]:
    """The class names (`class_names` of _info.json, else the indices), every label checked against them."""
    for split, labels, files in (("train", train, layout.train), (layout.eval_split, evaluated, layout.eval)):
        if not len(labels):
            raise DataError(f"the {split} shards in {layout.root} ({', '.join(files[:3])}) hold no samples")
    names = layout.info.get("class_names")
    classes = [str(c) for c in names] if names else [str(i) for i in range(int(train.max(initial=-1)) + 1)]
    for split, labels in (("train", train), (layout.eval_split, evaluated)):
        bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
        if len(bad):
            raise DataError(
                f"{layout.root}: {split} sample {int(bad[0])} has class {int(labels[bad[0]])}, outside the "
                f"{len(classes)} classes 0..{len(classes) - 1}" + (f" of {layout.info_file}" if names else " of train")
            )
    return classes


def check_shards(layout: Layout) -> None:
    """Index (or load the cached index of) every shard, refusing a malformed one, before any work."""
    shard_classes(layout, split_index(layout, layout.train)["label"], split_index(layout, layout.eval)["label"])


class TarShardImages(EncodedImages):
    """One split of tar shards: sample i is a `pread` of its image bytes from its shard. Each process (and each
    forked worker) keeps its own few shards open; `pread` has no file position, so nothing is shared."""

    OPEN_SHARDS = 16

    def __init__(self, root: Path, files: tuple[str, ...], index: dict, classes, split: str, transform=None):
        super().__init__(index["label"], classes, split, transform)
        self.paths = [str(root / f) for f in files]
        self.shard, self.offset, self.size, self.keys = index["shard"], index["offset"], index["size"], index["key"]
        self._open: OrderedDict[int, int] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": OrderedDict()}  # a spawned worker opens its own

    def __del__(self) -> None:
        for fd in getattr(self, "_open", {}).values():
            os.close(fd)

    def _fd(self, shard: int) -> int:
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        if len(self._open) >= self.OPEN_SHARDS:
            os.close(self._open.popitem(last=False)[1])
        self._open[shard] = os.open(self.paths[shard], os.O_RDONLY)
        return self._open[shard]

    def read(self, index: int) -> bytes:
        return os.pread(self._fd(int(self.shard[index])), int(self.size[index]), int(self.offset[index]))

    def name(self, index: int) -> str:
        return f"{Path(self.paths[self.shard[index]]).name}:{self.keys[index].decode()}"


def shard_splits(layout: Layout, train_tf, eval_tf):
    """(train, eval, number of classes) of a WebDataset layout."""
    train_index, eval_index = split_index(layout, layout.train), split_index(layout, layout.eval)
    classes = shard_classes(layout, train_index["label"], eval_index["label"])
    train = TarShardImages(layout.root, layout.train, train_index, classes, "train", train_tf)
    evaluated = TarShardImages(layout.root, layout.eval, eval_index, classes, "val", eval_tf)
    return train, evaluated, len(classes)
