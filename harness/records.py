"""The typed run records: summary.json of a training run (RunRecord) or of `--eval-only` (EvalRecord), and
estimate.json (Estimate). Each is flat JSON; the shared part (what ran, on what, with which batches and
libraries) is Provenance, which the three subclass.

    python -m harness.records --schema run|eval|estimate   # the JSON Schema of one record

`to_dict()` is the JSON-ready dict of the fields a record was given, `to_json()` the file's text (indented, one
trailing newline); `from_json(text_or_dict)` reads either back. A field absent from a record (an old record, or
a fact this kind of record does not hold) stays absent when it is written again, and reads as its default.
Old names are still read: `differences` (estimate.json before) as `fidelity`, `notes` as `notices`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from typing_extensions import Self

MixedPrecision = Literal["no", "fp16", "bf16", "fp8"]
DataPath = Literal["memory", "workers"]
Where = Literal["device", "workers"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    def to_dict(self) -> dict:
        """The record as JSON-ready data: the fields it was given (set or read), in declaration order."""
        return self.model_dump(mode="json", exclude_unset=True)

    def to_json(self) -> str:
        """The record's file text, as json.dumps writes it (indent 2, ASCII, one trailing newline)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, object]) -> Self:
        """A record from its file text or a dict; old field names are accepted. Raises pydantic's
        ValidationError (a ValueError) on a record of another shape."""
        if isinstance(data, Mapping):
            return cls.model_validate(dict(data))
        return cls.model_validate_json(data)

    def with_fields(self, **fields: object) -> Self:
        """A copy with `fields` set (validated, as read from JSON)."""
        return type(self).model_validate({**self.model_dump(exclude_unset=True), **fields})


class Versions(_Record):
    python: str = Field(description="Python's version")
    torch: str = Field(description="PyTorch's version")
    torchvision: str = Field(description="torchvision's version")
    timm: str = Field(description="timm's version")
    accelerate: str = Field(description="accelerate's version")
    platform: str = Field(description="the operating system, as Python's platform.platform()")
    git_commit: str | None = Field(description="the harness's commit, `-dirty` when the tree had changes; null "
                                   "outside a git checkout")  # fmt: skip


class Provenance(_Record):
    """What every record holds: what ran, on how many processes, with which batches, precision, device and
    libraries, and how it differs from the published setting."""

    recipe: str = Field(description="the recipe's name")
    model: str = Field(description="the timm model")
    dataset: str = Field(description="the dataset the run read")
    budget: str = Field(description="the budget (`smoke`, `proxy`, `full`)")
    world_size: int | None = Field(None, description="processes (of the last attempt for a run)")
    global_batch_size: int | None = Field(None, description="images per optimizer update over all processes")
    per_device_batch_size: int | None = Field(
        None, description="each process's share of the global batch (summary.json)"
    )
    micro_batch_size: int | None = Field(
        None, description="one forward/backward's batch on a process (a run and an estimate)"
    )
    grad_accum_steps: int | None = Field(None, description="micro-batches per optimizer update (a run and an estimate)")
    mixed_precision: MixedPrecision | None = Field(None, description="accelerate's setting: `no`, `fp16` or `bf16`")
    device: str | None = Field(None, description="the device, as torch names it (`cpu`, `cuda:0`)")
    cpu_threads_per_process: int | None = Field(None, description="the CPU threads each process used")
    data_path: DataPath | None = Field(None, description="`memory` or `workers` ([data paths](../guide/data-paths.md))")
    fidelity: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("fidelity", "differences"),
        description='every way the run differs from the published setting; any entry makes the row "not '
        "comparable\" (read from `differences` too, estimate.json's earlier name)",
    )
    notices: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("notices", "notes"),
        description="what the run announced: substitutions, shortened warmup, resampling notes, ... (read from "
        "`notes` too)",
    )
    versions: Versions | None = Field(None, description="the library versions (below)")


class Reference(_Record):
    source: str = Field("", description="where the publication reports it")
    dataset: str | None = Field(None, description="the dataset of the reported number")
    top1: float | None = Field(None, description="the reported top-1, percent; null where none is published")
    top5: float | None = Field(None, description="the reported top-5, percent")
    others: list[tuple[str, float]] = Field(default_factory=list, description="other reported metrics, as "
                                            "[name, value] pairs")  # fmt: skip
    unverified: bool = Field(False, description="whether the number is UNVERIFIED against a primary source")
    note: str = Field("", description="a note on the number")
    per_device_batch: int | None = Field(None, description="the publication's per-device batch, where stated")
    grad_accum_steps: int = Field(1, description="the publication's micro-batches per update")


class FilesSummary(_Record):
    count: int = Field(description="the split's files")
    first: str = Field(description="the first file")
    last: str = Field(description="the last file")


