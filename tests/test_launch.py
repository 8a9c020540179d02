"""The real command line: `accelerate launch` of run.py at the smoke budget, and the report over its record."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from harness.report import load_records, render_markdown
from harness.run import main
from recipes import list_recipes
from tests.conftest import ROOT, accelerate_launch, only_summary

pytestmark = pytest.mark.slow

SUMMARY_KEYS = {
    "recipe", "model", "dataset", "budget", "epochs_run", "eval_top1", "eval_top5", "eval_loss", "eval_samples",
    "train_img_per_s", "wall_time_s", "world_size", "global_batch_size", "seed", "reference", "fidelity", "versions",
}  # fmt: skip


def test_accelerate_launch_rsb_a3_smoke_writes_the_record_and_report(tmp_path):
    out = tmp_path / "runs"
    result = accelerate_launch(1, "--recipe", "rsb_a3", "--budget", "smoke", "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "running on digits at the smoke budget" in result.stdout
    summary = only_summary(out)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["status"] == "complete" and summary["dataset"] == "digits" and summary["budget"] == "smoke"
    assert summary["eval_samples"] == 100 and summary["world_size"] == 1 and summary["global_batch_size"] == 16
    assert summary["reference"]["top1"] == 78.1
    assert "dataset: imagenet -> digits" in summary["fidelity"]
    assert "epochs: 100 -> 1" in summary["fidelity"]
    assert summary["lr_rescale"]["rule"] == "sqrt"
    assert summary["versions"]["torch"] and summary["versions"]["timm"]
    assert summary["cpu_threads_per_process"] == len(os.sched_getaffinity(0))  # not accelerate's default of 1
    run_dir = next(out.iterdir())
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"]
    assert set(rows[0]) >= {"epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr", "epoch_time_s",
                            "train_img_per_s"}  # fmt: skip
    assert json.loads((run_dir / "recipe.json").read_text())["dataset"] == "digits"
    assert "| rsb_a3 " in (run_dir / "report.md").read_text()

    report = subprocess.run([sys.executable, "-m", "harness.report", str(out), "--out", str(tmp_path / "r.md")],
                            capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert report.returncode == 0, report.stderr
    row = next(line for line in (tmp_path / "r.md").read_text().splitlines() if line.startswith("| rsb_a3"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["rsb_a3", "resnet50", "digits", "smoke"]
    assert cells[4].startswith("78.10 [1]") and cells[5] == f"{summary['eval_top1']:.2f} (1)"
    assert cells[6] == f"{summary['best_eval_top1']:.2f}"  # one epoch: the best is the last
    assert cells[7] == "—" and cells[8] == "not comparable"


def test_two_process_launch_with_repeated_augmentation_counts_each_eval_image_once(tmp_path):
    result = accelerate_launch(2, "--recipe", "rsb_a1", "--budget", "smoke", "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = only_summary(tmp_path)
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 16
    assert summary["per_device_batch_size"] == 8
    assert summary["eval_samples"] == 100
    assert sum(map(sum, summary["confusion_matrix"])) == 100
    assert not any(line.startswith("aug_repeats") for line in summary["fidelity"])

    # The same final weights evaluated by one process give the same metrics.
    from accelerate import Accelerator
    from safetensors.torch import load_file

    from harness.build import build_model
    from harness.checkpoint import complete_checkpoints
    from harness.data import build_datasets, first
    from harness.data.loader import worker_eval_loader
    from harness.data.transforms import build_transforms
    from harness.engine import evaluate
    from recipes import Recipe

    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    saved = json.loads((run / "recipe.json").read_text())
    recipe = Recipe(**saved)  # recipe.json validates back into the recipe that ran
    _, eval_tf = build_transforms(recipe, channels=1)
    _, eval_set, classes = build_datasets("digits", None, False, None, eval_tf)
    model = build_model(recipe, classes)
    model.load_state_dict(load_file(str(complete_checkpoints(run)[-1] / "model.safetensors")))
    accelerator = Accelerator(cpu=True)
    loader = worker_eval_loader(accelerator, recipe, first(eval_set, 100), 32, 0, 0)
    single = evaluate(accelerator, model, loader, classes)
    assert single["eval_samples"] == 100
    assert single["eval_top1"] == summary["eval_top1"] and single["eval_top5"] == summary["eval_top5"]
    assert single["confusion_matrix"] == summary["confusion_matrix"]
    assert single["eval_loss"] == pytest.approx(summary["eval_loss"], rel=1e-5)


def test_two_process_in_memory_evaluation_counts_each_image_once_and_equals_one_process(tmp_path):
    result = accelerate_launch(
        2, "--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = only_summary(tmp_path)
    assert summary["data_path"] == "memory" and summary["world_size"] == 2
    assert summary["eval_samples"] == 100 and sum(map(sum, summary["confusion_matrix"])) == 100

    from accelerate import Accelerator
    from safetensors.torch import load_file

    from harness.build import build_model
    from harness.checkpoint import complete_checkpoints
    from harness.data import DigitsDataset, first
    from harness.data.memory import BatchEvalTransform, MemoryLoader, split_tensors
    from harness.engine import evaluate
    from recipes import Recipe

    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    saved = json.loads((run / "recipe.json").read_text())
    recipe = Recipe(**saved)  # recipe.json validates back into the recipe that ran
    model = build_model(recipe, 10)
    model.load_state_dict(load_file(str(complete_checkpoints(run)[-1] / "model.safetensors")))
    images, labels = split_tensors(first(DigitsDataset(False), 100))
    loader = MemoryLoader(images, labels, 32, BatchEvalTransform(recipe, torch.device("cpu")), False, 0)
    single = evaluate(Accelerator(cpu=True), model, loader, 10)
    assert single["eval_samples"] == 100 and single["confusion_matrix"] == summary["confusion_matrix"]
    assert single["eval_top1"] == summary["eval_top1"]
    assert single["eval_loss"] == pytest.approx(summary["eval_loss"], rel=1e-5)


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_runs_at_the_smoke_budget(name, tmp_path):
    assert main(["--recipe", name, "--budget", "smoke", "--output", str(tmp_path), "--workers", "0"]) == 0
    summary = only_summary(tmp_path)
    assert summary["recipe"] == name and summary["epochs_run"] == 1 and summary["eval_samples"] == 100
    assert 0.0 <= summary["eval_top1"] <= 100.0
    assert f"| {name} " in render_markdown(load_records(tmp_path))


def test_seeded_runs_repeat_exactly_on_cpu(tmp_path):
    for out in ("a", "b"):
        assert main(["--recipe", "baseline", "--budget", "smoke", "--output", str(tmp_path / out),
                     "--workers", "0", "--seed", "3"]) == 0  # fmt: skip
    first, second = only_summary(tmp_path / "a"), only_summary(tmp_path / "b")
    assert first["eval_loss"] == second["eval_loss"]
    assert first["confusion_matrix"] == second["confusion_matrix"]
