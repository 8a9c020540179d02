"""Which way a folder holds an image-classification dataset, and each split's files.

Three layouts, told apart by their files: class folders (`train/CLASS/*.jpg`, `val/CLASS/*.jpg`, torchvision's
ImageFolder), parquet files as the Hugging Face hub keeps them (`data/train-00000-of-00294.parquet`, split by file
name the way the `datasets` library splits a folder), and WebDataset tar shards as timm names them
(`imagenet1k-train-0000.tar`, `imagenet1k-validation-00.tar`, with `_info.json`; or `train/0000.tar` in a folder
named by its split). A `hfds/ORG/NAME` dataset is the
snapshot of that hub repository in the local Hugging Face cache, read offline in whichever of the last two layouts
it holds.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.data.catalog import DataError, dataset_info, hub_repo
from harness.data.readers.folder import folder_root

EXTRAS = {"datasets": "hf", "huggingface_hub": "hf", "pyarrow": "hf", "webdataset": "wds"}
# The split a shard belongs to, from its name: `NAME-train-0000.tar`, `NAME-validation-00.tar`, `val-3.tar`.
_SHARD_SPLITS = ("train", "validation", "val", "test")
_SHARD_SPLIT = re.compile(rf"(?:^|[-_.])({'|'.join(_SHARD_SPLITS)})[-_.]\d+\.tar$")
_SPLIT_NAMES = {"val": "validation"}
# timm's WebDataset layout: split sizes and shard lists, under the names its reader_wds.py tries (json first).
INFO_FILES = ("_info.json", "info.json", "_info.yaml", "info.yaml")
# A URL or webdataset's `pipe:` command (a Path keeps one slash of "s3://", so one is enough to tell).
_REMOTE = re.compile(r"^(pipe:|[A-Za-z][A-Za-z0-9+.-]*:/)")


@dataclass(frozen=True)
class Layout:
    """A dataset on disk: its format ("folder", "parquet" or "wds"), root, each split's files (relative to the
    root, in reading order) and the split evaluated ("val" for folders; "validation", or "test" without one)."""

    format: str
    root: Path
    train: tuple[str, ...]
    eval: tuple[str, ...]
    eval_split: str
    hub: str | None = None  # ORG/NAME when read from the hub cache
    info: dict = field(default_factory=dict, compare=False)  # _info.json of a WebDataset layout, if any
    info_file: str = INFO_FILES[0]  # the name it was read from


def require(module: str, what: str):
    """Import an optional library, or refuse naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise DataError(f"{what} needs the {top} library: pip install -e '.[{EXTRAS[top]}]'") from None


def refuse_remote(data_dir: Path | None) -> None:
    """Shards on object storage or behind a command are not read: the harness reads files map-style."""
    if data_dir is not None and _REMOTE.match(str(data_dir)):
        raise DataError(
            f"--data-dir {data_dir}: remote shards are not streamed; the harness reads local (or mounted) files "
            "map-style, for each training image once per epoch and an exact resume: copy the shards to a folder"
        )


def detect_format(root: Path) -> str:
    """The format of the files in `root`: `wds` for tar shards, `parquet` for parquet files there or one folder
    down (data/), else `folder`. Only two levels are listed, so a tree of a million class-folder images is never
    walked."""
    if any(root.glob("*.tar")) or any(root.glob("*/*.tar")):
        return "wds"
    if any(root.glob("*.parquet")) or any(root.glob("*/*.parquet")):
        return "parquet"
    return "folder"


_FILES = {"parquet": "parquet files (train-*.parquet)", "wds": "WebDataset shards (*-train-NNNN.tar)"}


def find_layout(name: str, data_dir: Path | None) -> Layout:
    """The layout of dataset `name` (imagenet, folder, hfds, wds or hfds/ORG/NAME), or DataError saying what was
    expected where."""
    repo = hub_repo(name)
    if repo is not None:
        root = hub_snapshot(repo, data_dir)
        return _layout(name, root, detect_format(root), repo)
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir: {dataset_info(name).how_to_get}")
    wanted = {"hfds": "parquet", "wds": "wds"}.get(name)
    found = detect_format(data_dir)
    if wanted is not None and found != wanted:
        raise DataError(f"--data-dir {data_dir} holds no {_FILES[wanted]}; {dataset_info(name).how_to_get}")
    return _layout(name, data_dir, found, None)


def _layout(name: str, root: Path, fmt: str, repo: str | None) -> Layout:
    if fmt == "parquet":
        return parquet_layout(root, repo)
    if fmt == "wds":
        require("webdataset", "a WebDataset shard")
        return shard_layout(root, repo)
    if repo is not None:
        raise DataError(f"the cached snapshot of {repo} ({root}) holds no parquet files or WebDataset shards")
    folder_root(root, name)
    return Layout("folder", root, ("train",), ("val",), "val")