class DataSource(_Record):
    format: Literal["folder", "parquet", "wds", "bundled", "idx", "cifar"] = Field(description="how it was read")
    root: str | None = Field(None, description="the folder read")
    hub: str | None = Field(None, description="the hub repository it was downloaded from")
    files: dict[str, list[str] | FilesSummary] | None = Field(
        None, description="each split's files (their count, first and last when there are more than eight)"
    )
    eval_split: str | None = Field(None, description="the split evaluated")
    samples: dict[str, int] | None = Field(None, description="both splits' sizes (`train`, `eval`)")


class Weights(_Record):
    file: str | None = Field(description="the weights file, or null for hub weights")
    sha256: str | None = Field(description="the file's SHA-256")
    loaded: int = Field(description="tensors loaded")
    skipped: int | None = Field(description="tensors of the file not used")
    fresh: int = Field(description="tensors of the model left at their initialisation")
    hub: str | None = Field(None, description="the hub tag timm loaded (hub weights only)")


class LrRescale(_Record):
    rule: str = Field(description="the scaling rule (`linear`, `sqrt`)")
    published_lr: float = Field(description="the published peak LR")
    published_batch_size: int = Field(description="the published global batch")
    lr: float = Field(description="the LR used")
    batch_size: int = Field(description="the global batch used")


class Attempt(_Record):
    started_at: str = Field(description="UTC start")
    ended_at: str | None = Field(description="UTC end; null while running or after a kill")
    processes: int = Field(description="processes")
    nodes: int = Field(description="distinct hosts")
    host: str = Field(description="the main process's host")
    hosts: list[str] = Field(description="every host")
    resumed_from: str | None = Field(description="the checkpoint resumed from")
    resumed_at_update: int | None = Field(description="the update it resumed at")
    stopped: str | None = Field(description="`complete`, `signal NAME`, `error: ...`, or null")
    exit_status: int | None = Field(description="the exit status")
    checkpoint: str | None = Field(description="the last complete checkpoint")
    trackers: dict[str, dict[str, str]] = Field(description="what a later attempt needs to continue the trackers")


class Summary(Provenance):
    """summary.json, shared by a training run and an evaluation: the evaluation and what it is compared with."""

    status: Literal["complete"] = Field("complete", description="`complete`")
    source: DataSource | None = Field(None, description="where the data came from (below)")
    eval_top1: float = Field(description="evaluation top-1, percent; the number compared with the paper")
    eval_top5: float | None = Field(None, description="evaluation top-5, percent")
    eval_loss: float | None = Field(None, description="evaluation loss")
    eval_samples: int | None = Field(None, description="images evaluated, each exactly once")
    eval_precision: float | None = Field(None, description="macro precision over the classes, percent")
    eval_recall: float | None = Field(None, description="macro recall over the classes, percent")
    eval_f1: float | None = Field(None, description="macro F1 over the classes, percent")
    per_class_accuracy: list[float] | None = Field(
        None, description="accuracy per class, percent (torchmetrics, over predictions gathered across processes)"
    )
    class_names: list[str] | None = Field(None, description="the classes' names, where the dataset has them")
    confusion_matrix: list[list[int]] | None = Field(None, description="rows: true class; columns: predicted")
    wall_time_s: float | None = Field(None, description="wall time in seconds (a run's over all attempts)")
    worker_output: Literal["uint8"] | None = Field(None, description="`uint8` on the per-image path")
    channels_last: bool | None = Field(None, description="memory layout (always channels_last)")
    peak_rss_mb: float | None = Field(None, description="the main process's peak resident memory, MiB")
    seed: int | None = Field(None, description="the run's seed; each process used `seed + rank`")
    reference: Reference = Field(description="the published number (below)")
    tolerance: float | None = Field(None, description="how far from the reported top-1 still counts as reproduced")
    weights: Weights | None = Field(None, description="the weights the run started from (below); null from random")
    plots: dict[str, str] = Field(default_factory=dict, description="the plot files, by name (`curves`, "
                                  "`confusion`)")  # fmt: skip
    started_at: str | None = Field(None, description="UTC start, ISO 8601")
    finished_at: str | None = Field(None, description="UTC end, ISO 8601")
    _run_dir: str = PrivateAttr(".")

    @property
    def run_dir(self) -> str:
        """The record's run directory relative to the folder it was loaded from (not part of the file)."""
        return self._run_dir

    def located(self, run_dir: str) -> Self:
        """A copy whose `run_dir` is `run_dir`."""
        copy = self.model_copy()
        copy._run_dir = run_dir
        return copy


