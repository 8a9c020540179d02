"""--compile on a GPU (inductor): a run with an EMA, fp16 with its GradScaler and accumulation, checkpointed mid-epoch
and resumed without --compile. The checkpoints hold the bare model's keys (the EMA's too), so either way loads."""

import csv
import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from harness.checkpoint import EMA_FILE, PROGRESS, complete_checkpoints
from tests.conftest import only_summary, run_cli

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# cnn_fmnist has BatchNorm and no augmentation; without dropout nothing in the model draws random numbers, so the
# compiled and the eager run differ only by their kernels' rounding. Smoke: 64 images, global batch 16 in micro-batches
# of 4 (4 micro-steps an update), 4 updates an epoch, a checkpoint every 2 updates.
RUN = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--epochs", "3", "--workers", "0"]
RUN += ["--seed", "1", "--micro-batch", "4", "--save-every", "2", "--keep", "10"]
RUN += ["--set", "model_ema=True", "--set", "model_ema_decay=0.9", "--set", "amp=True", "--set", "drop_rate=0.0"]
LIMIT_S = 540


def rows(run) -> list[dict]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def assert_bare_keys(checkpoint) -> None:
    model = set(load_file(str(checkpoint / "model.safetensors")))
    ema = set(load_file(str(checkpoint / EMA_FILE)))
    assert not any("_orig_mod." in key for key in model | ema), checkpoint
    assert ema == {f"module.{key}" for key in model}, checkpoint  # ModelEmaV3 holds the model as `module`


def test_a_compiled_run_with_ema_and_accumulation_resumes_without_compile(tmp_path):
    out = tmp_path / "runs"
    compiled = run_cli(*RUN, "--compile", "--output", str(out), timeout=LIMIT_S)
    assert compiled.returncode == 0, compiled.stdout[-2000:] + compiled.stderr[-4000:]
    first = only_summary(out)
    assert first["compiled"] is True and first["device"].startswith("cuda")
    assert (first["grad_accum_steps"], first["micro_batch_size"], first["mixed_precision"]) == (4, 4, "fp16")
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    uninterrupted = rows(run)
    checkpoints = complete_checkpoints(run)
    assert [json.loads((c / PROGRESS).read_text())["num_updates"] for c in checkpoints] == [2, 4, 6, 8, 10, 12]
    for checkpoint in checkpoints:
        assert_bare_keys(checkpoint)

    for later in checkpoints[3:]:  # as if stopped after update 6, half-way through epoch 2
        shutil.rmtree(later)
    (run / "summary.json").unlink()
    weights = tmp_path / "resumed.safetensors"
    resumed = run_cli("--resume", str(run), "--no-compile", "--save-weights", str(weights), timeout=LIMIT_S)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    record = only_summary(out)
    assert record["compiled"] is False and record["resumed"] is True and record["epochs_run"] == 3
    assert record["attempts"][1]["resumed_at_update"] == 6  # from the compiled run's checkpoint
    final = complete_checkpoints(run)[-1]
    assert json.loads((final / PROGRESS).read_text())["num_updates"] == 12  # none repeated or lost
    assert_bare_keys(final)

    again = rows(run)
    assert again[0] == uninterrupted[0]  # epoch 1 as the compiled run trained it, carried by the checkpoint
    for eager, compiled_row in zip(again[1:], uninterrupted[1:], strict=True):
        for key in ("train_loss", "eval_loss"):  # the same training, to the rounding of other kernels
            assert float(eager[key]) == pytest.approx(float(compiled_row[key]), rel=5e-2), (key, eager["epoch"])
        assert math.isfinite(float(eager["eval_top1_ema"]))
    saved = load_file(str(weights))
    assert not any("_orig_mod." in key or key.startswith("module.") for key in saved)
    assert all(torch.isfinite(tensor.float()).all() for tensor in saved.values())
