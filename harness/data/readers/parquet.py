"""A Hugging Face hub image-classification dataset kept as parquet files, read through the `datasets` library.

Before any work the files are checked with pyarrow, which reads only their footers and label columns: an `image`
column (the hub's {bytes, path}, or bytes, or a path) and an integer `label` column, a ClassLabel's names from the
schema's `huggingface` metadata, every label inside the class list and the same classes in both splits. To train,
`datasets.load_dataset("parquet", data_files=...)` converts the files once into its memory-mapped Arrow cache
(HF_DATASETS_CACHE, about their size again; later runs reuse it), where any row is read by index: a split is then
as random-access as a class folder, and the sampler, budgets, process split and resume work as they do there.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import numpy as np

from harness.data.catalog import DataError
from harness.data.layouts import Layout, require
from harness.data.readers.encoded import EncodedImages

IMAGE, LABEL = "image", "label"
# Converting many files in parallel; a handful convert faster in one process than a pool starts.
PARALLEL_FROM_FILES = 16


def _split_files(layout: Layout) -> dict[str, list[Path]]:
    return {"train": [layout.root / f for f in layout.train], layout.eval_split: [layout.root / f for f in layout.eval]}


def _holds_images(kind) -> bool:
    """The hub's {bytes, path} struct, bytes, or a path."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return kind.get_field_index("bytes") >= 0
    kinds = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_string, pa.types.is_large_string)
    return any(check(kind) for check in kinds)


def _schema(path: Path):
    pq = require("pyarrow.parquet", "a parquet dataset")
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as e:  # what pyarrow raises for a file that is not parquet
        raise DataError(f"{path} is not a readable parquet file ({type(e).__name__}: {e})") from None
    missing = [c for c in (IMAGE, LABEL) if c not in schema.names]
    if missing:
        raise DataError(
            f"{path} has no {' or '.join(missing)} column (it has {', '.join(schema.names)}); expected "
            f"{IMAGE} (image bytes or a path) and {LABEL} (a class index)"
        )
    return schema


def _class_names(files: list[Path]) -> list[str] | None:
    """The ClassLabel names of a split's `label` column (from the `huggingface` schema metadata), None for plain
    integers; a file without `image` or `label`, or whose columns hold something else, is refused."""
    features = require("datasets", "a parquet dataset").Features
    schemas = [_schema(path) for path in files]
    first, path = schemas[0], files[0]
    if not _holds_images(first.field(IMAGE).type):
        raise DataError(
            f"{path}: column {IMAGE} holds {first.field(IMAGE).type}; expected {{bytes, path}}, bytes or a path"
        )
    label = features.from_arrow_schema(first)[LABEL]
    names = list(label.names) if hasattr(label, "names") else None
    kind = str(first.field(LABEL).type)
    if names is None and not kind.startswith(("int", "uint")):
        raise DataError(f"{path}: column {LABEL} holds {kind}; expected class indices (integers)")
    return names


def _labels(path: Path, split: str) -> np.ndarray:
    """A file's label column alone (parquet reads one column without the images)."""
    import pyarrow.parquet as pq

    labels = pq.read_table(path, columns=[LABEL]).column(LABEL)
    if labels.null_count:
        raise DataError(f"{path}: {labels.null_count} {split} rows have no {LABEL}")
    return labels.to_numpy()


def _check_labels(files: list[Path], split: str, count: int, whose: str) -> None:
    for path in files:
        values = _labels(path, split)
        bad = np.flatnonzero((values < 0) | (values >= count))
        if len(bad):
            raise DataError(
                f"{path}: {split} row {int(bad[0])} has {LABEL} {int(values[bad[0]])}, outside the {count} classes "
                f"0..{count - 1} of {whose}"
            )


def parquet_classes(layout: Layout) -> list[str]:
    """The class names of a parquet layout (the indices when labels are plain integers), after checking every file."""
    files = _split_files(layout)
    names = {split: _class_names(paths) for split, paths in files.items()}
    train_names, eval_names = names["train"], names[layout.eval_split]
    if train_names is not None and eval_names is not None and train_names != eval_names:
        raise DataError(
            f"{layout.root}: the train files have {len(train_names)} classes, the {layout.eval_split} files "
            f"{len(eval_names)}{'' if len(train_names) != len(eval_names) else ' with other names'}; both splits "
            "must share one class list"
        )
    classes = train_names or eval_names
    if classes is None:
        top = max(int(_labels(path, "train").max(initial=-1)) for path in files["train"])
        classes = [str(i) for i in range(top + 1)]
    whose = "its ClassLabel" if (train_names or eval_names) else "the train labels"
    for split, paths in files.items():
        _check_labels(paths, split, len(classes), whose)
    return classes


class ParquetImages(EncodedImages):
    """One split from `datasets`' Arrow cache: sample i is row i's image bytes (or the file its path names)."""

    def __init__(self, table, layout: Layout, files: tuple[str, ...], classes: list[str], split: str, transform=None):
        import datasets
        import pyarrow.parquet as pq

        super().__init__(table.data.column(LABEL).to_numpy(), classes, split, transform)
        if isinstance(table.features[IMAGE], datasets.Image):
            table = table.cast_column(IMAGE, datasets.Image(decode=False))  # the bytes, decoded here
        self.images = table.select_columns([IMAGE])
        self.root, self.files = layout.root, files
        rows = [pq.ParquetFile(layout.root / f).metadata.num_rows for f in files]
        self.starts = np.cumsum([0, *rows]).tolist()  # first row of each file, to name a row by file and position

    def _file(self, index: int) -> int:
        return bisect.bisect_right(self.starts, index) - 1

    def read(self, index: int) -> bytes:
        value = self.images[index][IMAGE]
        data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (None, value)
        if isinstance(path, bytes):
            data, path = path, None
        if data:
            return data
        if not path:
            raise OSError("the row has neither image bytes nor a path")
        path = Path(path)
        return (path if path.is_absolute() else (self.root / self.files[self._file(index)]).parent / path).read_bytes()

    def name(self, index: int) -> str:
        file = self._file(index)
        return f"{self.files[file]}:{index - self.starts[file]}"


def parquet_splits(layout: Layout, train_tf, eval_tf):
    """(train, eval, number of classes) of a parquet layout, through `datasets`' Arrow cache."""
    classes = parquet_classes(layout)
    datasets = require("datasets", "a parquet dataset")
    datasets.disable_progress_bars()
    files = {split: [str(p) for p in paths] for split, paths in _split_files(layout).items()}
    parallel = min(os.cpu_count() or 1, len(files["train"])) if len(files["train"]) >= PARALLEL_FROM_FILES else None
    try:
        loaded = datasets.load_dataset("parquet", data_files=files, num_proc=parallel)
    except Exception as e:  # noqa: BLE001 - datasets wraps what pyarrow raises for a damaged file
        raise DataError(f"{layout.root}: the parquet files cannot be read ({type(e).__name__}: {e})") from None
    train = ParquetImages(loaded["train"], layout, layout.train, classes, "train", train_tf)
    evaluated = ParquetImages(loaded[layout.eval_split], layout, layout.eval, classes, "val", eval_tf)
    return train, evaluated, len(classes)
