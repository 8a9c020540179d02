"""Runs that survive: kill and resume, checkpoints a resume can trust, refusals that name the problem."""

import csv
import dataclasses
import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import fitting
from harness.attempts import read_attempts, run_status
from harness.checkpoint import PROGRESS, complete_checkpoints
from harness.config import ConfigError
from harness.run import main
from harness.run_dir import check_resumable
from recipes import get_recipe
from tests.conftest import ROOT, only_summary, run_cli

pytestmark = pytest.mark.slow

SMOKE = ["--budget", "smoke", "--epochs", "3", "--workers", "0", "--seed", "1", "--deterministic"]


def run_dir_of(output: Path) -> Path:
    (run,) = [p for p in output.iterdir() if p.is_dir()]
    return run


def losses(run: Path) -> list[tuple[str, str, str]]:
    return [(r["train_loss"], r["eval_loss"], r["eval_top1"]) for r in csv.DictReader((run / "metrics.csv").open())]


def kill_after(args: list[str], output: Path, updates: int) -> Path:
    """Start a run, SIGKILL it as soon as a checkpoint at `updates` is complete, return its directory."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "harness" / "run.py"), *args, "--output", str(output)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        done = list(output.glob(f"*/checkpoints/*/{PROGRESS}"))
        if any(json.loads(p.read_text())["num_updates"] >= updates for p in done):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    run = run_dir_of(output)
    assert not (run / "summary.json").exists()
    return run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("uninterrupted")
    assert main(["--recipe", "rsb_a1", *SMOKE, "--output", str(output)]) == 0
    return run_dir_of(output)


def test_kill_and_resume_matches_the_uninterrupted_run(uninterrupted, tmp_path):
    run = kill_after(["--recipe", "rsb_a1", *SMOKE], tmp_path, updates=4)  # killed during epoch 2
    result = run_cli("--resume", str(run))
    assert result.returncode == 0, result.stderr
    assert losses(run) == losses(uninterrupted)
    resumed, reference = (
        json.loads((run / "summary.json").read_text()),
        json.loads((uninterrupted / "summary.json").read_text()),
    )
    assert resumed["resumed"] is True and resumed["epochs_run"] == 3
    for key in ("eval_top1", "eval_top5", "eval_loss", "confusion_matrix"):
        assert resumed[key] == reference[key], key


# LeNet on digits with random rotation, global batch 16 as 4 micro-batches of 4; a checkpoint every 2 updates.
ACCUMULATED = [
    "--recipe",
    "lenet_mnist",
    "--dataset",
    "digits",
    *SMOKE,
    "--set",
    "rotate=10.0",
    "--micro-batch",
    "4",
    "--save-every",
    "2",
    "--keep",
    "10",
]


def assert_resumed_after_update_6_matches(args: list[str], output: Path) -> None:
    """Train with a checkpoint every 2 updates, drop all but the first three (as if killed after update 6), resume:
    the per-epoch losses equal the uninterrupted run's."""
    assert main([*args, "--output", str(output)]) == 0
    run = run_dir_of(output)
    uninterrupted = losses(run)
    for later in complete_checkpoints(run)[3:]:
        shutil.rmtree(later)
    (run / "summary.json").unlink()
    assert run_cli("--resume", str(run)).returncode == 0
    assert losses(run) == uninterrupted


def test_mid_epoch_resume_of_rsb_a3_with_randaugment_on_the_device_matches(tmp_path):
    """RSB A3 on the in-memory path: crops, RandAugment, Mixup/CutMix drawn per batch; killed after update 6 of 12."""
    args = ["--recipe", "rsb_a3", *SMOKE, "--loader", "memory", "--save-every", "2", "--keep", "10"]
    assert_resumed_after_update_6_matches(args, tmp_path)
    summary = only_summary(tmp_path)
    assert (summary["data_path"], summary["augment_on"]) == ("memory", "device")


def test_mid_epoch_resume_with_timms_augmentation_in_persistent_workers_matches(tmp_path):
    """RSB A1's PIL RandAugment and crops in a worker: a resumed run's new worker draws each sample as before."""
    args = ["--recipe", "rsb_a1", *SMOKE, "--loader", "workers", "--augment-on", "workers", "--workers", "1"]
    args += ["--save-every", "2", "--keep", "10"]
    assert_resumed_after_update_6_matches(args, tmp_path)
    assert only_summary(tmp_path)["augment_on"] == "workers"


def test_mid_epoch_resume_with_accumulation_skips_the_consumed_batches_and_matches(tmp_path):
    assert main([*ACCUMULATED, "--output", str(tmp_path)]) == 0
    run = run_dir_of(tmp_path)
    uninterrupted = losses(run)
    saved = [json.loads((c / PROGRESS).read_text()) for c in complete_checkpoints(run)]
    # 4 updates an epoch; checkpoints only at update boundaries, counted in updates, never in micro-steps
    assert [(p["num_updates"], p["epoch"], p["step_in_epoch"]) for p in saved] == [
        (2, 0, 2),
        (4, 1, 0),
        (6, 1, 2),
        (8, 2, 0),
        (10, 2, 2),
        (12, 3, 0),
    ]
    for later in complete_checkpoints(run)[3:]:  # as if killed after update 6, half-way through epoch 2
        shutil.rmtree(later)
    (run / "summary.json").unlink()
    assert run_cli("--resume", str(run)).returncode == 0
    final = json.loads((complete_checkpoints(run)[-1] / PROGRESS).read_text())
    assert final["num_updates"] == 3 * 4  # none repeated or lost
    assert losses(run) == uninterrupted
    assert only_summary(tmp_path)["grad_accum_steps"] == 4


