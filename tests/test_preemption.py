"""Runs stopped by a scheduler's signal: the update in flight finishes, every process stops after the same update,
a complete checkpoint is written, the exit status says so, attempts.json records it, and --resume ends exactly as
the uninterrupted run (digits, in-memory path, --deterministic, CPU)."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness import engine, preemption
from harness.attempts import read_attempts, run_status
from harness.checkpoint import PROGRESS, complete_checkpoints
from harness.preemption import EXIT_PREEMPTED, LAUNCHER_ENV, SignalFlag, StopAgreement, stop_signals
from harness.run import main
from tests.conftest import ROOT, accelerate_command, launch_script, run_cli

# 64 training images in batches of 8: 8 updates an epoch, 24 in all.
RUN = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--epochs", "3", "--batch-size", "8"]
RUN += ["--workers", "0", "--seed", "1", "--deterministic"]
UPDATES_PER_EPOCH = 8
HOOK = str(ROOT / "tests" / "scripts" / "signal_at_update.py")


def only_run(output: Path) -> Path:
    (run,) = [p for p in output.iterdir() if p.is_dir()]
    return run


def metrics(run: Path) -> list[tuple[str, str, str]]:
    return [(r["train_loss"], r["eval_loss"], r["eval_top1"]) for r in csv.DictReader((run / "metrics.csv").open())]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def progress_of(checkpoint: str) -> dict:
    return json.loads((Path(checkpoint) / PROGRESS).read_text())


def assert_same_run(resumed: Path, resumed_weights: Path, reference: Path, reference_weights: Path) -> None:
    """The same per-epoch losses, final metrics and weights, tensor for tensor."""
    assert metrics(resumed) == metrics(reference)
    for key in ("eval_top1", "eval_top5", "eval_loss", "confusion_matrix", "train_loss"):
        assert summary(resumed)[key] == summary(reference)[key], key
    got, want = load_file(str(resumed_weights)), load_file(str(reference_weights))
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].equal(tensor), name


def assert_stopped(run: Path, signal_name: str, processes: int, update: int) -> str:
    """One attempt, stopped on `signal_name` after `update` with a complete checkpoint there; no summary."""
    assert not (run / "summary.json").exists() and run_status(run) == "preempted"
    (attempt,) = read_attempts(run)
    assert attempt["stopped"] == f"signal {signal_name}" and attempt["exit_status"] == EXIT_PREEMPTED
    assert attempt["processes"] == processes and attempt["nodes"] == 1 and attempt["ended_at"] is not None
    assert attempt["checkpoint"] == str(complete_checkpoints(run)[-1])
    assert progress_of(attempt["checkpoint"])["num_updates"] == update
    return attempt["checkpoint"]


def hooked(update: int, name: str, rank: int, *args: str) -> subprocess.CompletedProcess:
    """run.py in one process, signalled by itself right after `update` (tests/scripts/signal_at_update.py)."""
    command = [sys.executable, HOOK, str(update), name, str(rank), "--", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("one")
    assert main([*RUN, "--output", str(out / "runs"), "--save-weights", str(out / "w.safetensors")]) == 0
    return only_run(out / "runs"), out / "w.safetensors"


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("two")
    result = launch_script(
        2, "harness/run.py", *RUN, "--output", str(out / "runs"), "--save-weights", str(out / "w.safetensors")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return only_run(out / "runs"), out / "w.safetensors"


@pytest.mark.slow
def test_sigterm_mid_epoch_on_one_process_checkpoints_exits_3_and_resumes_exactly(one_process, tmp_path):
    weights = tmp_path / "w.safetensors"
    result = hooked(5, "SIGTERM", 0, *RUN, "--output", str(tmp_path / "runs"), "--save-weights", str(weights))
    assert result.returncode == EXIT_PREEMPTED, result.stderr
    run = only_run(tmp_path / "runs")
    checkpoint = assert_stopped(run, "SIGTERM", processes=1, update=5)
    assert progress_of(checkpoint)["epoch"] == 0 and progress_of(checkpoint)["step_in_epoch"] == 5  # mid-epoch
    assert f"stopped on SIGTERM after update 5; checkpoint {checkpoint}; continue with --resume {run}" in result.stderr

    resumed = run_cli("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, weights, *one_process)
    first, second = summary(run)["attempts"]
    assert second["resumed_from"] == checkpoint and second["resumed_at_update"] == 5
    assert (second["stopped"], second["exit_status"]) == ("complete", 0)
    assert summary(run)["world_sizes"] == [1, 1] and read_attempts(run) == [first, second]
    assert run_status(run) == "complete"


@pytest.mark.slow
def test_signal_during_the_epoch_end_evaluation_stops_after_that_epoch_and_mlflow_continues(
    one_process, tmp_path, monkeypatch
):
    import mlflow

    evaluate, calls = engine.evaluate, []

    def signalled_evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the first epoch's evaluation
            os.kill(os.getpid(), signal.SIGUSR2)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", signalled_evaluate)
    weights = tmp_path / "w.safetensors"
    argv = [*RUN, "--output", str(tmp_path / "runs"), "--save-weights", str(weights), "--log-with", "mlflow"]
    assert main([*argv, "--project", "preempted"]) == EXIT_PREEMPTED
    run = only_run(tmp_path / "runs")
    checkpoint = assert_stopped(run, "SIGUSR2", processes=1, update=UPDATES_PER_EPOCH)
    assert progress_of(checkpoint)["epoch"] == 1 and progress_of(checkpoint)["step_in_epoch"] == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    run_id = read_attempts(run)[0]["trackers"]["mlflow"]["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"

    monkeypatch.setattr(engine, "evaluate", evaluate)
    assert main(["--resume", str(run)]) == 0
    assert_same_run(run, weights, *one_process)
    (experiment,) = [e for e in client.search_experiments() if e.name == "preempted"]
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.info.run_id == run_id and mlflow_run.info.status == "FINISHED"  # one run over both attempts
    top1 = client.get_metric_history(run_id, "eval/top1")
    assert [m.step for m in top1] == [8, 16, 24]
    assert [m.value for m in top1] == pytest.approx([float(row[2]) for row in metrics(run)], abs=1e-4)


@pytest.mark.slow
def test_signal_to_one_rank_of_two_stops_both_after_the_same_update_and_resumes_exactly(two_processes, tmp_path):
    weights, out = tmp_path / "w.safetensors", tmp_path / "runs"
    launched = launch_script(
        2, HOOK, "5", "SIGUSR1", "1", "--", *RUN, "--output", str(out), "--save-weights", str(weights)
    )
    logs = launched.stdout + launched.stderr
    # accelerate's launcher (torchrun) reports a worker's non-zero status as its own failure, status 1.
    assert launched.returncode == 1, logs
    statuses = re.findall(r"exitcode\s*:\s*(-?\d+)", logs)  # torchrun's table of the ranks that ended
    assert statuses and set(statuses) == {str(EXIT_PREEMPTED)}, logs
    run = only_run(out)
    # Rank 1 got the signal after update 5; the flags exchanged then are read after update 6, on both ranks.
    checkpoint = assert_stopped(run, "SIGUSR1", processes=2, update=6)
    assert progress_of(checkpoint)["step_in_epoch"] == 6

    resumed = launch_script(2, "harness/run.py", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_same_run(run, weights, *two_processes)
    assert summary(run)["world_sizes"] == [2, 2] and summary(run)["world_size"] == 2


@pytest.mark.slow
def test_sigterm_to_the_launcher_reaches_both_processes_and_the_run_resumes_on_one(tmp_path):
    out = tmp_path / "runs"
    command = [*accelerate_command(2), "harness/run.py", *RUN, "--save-every", "2", "--output", str(out)]
    environment = {**os.environ, **LAUNCHER_ENV}  # time enough to checkpoint on a loaded machine
    with (tmp_path / "launcher.log").open("w") as log:
        launcher = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not list(out.glob(f"*/checkpoints/*/{PROGRESS}")) and time.monotonic() < deadline:
            time.sleep(0.02)
        launcher.send_signal(signal.SIGTERM)  # torchrun forwards it to both training processes
        status = launcher.wait(timeout=240)
    logs = (tmp_path / "launcher.log").read_text()
    # torchrun re-raises the signal as its own failure: accelerate 1.15 exits 1, accelerate 1.16 128 + SIGTERM
    assert status in (1, 128 + signal.SIGTERM), logs
    run = only_run(out)
    checkpoint = complete_checkpoints(run)[-1]
    stopped_at = progress_of(str(checkpoint))["num_updates"]
    assert_stopped(run, "SIGTERM", processes=2, update=stopped_at)
    assert 2 <= stopped_at < 3 * UPDATES_PER_EPOCH

    resumed = run_cli("--resume", str(run))  # one process now: same global batch, another split
    assert resumed.returncode == 0, resumed.stderr
    record = summary(run)
    assert record["world_size"] == 1 and record["world_sizes"] == [2, 1] and record["global_batch_size"] == 8
    assert [a["processes"] for a in record["attempts"]] == [2, 1]
    assert record["attempts"][1]["resumed_at_update"] == stopped_at and record["epochs_run"] == 3
    assert "cpu x 1 process(es) (attempts on 2 then 1 processes)" in (run / "report.md").read_text()


class _Finished:
    def wait(self) -> None:
        pass


def test_a_rank_stopping_on_another_ranks_signal_ignores_the_launchers_sigterm_on_its_way_out(monkeypatch):
    """torchrun sends SIGTERM to the ranks still running when the first exits; a rank that stopped because
    another rank was signalled must leave with status 3 all the same, not die by that SIGTERM."""
    monkeypatch.setattr(preemption, "_parent_is_launcher", lambda: True)
    monkeypatch.setattr(preemption, "_stop_when_the_launcher_dies", lambda: None)
    before = signal.getsignal(signal.SIGTERM)
    try:
        with stop_signals() as flag:
            agreement = StopAgreement(flag, num_processes=1)
            agreement._group = object()  # as with several processes: the answer comes from the exchange
            agreement._pending = (_Finished(), torch.tensor([int(signal.SIGUSR1)], dtype=torch.int32))
            assert flag.signum == 0  # this process was not signalled
            assert agreement.at_update() == signal.SIGUSR1
            assert flag.signum == signal.SIGUSR1
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_run_that_was_not_stopped_gets_its_handlers_back(monkeypatch):
    monkeypatch.setattr(preemption, "_parent_is_launcher", lambda: True)
    monkeypatch.setattr(preemption, "_stop_when_the_launcher_dies", lambda: None)
    before = {sig: signal.getsignal(sig) for sig in preemption.STOP_SIGNALS}
    with stop_signals() as flag:
        assert isinstance(flag, SignalFlag) and signal.getsignal(signal.SIGUSR2) == flag.record
    assert {sig: signal.getsignal(sig) for sig in preemption.STOP_SIGNALS} == before
