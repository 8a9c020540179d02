"""A run's record names every way it differs from the published setting: precision, LR granularity, cooldown,
BatchNorm's batch per device, untrained micro-batches; and it gives the best epoch beside the last."""

import csv

import pytest
import yaml

from harness.run import main
from harness.timm_defaults import TRAIN_PY_DEFAULTS
from tests.conftest import only_summary

pytestmark = pytest.mark.slow


def test_changed_dtype_granularity_and_cooldown_are_each_named(tmp_path):
    argv = ["--recipe", "rsb_a3", "--budget", "smoke", "--workers", "0", "--output", str(tmp_path)]
    argv += ["--set", "amp_dtype='bfloat16'", "--set", "cooldown_epochs=1", "--micro-batch", "8"]
    assert main(argv) == 0
    summary = only_summary(tmp_path)
    fidelity = summary["fidelity"]
    assert "amp_dtype: float16 -> bfloat16" in fidelity and "amp: True -> False" in fidelity  # CPU: no AMP at all
    assert "sched_on_updates: False -> True" in fidelity  # the smoke budget's choice
    assert "cooldown_epochs: 0 -> 1" in fidelity
    assert "BatchNorm batch per device: 256 -> 8" in fidelity  # RSB's per-GPU batch against the micro-batch
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    assert [row["epoch"] for row in rows] == ["1", "2"]  # one epoch and one of cooldown, as timm trains them
    assert float(rows[1]["lr"]) == 1e-6  # the cooldown holds min_lr
    best = max(rows, key=lambda row: float(row["eval_top1"]))
    assert summary["best_eval_top1"] == float(best["eval_top1"]) and summary["best_epoch"] == int(best["epoch"])
    assert summary["eval_top1"] == float(rows[-1]["eval_top1"]) and summary["compared_top1"] == "last epoch"
    assert any("UNVERIFIED" in note and "cooldown" in note for note in summary["unverified_settings"])


def test_micro_batches_an_epoch_leaves_untrained_are_named_only_against_a_run_that_accumulated(tmp_path):
    # 64 smoke images make 4 micro-batches of 16; updates of 3 x 16 train 3 of them
    argv = ["--budget", "smoke", "--workers", "0", "--batch-size", "48", "--micro-batch", "16", "--epochs", "1"]
    untrained = (
        "last 1 of each epoch's 4 micro-batches per process not trained (timm's train.py trains them as one "
        "shorter update)"
    )
    # The publication did not accumulate: timm's drop_last at its full batch leaves those images untrained too.
    assert main(["--recipe", "baseline", *argv, "--output", str(tmp_path / "published")]) == 0
    assert not any("not trained" in line for line in only_summary(tmp_path / "published")["fidelity"])
    # A timm run that accumulated 2 micro-batches per update would have trained the last one as a shorter update.
    args = {**TRAIN_PY_DEFAULTS, "model": "resnet18", "batch_size": 24, "grad_accum_steps": 2, "num_classes": 10}
    args.update(train_interpolation="bicubic", interpolation="bicubic")
    (tmp_path / "args.yaml").write_text(yaml.safe_dump(args))
    assert main(["--recipe", str(tmp_path / "args.yaml"), "--dataset", "digits", *argv, "--output",
                 str(tmp_path / "accumulated")]) == 0  # fmt: skip
    assert untrained in only_summary(tmp_path / "accumulated")["fidelity"]