def hub_snapshot(repo: str, cache_dir: Path | None) -> Path:
    """The folder of dataset repository `repo` in the local Hugging Face cache (HF_HUB_CACHE, or `cache_dir`
    when given), found without the network."""
    hub = require("huggingface_hub", f"--dataset hfds/{repo}")
    from huggingface_hub import constants

    try:
        folder = hub.snapshot_download(
            repo, repo_type="dataset", local_files_only=True, cache_dir=str(cache_dir) if cache_dir else None
        )
    except Exception as e:  # noqa: BLE001 - the hub library raises several types for a repository not cached
        where = cache_dir or constants.HF_HUB_CACHE
        raise DataError(
            f"dataset repository {repo} is not in the Hugging Face cache {where} ({type(e).__name__}); "
            f"download it first: huggingface-cli download {repo} --repo-type dataset"
        ) from None
    return Path(folder)


def _eval_split(found: dict[str, list[str]], root: Path, what: str) -> tuple[str, list[str]]:
    """(name, files) of the split to evaluate: validation, or test where there is none."""
    if not found.get("train"):
        raise DataError(f"{root} holds no training {what} (train-*); found splits: {', '.join(found) or 'none'}")
    for split in ("validation", "test"):
        if found.get(split):
            return split, found[split]
    raise DataError(f"{root} holds no validation-* (or val-*, test-*) {what} to evaluate on")


def parquet_layout(root: Path, repo: str | None = None) -> Layout:
    """Parquet files split by name as `datasets.load_dataset(root)` would split them (data/train-00000-of-00002,
    train-0.parquet, train/0000.parquet, ...)."""
    data_files = require("datasets", "a parquet dataset").data_files
    try:
        patterns = data_files.get_data_patterns(str(root))
        resolved = data_files.DataFilesDict.from_patterns(patterns, base_path=str(root))
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"{root}: no parquet files split into train and validation ({e})") from None
    found = {
        str(split): sorted(str(Path(f).relative_to(root)) for f in files if f.endswith(".parquet"))
        for split, files in resolved.items()
    }
    split, eval_files = _eval_split(found, root, "parquet files")
    return Layout("parquet", root, tuple(found["train"]), tuple(eval_files), split, repo)


def shard_layout(root: Path, repo: str | None = None) -> Layout:
    """Tar shards listed by timm's `_info.json` when present, else found by name (`*-train-NNNN.tar`) or by the
    split folder they are in (`train/*.tar`, `validation/*.tar`, `val/*.tar`), in the root or one folder down."""
    info_file, info = _read_info(root)
    if info:
        found = {_SPLIT_NAMES.get(s, s): list(v.get("filenames", [])) for s, v in info.get("splits", {}).items()}
        missing = [f for files in found.values() for f in files if not (root / f).is_file()]
        if missing:
            raise DataError(f"{root / info_file} lists {missing[0]}, which is not in {root}")
    else:
        found = {}
        for path in sorted(root.glob("*.tar")) + sorted(root.glob("*/*.tar")):
            split = _shard_split(path.relative_to(root))
            if split:
                found.setdefault(split, []).append(path.relative_to(root).as_posix())
    split, eval_files = _eval_split(found, root, "shards")
    return Layout("wds", root, tuple(found["train"]), tuple(eval_files), split, repo, info, info_file)


def _shard_split(relative: Path) -> str | None:
    """A shard's split from its name, else from the folder it is in."""
    match = _SHARD_SPLIT.search(relative.name)
    if match:
        split = match[1]
    elif len(relative.parts) == 2 and relative.parts[0] in _SHARD_SPLITS:
        split = relative.parts[0]
    else:
        return None
    return _SPLIT_NAMES.get(split, split)


def _read_info(root: Path) -> tuple[str, dict]:
    """(file name, contents) of the first of INFO_FILES in `root`; (INFO_FILES[0], {}) without one."""
    path = next((root / name for name in INFO_FILES if (root / name).is_file()), None)
    if path is None:
        return INFO_FILES[0], {}
    try:
        info = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (ValueError, yaml.YAMLError) as e:
        raise DataError(f"{path} is not valid {path.suffix[1:].upper()} ({str(e).splitlines()[0]})") from None
    if not isinstance(info, dict) or not isinstance(info.get("splits"), dict):
        raise DataError(f"{path} has no 'splits' mapping; expected timm's layout: splits.train.filenames, ...")
    return path.name, info


def files_record(files: tuple[str, ...], shown: int = 8) -> list[str] | dict:
    """A split's files for the run record: all of them when few, else their count, first and last."""
    if len(files) <= shown:
        return list(files)
    return {"count": len(files), "first": files[0], "last": files[-1]}
