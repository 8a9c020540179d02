"""Run records -> pandas frames: one row per run, one row per group of runs sharing a setting, the ladder.

Pure pandas: nothing here formats or writes. Runs that share a setting (recipe, model, dataset, budget and the
list of differences from the published setting) form one group, typically the same recipe run with several seeds;
a group's row holds the mean and sample standard deviation over its runs and its verdict against the reported
number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from harness.records import EvalRecord, RunRecord
from harness.report.records import Record, RecordLike, as_records

GROUP_KEYS = ["recipe", "model", "dataset", "budget", "fidelity_key"]
# The data columns of comparison_frame, in the order csv and json write them.
DATA_COLUMNS = [
    "recipe",
    "model",
    "dataset",
    "budget",
    "n",
    "mean",
    "std",
    "best_mean",
    "reported",
    "delta",
    "tolerance",
    "verdict",
    "baseline_gain",
    "source_no",
    "source",
    "unverified",
    "img_per_s",
    "wall_time_s",
    "precision",
    "recall",
    "f1",
    "fidelity",
    "run_dirs",
]
LADDER = ["baseline", "cosine", "mixup_cutmix", "rsb_a3"]
DEFAULT_TOLERANCE = 0.5
# Differences this small are float noise: 77.6 - 78.1 is -0.50000000000001 and still within 0.5.
EPSILON = 1e-9
EVAL_ONLY_MARK = " (evaluation only)"


def _number(value: object) -> float:
    return math.nan if value is None else float(value)


def _or(value: object, default: object) -> object:
    return default if value is None else value


def fidelity_key(record: Record) -> str:
    return "\n".join(record.fidelity)


def _run_only(record: Record) -> RunRecord | None:
    return record if isinstance(record, RunRecord) else None


def runs_frame(records: Iterable[RecordLike]) -> pd.DataFrame:
    """One row per run with the flat columns the aggregation needs."""
    rows = []
    for record in as_records(records):
        ref, run = record.reference, _run_only(record)
        rows.append(
            {
                # Weights evaluated without training (--eval-only) form their own row, marked as such.
                "recipe": record.recipe + (EVAL_ONLY_MARK if isinstance(record, EvalRecord) else ""),
                "model": record.model,
                "dataset": record.dataset,
                "budget": record.budget,
                "fidelity_key": fidelity_key(record),
                "eval_top1": _number(record.eval_top1),
                "best_eval_top1": _number(run and run.best_eval_top1),
                "train_img_per_s": _number(run and run.train_img_per_s),
                "wall_time_s": _number(record.wall_time_s),
                "eval_precision": _number(record.eval_precision),
                "eval_recall": _number(record.eval_recall),
                "eval_f1": _number(record.eval_f1),
                "tolerance": _number(_or(record.tolerance, DEFAULT_TOLERANCE)),
                "reported": _number(ref.top1),
                "source": ref.source or "",
                "unverified": ref.unverified,
                "run_dir": record.run_dir,
            }
        )
    return pd.DataFrame(rows)


def _aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    frame = runs.groupby(GROUP_KEYS, sort=True).agg(
        n=("eval_top1", "count"),
        mean=("eval_top1", "mean"),
        std=("eval_top1", "std"),
        best_mean=("best_eval_top1", "mean"),
        reported=("reported", "first"),
        tolerance=("tolerance", "first"),
        source=("source", "first"),
        unverified=("unverified", "any"),
        img_per_s=("train_img_per_s", "mean"),
        wall_time_s=("wall_time_s", "mean"),
        precision=("eval_precision", "mean"),
        recall=("eval_recall", "mean"),
        f1=("eval_f1", "mean"),
        run_dirs=("run_dir", list),
    )
    frame = frame.reset_index()
    frame["fidelity"] = [key.split("\n") if key else [] for key in frame["fidelity_key"]]
    return frame


def _with_baseline_gain(frame: pd.DataFrame) -> pd.DataFrame:
    """Gain of each group without a published figure over the baseline recipe's group on its dataset and budget."""
    baseline = (
        frame[frame["recipe"] == "baseline"]
        .groupby(["dataset", "budget"], sort=False)["mean"]
        .first()
        .rename("baseline_mean")
        .reset_index()
    )
    frame = frame.merge(baseline, on=["dataset", "budget"], how="left")
    wants_gain = frame["reported"].isna() & (frame["recipe"] != "baseline")
    frame["baseline_gain"] = (frame["mean"] - frame["baseline_mean"]).where(wants_gain)
    return frame.drop(columns="baseline_mean")


def _verdict(row: pd.Series) -> str:
    if pd.isna(row["reported"]):
        return "no published figure"
    if row["fidelity"]:
        return "not comparable"
    delta = abs(row["delta"])
    if delta <= row["tolerance"] + EPSILON:
        return "reproduced"
    if row["n"] >= 2 and delta <= 2 * row["std"] + EPSILON:
        return "within noise"
    return "below" if row["delta"] < 0 else "above"


def _number_sources(frame: pd.DataFrame) -> list[int | None]:
    """Footnote number of each row's source, in order of first citation; None where nothing is reported."""
    sources: list[str] = []
    numbers: list[int | None] = []
    for source, reported in zip(frame["source"], frame["reported"], strict=True):
        if pd.isna(reported):
            numbers.append(None)
            continue
        if source not in sources:
            sources.append(source)
        numbers.append(sources.index(source) + 1)
    return numbers


def comparison_frame(records: Iterable[RecordLike]) -> pd.DataFrame:
    """One row per group of runs sharing a setting, with numeric columns (DATA_COLUMNS).

    mean and std are over the group's runs (std is the sample standard deviation, NaN for one run);
    delta is mean - reported; baseline_gain is set only for groups without a published figure.
    """
    records = as_records(records)
    if not records:
        return pd.DataFrame(columns=DATA_COLUMNS)
    frame = _with_baseline_gain(_aggregate(runs_frame(records)))
    frame["delta"] = frame["mean"] - frame["reported"]
    frame["verdict"] = frame.apply(_verdict, axis=1)
    frame["source_no"] = pd.Series(_number_sources(frame), index=frame.index, dtype=object)
    frame["source"] = frame["source"].where(frame["source_no"].notna(), None)
    return frame[DATA_COLUMNS]


def sources_of(frame: pd.DataFrame) -> list[str]:
    """The cited sources in footnote order."""
    cited = frame.dropna(subset=["source_no"]).drop_duplicates("source_no").sort_values("source_no")
    return list(cited["source"])


def ladder_frames(records: Iterable[RecordLike]) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (dataset, budget) with at least two ladder recipes: step, recipe, n, mean and gain over the step before."""
    runs = runs_frame(records)
    runs = runs[runs["recipe"].isin(LADDER)]
    ladders = {}
    for (dataset, budget), part in runs.groupby(["dataset", "budget"], sort=True):
        steps = part.groupby("recipe")["eval_top1"].agg(n="count", mean="mean").reset_index()
        if len(steps) < 2:
            continue
        steps["step"] = steps["recipe"].map(LADDER.index) + 1
        steps = steps.sort_values("step").reset_index(drop=True)
        steps["gain"] = steps["mean"].diff()
        ladders[(dataset, budget)] = steps[["step", "recipe", "n", "mean", "gain"]]
    return ladders