def test_resume_refuses_a_changed_recipe_unless_forced(uninterrupted, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(uninterrupted, run)
    refused = run_cli("--resume", str(run), "--set", "lr=0.5")
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: --resume {run} would change the run (lr: ")
    assert "add --force" in refused.stderr and (run / "summary.json").exists()
    extended = run_cli("--resume", str(run), "--epochs", "4", "--force")
    assert extended.returncode == 0, extended.stderr
    assert only_summary(run)["epochs_run"] == 4


def _corrupt_copy(uninterrupted: Path, tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    return run, complete_checkpoints(run)[-1]


def test_resume_refuses_a_truncated_checkpoint(uninterrupted, tmp_path):
    run, latest = _corrupt_copy(uninterrupted, tmp_path)
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = run_cli("--resume", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: checkpoint {latest} cannot be loaded")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/harness-pickle-executed",))


def test_resume_never_unpickles_arbitrary_objects(uninterrupted, tmp_path):
    Path("/tmp/harness-pickle-executed").unlink(missing_ok=True)
    run, latest = _corrupt_copy(uninterrupted, tmp_path)
    (latest / "optimizer.bin").write_bytes(pickle.dumps(_Payload()))
    result = run_cli("--resume", str(run))
    assert result.returncode == 2 and "cannot be loaded" in result.stderr
    assert not Path("/tmp/harness-pickle-executed").exists()


def test_non_finite_loss_stops_at_once_naming_the_step(tmp_path):
    result = run_cli(
        "--recipe", "baseline", "--budget", "smoke", "--set", "lr=1e30", "--workers", "0", "--output", str(tmp_path)
    )
    assert result.returncode == 2
    assert "training loss became" in result.stderr and "at epoch 1, within update" in result.stderr
    assert not list(tmp_path.rglob("summary.json"))
    (attempt,) = read_attempts(run_dir_of(tmp_path))
    assert attempt["stopped"].startswith("error: training loss became") and attempt["exit_status"] == 2
    assert run_status(run_dir_of(tmp_path)) == "failed"


def test_disk_full_while_checkpointing_keeps_earlier_checkpoints(tmp_path, monkeypatch, capsys):
    real_save, calls = fitting.save_checkpoint, []

    def save_then_fill_the_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(fitting, "save_checkpoint", save_then_fill_the_disk)
    assert main(["--recipe", "baseline", *SMOKE, "--output", str(tmp_path)]) == 2
    assert "error: [Errno 28] No space left on device" in capsys.readouterr().err
    run = run_dir_of(tmp_path)
    (kept,) = complete_checkpoints(run)
    assert json.loads((kept / PROGRESS).read_text())["epoch"] == 1
    assert not (run / "summary.json").exists()
    (attempt,) = read_attempts(run)
    assert (attempt["stopped"], attempt["exit_status"]) == ("error: [Errno 28] No space left on device", 2)
    assert attempt["checkpoint"] == str(kept)


@pytest.fixture(scope="module")
def saved_weights(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weights")
    weights = out / "baseline.safetensors"
    args = ["--recipe", "baseline", "--budget", "smoke", "--workers", "0", "--save-weights", str(weights)]
    assert main([*args, "--output", str(out / "runs")]) == 0
    return weights


def test_saved_weights_start_a_later_run(saved_weights, tmp_path):
    from safetensors.torch import load_file

    from harness.weights import model_with_weights
    from recipes import get_recipe

    model, _ = model_with_weights(get_recipe("baseline"), 10, saved_weights, keep_head=False)
    assert (model.conv1.weight == load_file(str(saved_weights))["conv1.weight"]).all()
    result = run_cli(
        "--recipe",
        "baseline",
        "--budget",
        "smoke",
        "--workers",
        "0",
        "--pretrained-file",
        str(saved_weights),
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert f"weights: initialised from {saved_weights}" in only_summary(tmp_path)["fidelity"]


def test_pretrained_file_that_is_missing_corrupted_or_a_pickle_is_refused(saved_weights, tmp_path):
    Path("/tmp/harness-pickle-executed").unlink(missing_ok=True)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(saved_weights.read_bytes()[:5000])
    trap = tmp_path / "trap.pth"
    trap.write_bytes(pickle.dumps(_Payload()))
    cases = {
        tmp_path / "absent.safetensors": "does not exist",
        truncated: f"pretrained weights {truncated} cannot be loaded",
        trap: f"pretrained weights {trap} cannot be loaded",
    }
    for path, message in cases.items():
        result = run_cli(
            "--recipe",
            "baseline",
            "--budget",
            "smoke",
            "--pretrained-file",
            str(path),
            "--output",
            str(tmp_path / "runs"),
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not Path("/tmp/harness-pickle-executed").exists()
    assert not list(tmp_path.rglob("summary.json"))


def test_a_run_saved_before_a_recipe_field_existed_resumes_with_that_field_at_its_default(tmp_path):
    recipe = get_recipe("rsb_a3")
    saved = recipe.to_dict()
    del saved["reference"]["grad_accum_steps"], saved["tolerance"]  # as written before these fields were added
    (tmp_path / "recipe.json").write_text(json.dumps(saved))
    (tmp_path / "run.json").write_text(json.dumps({"seed": 0}))
    checkpoint = tmp_path / "checkpoints" / "update_000000002"
    checkpoint.mkdir(parents=True)
    (checkpoint / PROGRESS).write_text("{}")
    check_resumable(tmp_path, recipe, seed=0, force=False)  # nothing changed: no refusal
    with pytest.raises(ConfigError, match=r"would change the run \(lr: "):
        check_resumable(tmp_path, dataclasses.replace(recipe, lr=0.1), seed=0, force=False)