class RunRecord(Summary):
    """summary.json of a finished training run."""

    epochs_run: int | None = Field(None, description="epochs trained")
    stopped_early_at_epoch: int | None = Field(None, description="the epoch early stopping ended the run at")
    train_top1: float | None = Field(None, description="the last epoch's training accuracy (before Mixup/CutMix)")
    train_loss: float | None = Field(None, description="the last epoch's training loss")
    compared_top1: Literal["last epoch"] | None = Field(None, description="which top-1 the report compares")
    best_eval_top1: float | None = Field(None, description="the best epoch's top-1, as timm's train.py reports")
    best_of: Literal["ema", "model"] | None = Field(
        None, description="`ema` where the EMA is evaluated (its top-1 is the one tracked), else `model`"
    )
    best_epoch: int | None = Field(None, description="the first epoch that reached the best top-1")
    train_samples: int | None = Field(None, description="training images per epoch")
    train_img_per_s: float | None = Field(None, description="the median training img/s of the epochs after the first")
    augment_on: Where | None = Field(None, description="where the augmentation policy ran; null without one")
    decode_on: Where | None = Field(None, description="where training JPEGs were decoded; null: not from files")
    decode_fallbacks: dict[str, dict[str, int]] | None = Field(
        None, description="training images decoded in the workers instead of on the device, per split and reason"
    )
    compiled: bool | None = Field(None, description="whether `torch.compile` ran")
    unverified_settings: list[str] = Field(
        default_factory=list, description="the published recipe's notes that say UNVERIFIED"
    )
    lr_rescale: LrRescale | None = Field(None, description="null, or how the LR was rescaled (below)")
    resumed: bool | None = Field(None, description="whether this attempt resumed from a checkpoint")
    pretrained_file: str | None = Field(None, description="the `--pretrained-file` given, or null")
    skipped_images: dict[str, list[str]] = Field(default_factory=dict, description="undecodable images skipped, "
                                                 "per split")  # fmt: skip
    nodes: int | None = Field(None, description="distinct hosts of the last attempt")
    world_sizes: list[int] = Field(default_factory=list, description="processes of each attempt")
    attempts: list[Attempt] = Field(default_factory=list, description="the list in `attempts.json` (below)")
    saved_weights: str | None = Field(None, description="the `--save-weights` file, where given")


class EvalRecord(Summary):
    """summary.json of `--eval-only`: weights evaluated with the recipe's evaluation settings."""

    eval_only: Literal[True] = Field(description="`true`: the record of an `--eval-only` run")


class Estimate(Provenance):
    """estimate.json of `--estimate`: a recipe timed on this machine and its schedule projected."""

    synthetic_data: bool = Field(description="whether random images stood in for an absent dataset")
    img_per_s: float = Field(description="projected training images per second")
    epoch_s: float = Field(description="one epoch, training and every evaluation, seconds")
    total_s: float = Field(description="the whole schedule, seconds")
    device_hours: float = Field(description="the whole schedule times the processes, hours")
    train_epoch_s: float = Field(description="one epoch's training, seconds")
    eval_s: float = Field(description="one epoch's evaluations, seconds")
    updates_per_epoch: int = Field(description="optimizer updates per epoch")
    epochs: int = Field(description="epochs in the schedule")
    update_s: float = Field(description="seconds per optimizer update")
    data_wait_s: float = Field(description="of which waiting for the loader")
    compute_s: float = Field(description="of which computing")
    data_wait_share: float = Field(description="the share of an update spent waiting for data")
    eval_img_per_s: float = Field(description="evaluation images per second on one process")
    startup_s: float | None = Field(
        None, description="process start to the first update, seconds; null without /proc (absent in old records)"
    )
    peak_memory_mb_per_device: float = Field(description="peak memory per device, MiB (resident memory on a CPU)")
    warmup_updates: int = Field(description="untimed updates before the timed ones")
    timed_updates: int = Field(description="updates timed")
    created_at: str = Field(description="UTC time written, ISO 8601")


RECORDS: dict[str, type[Provenance]] = {"run": RunRecord, "eval": EvalRecord, "estimate": Estimate}


def read_summary(data: str | bytes | Mapping[str, object]) -> RunRecord | EvalRecord:
    """A summary.json as RunRecord, or EvalRecord where it says `eval_only`. A dict's `_run_dir` (the report's
    key for where a record was found) becomes the record's `run_dir`."""
    raw = dict(data) if isinstance(data, Mapping) else json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError(f"a summary.json holds a JSON object, not {type(raw).__name__}")
    run_dir = raw.pop("_run_dir", ".")
    kind = EvalRecord if raw.get("eval_only") else RunRecord
    return kind.from_json(raw).located(run_dir)


def record_schemas() -> dict[str, dict]:
    """The JSON Schema of each record, by kind (`run`, `eval`, `estimate`), as from_json reads it."""
    return {kind: model.model_json_schema() for kind, model in RECORDS.items()}


def missing_fields(error: ValidationError) -> list[str]:
    """The top-level fields a ValidationError says are missing."""
    return [str(e["loc"][0]) for e in error.errors() if e["type"] == "missing" and len(e["loc"]) == 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.records", description=__doc__.splitlines()[0])
    parser.add_argument("--schema", choices=sorted(RECORDS), required=True, help="print this record's JSON Schema")
    args = parser.parse_args(argv)
    print(json.dumps(record_schemas()[args.schema], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
