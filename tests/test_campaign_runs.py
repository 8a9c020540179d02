"""Campaigns that train: 2 recipes (a registered one and a recipe file) x 2 seeds on digits at the smoke budget,
through `accelerate launch` one after another (local) and through submitit's local executor (real subprocesses, one
job stopped by a signal and requeued); and --plan from estimates on synthetic data."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.campaign.launch import children
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# 24 epochs of 8 updates (a few seconds of LeNet): long enough to stop a run mid-training; --deterministic for
# exact resumes on CPU; one thread a run, as four share two cores under submitit. The second recipe is a file
# beside the campaign file: LeNet-5 with another learning rate.
GRID = {
    "grid": {"recipe": ["lenet_mnist", "lenet_lr.yaml"], "seed": [0, 1], "dataset": ["digits"], "budget": ["smoke"]},
    "set": {"epochs": 24, "batch_size": 8},
    "options": {"workers": 0, "deterministic": True, "threads": 1},
}
RECIPE_FILE = "name: lenet_lr\nbase: lenet_mnist\nlr: 0.03\n"
RECIPES = ("lenet_mnist", "lenet_lr")
COMPARED = ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]


def campaign_file(folder: Path, executor: str, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lenet_lr.yaml").write_text(RECIPE_FILE)
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "output": "out", "executor": executor, **GRID, **extra}))
    return path


def campaign(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.campaign", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def state(root: Path) -> dict:
    return json.loads((root / "campaign.json").read_text())


def metrics(root: Path, run: dict) -> list[dict]:
    rows = csv.DictReader((root / run["run_dir"] / "metrics.csv").open())
    return [{k: row[k] for k in COMPARED} for row in rows]


@pytest.fixture(scope="module")
def local_campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("local")
    path = campaign_file(folder, "local", log_with="mlflow")
    result = campaign(str(path))
    return path, folder / "out", result


def test_a_local_campaign_runs_every_run_and_reports_both_recipes_over_two_seeds(local_campaign):
    _, root, result = local_campaign
    assert result.returncode == 0, result.stdout + result.stderr
    runs = state(root)["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} == {"done"}
    assert state(root)["counts"]["done"] == 4
    records = sorted(root.glob("runs/*/*/summary.json"))
    assert len(records) == 4
    for run in runs:
        summary = json.loads((root / run["run_dir"] / "summary.json").read_text())
        assert summary["eval_top1"] == run["eval_top1"]
        assert (summary["seed"], summary["dataset"], summary["epochs_run"]) == (run["key"]["seed"], "digits", 24)
        assert Path(run["run_dir"]).parent.name == run["id"]  # each run in its own folder
    report = (root / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith(tuple(f"| {r} " for r in RECIPES))]
    assert len(rows) == 2 and all(" (2) " in row and " ± " in row for row in rows), rows
    table = list(csv.DictReader((root / "results.csv").open()))
    assert sorted((row["recipe"], row["n"]) for row in table) == [("lenet_lr", "2"), ("lenet_mnist", "2")]
    assert (root / "comparison.png").read_bytes().startswith(b"\x89PNG")


def test_every_run_of_a_campaign_lands_in_one_mlflow_experiment(local_campaign):
    from mlflow import MlflowClient

    _, root, result = local_campaign
    assert result.returncode == 0, result.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 4
    recorded = sorted(r["eval_top1"] for r in state(root)["runs"])
    assert sorted(r.data.metrics["eval/top1"] for r in found) == pytest.approx(recorded)


def test_running_a_finished_campaign_again_trains_nothing(local_campaign):
    path, root, first = local_campaign
    assert first.returncode == 0, first.stderr
    before = {p: p.stat().st_mtime for p in root.glob("runs/*/*/summary.json")}
    result = campaign(str(path))
    assert result.returncode == 0, result.stderr
    assert "0 of 4 runs to start" in result.stdout
    runs = state(root)["runs"]
    assert [r["status"] for r in runs] == ["done"] * 4 and all(len(r["launches"]) == 1 for r in runs)
    assert {p: p.stat().st_mtime for p in root.glob("runs/*/*/summary.json")} == before


def _stop_mid_training(process: subprocess.Popen, root: Path, run_id: str) -> None:
    """Once the run has checkpointed its first epoch, send SIGUSR1 to its submitit job's task process."""
    deadline = time.monotonic() + 300
    while not list(root.glob(f"runs/{run_id}/*/checkpoints/*/progress.json")):
        assert process.poll() is None and time.monotonic() < deadline, "the run never checkpointed"
        time.sleep(0.2)
    job = next(r["job_id"] for r in state(root)["runs"] if r["id"] == run_id)
    tasks = [p for p in children(int(job)) if b"submitit.core._submit" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(tasks) == 1
    os.kill(tasks[0], signal.SIGUSR1)


def test_submitit_local_requeues_a_job_stopped_by_a_signal_and_ends_as_if_uninterrupted(local_campaign, tmp_path):
    _, local_root, first = local_campaign
    assert first.returncode == 0, first.stderr
    path, root = campaign_file(tmp_path, "submitit-local"), tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.campaign", str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    while not (root / "campaign.json").is_file() or any(r["job_id"] is None for r in state(root)["runs"]):
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.2)
    stopped = state(root)["runs"][3]["id"]
    _stop_mid_training(process, root, stopped)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output

    runs = {r["id"]: r for r in state(root)["runs"]}
    assert {r["status"] for r in runs.values()} == {"done"}
    attempts = runs[stopped]["attempts"]
    assert [a["stopped"] for a in attempts] == ["signal SIGUSR1", "complete"]
    assert attempts[1]["resumed_from"] and attempts[1]["resumed_at_update"] > 0
    assert len(runs[stopped]["launches"]) == 1  # requeued by submitit inside its job, not started again
    uninterrupted = {r["id"]: r for r in state(local_root)["runs"]}
    for run_id, run in runs.items():
        assert run["eval_top1"] == uninterrupted[run_id]["eval_top1"]
        assert metrics(root, run) == metrics(local_root, uninterrupted[run_id])
    assert len([line for line in (root / "report.md").read_text().splitlines() if " (2) " in line]) == 2


def test_a_local_campaign_stopped_by_sigterm_resumes_the_run_when_started_again(local_campaign, tmp_path):
    _, local_root, first = local_campaign
    assert first.returncode == 0, first.stderr
    grid = {**GRID["grid"], "recipe": ["lenet_mnist"], "seed": [1]}
    path, root = campaign_file(tmp_path, "local", grid=grid), tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "harness.campaign", str(path)], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(root.glob("runs/*/*/checkpoints/*/progress.json")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 3, output
    (run,) = state(root)["runs"]
    assert run["status"] == "preempted" and run["attempts"][-1]["stopped"] == "signal SIGTERM"

    again = campaign(str(path))
    assert again.returncode == 0, again.stdout + again.stderr
    (run,) = state(root)["runs"]
    assert run["status"] == "done" and len(run["launches"]) == 2 and run["launches"][1]["resumed_from"]
    assert [a["stopped"] for a in run["attempts"]] == ["signal SIGTERM", "complete"]
    uninterrupted = next(r for r in state(local_root)["runs"] if r["id"] == run["id"])
    assert metrics(root, run) == metrics(local_root, uninterrupted)


def test_a_failing_run_does_not_stop_the_others_and_is_retried_only_when_asked(tmp_path):
    """A recipe file whose `freeze` names no parameter plans fine and fails once the model is built."""
    (tmp_path / "lenet_frozen.yaml").write_text("name: lenet_frozen\nbase: lenet_mnist\nfreeze: trunk\n")
    grid = {"recipe": ["lenet_frozen.yaml", "lenet_mnist"], "seed": [0], "dataset": ["digits"], "budget": ["smoke"]}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({"name": "mixed", "output": "out", "grid": grid, "options": {"workers": 0}}))
    root = tmp_path / "out"
    result = campaign(str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    failed, done = state(root)["runs"]
    assert done["status"] == "done" and failed["status"] == "failed"
    assert failed["error"].startswith("error: freeze='trunk' names no parameter"), failed["error"]
    assert f"{failed['id']}: failed: error: freeze='trunk'" in result.stdout
    report = (root / "report.md").read_text()
    assert f"| {failed['id']} | failed " in report and "| lenet_mnist " in report

    again = campaign(str(path))
    assert again.returncode == 1 and "0 of 2 runs to start" in again.stdout
    retried = campaign(str(path), "--retry-failed")
    assert retried.returncode == 1 and "1 of 2 runs to start" in retried.stdout
    failed, done = state(root)["runs"]
    assert len(failed["launches"]) == 2 and len(done["launches"]) == 1


def test_plan_lists_every_run_with_device_hours_from_estimates_and_trains_nothing(tmp_path):
    """mnist is absent here: the estimates time synthetic images of its shape, and the plan says training would be
    refused."""
    grid = {**GRID["grid"], "dataset": ["mnist"]}
    path = campaign_file(tmp_path, "local", grid=grid)
    root = tmp_path / "out"
    result = campaign(str(path), "--plan")
    assert result.returncode == 0, result.stdout + result.stderr
    estimates = {
        p.parent.parent.name: json.loads(p.read_text()) for p in root.glob("estimates/local/*/*/estimate.json")
    }
    assert len(estimates) == 2 and all(e["synthetic_data"] for e in estimates.values())
    lines = result.stdout.splitlines()
    for recipe in RECIPES:
        for seed in (0, 1):
            row = next(line for line in lines if line.startswith(f"{recipe}-mnist-smoke-seed{seed}-"))
            hours = next(e["device_hours"] for s, e in estimates.items() if s.startswith(f"{recipe}-"))
            assert "planned" in row and "cpu x 1" in row and f"{hours:.3g}" in row
    total = 2 * sum(e["device_hours"] for e in estimates.values())
    assert f"total: {total:.3g} device-hours over 4 runs; still to run: 4 runs" in result.stdout
    assert "one run after another on this machine" in result.stdout
    assert "running this campaign on this machine would be refused" in result.stdout
    assert not (root / "runs").exists()  # nothing trained

    again = campaign(str(path), "--plan")
    assert again.returncode == 0 and "timing " not in again.stdout
    assert len(list(root.glob("estimates/local/*/*/estimate.json"))) == 2
