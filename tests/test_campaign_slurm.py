"""Campaigns on a real one-node SLURM cluster (tests/scripts/slurm_cluster.py: Debian's slurm-wlm and munge, no
accounting), each way SLURM stops a job: scancel, `scontrol requeue`, submitit's SIGUSR2, the time limit, and a job
cancelled before it could start. Every resumed run ends with the uninterrupted run's per-epoch losses, learning rates
and evaluation accuracies, and its weights, tensor for tensor.

The scenarios run at once, each in its own campaign root, as one user would run them one after another. SLURM
holds a requeued job for 2 minutes (pending, Reason=BeginTime, eligible 121 s after the requeue, measured); the test
releases such jobs at once (`scontrol update StartTime=now`) rather than wait. For the time limit, the test pauses
the training process (SIGSTOP) once it has checkpointed, standing in for a run longer than its limit without
spending the CPU (or depending on its speed): SLURM sends its warning with a SIGCONT (measured), which wakes it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.scripts.slurm_cluster import Cluster, unavailable

# 40 epochs of 8 updates of LeNet on digits (seconds); --deterministic for exact resumes on CPU; a mid-epoch
# checkpoint every 4 updates.
CAMPAIGN = {
    "executor": "slurm",
    "grid": {"recipe": ["lenet_mnist"], "seed": [0], "dataset": ["digits"], "budget": ["smoke"]},
    "set": {"batch_size": 8, "epochs": 40},
    "options": {"workers": 0, "deterministic": True, "threads": 1, "save_every": 4},
    "slurm": {"time": 30, "cpus_per_task": 1, "gpus_per_node": 0},
}
EPOCHS = 40
COMPARED = ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]
DEADLINE_S = 900

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(unavailable() is not None, reason=f"no SLURM cluster here: {unavailable()}"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class Scenario:
    """One campaign root on the cluster, driven as a user would."""

    def __init__(self, cluster: Cluster, folder: Path, name: str, **slurm):
        self.cluster, self.root, self.name = cluster, folder / name / "out", name
        self.path = folder / name / "campaign.yaml"
        self.path.parent.mkdir(parents=True)
        text = {**CAMPAIGN, "name": name, "output": "out", "slurm": {**CAMPAIGN["slurm"], **slurm}}
        self.path.write_text(yaml.safe_dump(text))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "harness.campaign", str(self.path), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, cwd=ROOT, env=self.cluster.env, timeout=DEADLINE_S
        )

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env=self.cluster.env,
        )  # fmt: skip

    def runs(self) -> list[dict]:
        return json.loads((self.root / "campaign.json").read_text())["runs"]

    def job(self) -> str:
        """The job id of the campaign's one run, once submitted."""
        wait_until(lambda: (self.root / "campaign.json").is_file() and self.runs()[0]["job_id"], f"{self.name}: a job")
        return self.runs()[0]["job_id"]

    def checkpointed(self) -> None:
        wait_until(lambda: any(self.root.glob("runs/*/*/checkpoints/*/progress.json")), f"{self.name}: a checkpoint")

    def job_state(self, job: str) -> str:
        return self.slurm("squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={job}").strip()

    def slurm(self, *command: str) -> str:
        return subprocess.run(command, capture_output=True, text=True, env=self.cluster.env, check=True).stdout


def wait_until(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def finished(process: subprocess.Popen) -> tuple[int, str]:
    output = process.communicate(timeout=DEADLINE_S)[0]
    return process.returncode, output


# --------------------------------------------------------------------------- the scenarios


def uninterrupted(s: Scenario) -> dict:
    """Submitted and waited for: the run the others are compared with."""
    return {"result": s.run("--wait")}


def cancelled(s: Scenario) -> dict:
    """scancel while the run trains: the job ends (no requeue), the run is cancelled; running the campaign again
    resumes it from its checkpoint."""
    waiting = s.start("--wait")
    job = s.job()
    s.checkpointed()
    s.slurm("scancel", job)
    first = finished(waiting)
    after_cancel = s.runs()[0]
    wait_until(lambda: s.job_state(job) != "COMPLETING", f"{s.name}: the job to end")
    job_state = s.job_state(job)
    again = s.run("--wait")
    return {"first": first, "after_cancel": after_cancel, "job_state": job_state, "again": again}


def requeued(s: Scenario) -> dict:
    """`scontrol requeue` while the run trains: SLURM requeues the job; the campaign run again meanwhile submits
    nothing, and the one job resumes and finishes the run."""
    assert s.run().returncode == 0
    job = s.job()
    s.checkpointed()
    s.slurm("scontrol", "requeue", job)
    wait_until(lambda: "Restarts=1" in s.slurm("scontrol", "show", "job", job), f"{s.name}: the requeue")
    meanwhile = s.run()
    waited = s.run("--wait")
    jobs = s.slurm("squeue", "--noheader", "--states=all", "--format=%i", f"--name={s.name}.{s.runs()[0]['id']}")
    log = Path(s.runs()[0]["logs"][0]).read_text()
    return {"job": job, "meanwhile": meanwhile, "waited": waited, "jobs": jobs.split(), "log": log}


def signalled(s: Scenario) -> dict:
    """submitit's own signal (SIGUSR2, as SLURM sends it before the time limit) while the run trains: submitit
    requeues the job, which resumes the run."""
    waiting = s.start("--wait")
    job = s.job()
    s.checkpointed()
    s.slurm("scancel", "--signal=USR2", job)
    return {"waited": finished(waiting)}


def training_processes(root: Path) -> list[int]:
    """The harness/run.py processes training under `root` (not their launcher)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].endswith("harness/run.py") and any(str(root) in a for a in argv):
            found.append(int(entry.name))
    return found


def timed_out(s: Scenario) -> dict:
    """A 3-minute time limit on a run still training when it nears (paused once it has checkpointed): SLURM's
    warning 90 s before the limit, and the job requeued by submitit until the run is done."""
    waiting = s.start("--wait")
    s.job()
    s.checkpointed()
    paused = training_processes(s.root)
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    return {"paused": paused, "waited": finished(waiting)}


def cancelled_before_it_ran(s: Scenario) -> dict:
    """A job cancelled while held: it writes no result and sacct cannot tell (no accounting); --wait still
    returns, from squeue."""
    waiting = s.start("--wait")
    job = s.job()
    s.slurm("scancel", job)
    return {"waited": finished(waiting)}


# Each scenario, with its campaign's slurm keys; submitted in this order.
SCENARIOS = {
    "timed_out": (timed_out, {"time": 3}),
    "uninterrupted": (uninterrupted, {}),
    "cancelled": (cancelled, {}),
    "requeued": (requeued, {}),
    "signalled": (signalled, {}),
    "cancelled_before_it_ran": (cancelled_before_it_ran, {"extra": ["--hold"]}),
}


def release_requeued_jobs(cluster: Cluster, stop: threading.Event) -> None:
    """Start each requeued job as soon as SLURM would, but for its 2-minute hold."""
    while not stop.wait(1.0):
        listed = subprocess.run(
            ["squeue", "--noheader", "--states=PENDING", "--format=%i|%r"], capture_output=True, text=True,
            env=cluster.env,
        ).stdout  # fmt: skip
        for line in listed.split():
            job, reason = line.split("|", 1)
            if reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=cluster.env)


@pytest.fixture(scope="module")
def outcomes(cluster, tmp_path_factory) -> dict[str, tuple[Scenario, dict]]:
    folder = tmp_path_factory.mktemp("campaigns")
    stop = threading.Event()
    releaser = threading.Thread(target=release_requeued_jobs, args=(cluster, stop), daemon=True)
    releaser.start()
    scenarios = {name: Scenario(cluster, folder, name, **slurm) for name, (_, slurm) in SCENARIOS.items()}
    try:
        with ThreadPoolExecutor(len(SCENARIOS)) as pool:
            futures = {}
            for name, (drive, _) in SCENARIOS.items():
                futures[name] = pool.submit(drive, scenarios[name])
                time.sleep(2)  # submitted in this order
            return {name: (scenarios[name], future.result()) for name, future in futures.items()}
    finally:
        stop.set()
        releaser.join()


def assert_same_as_uninterrupted(outcomes, scenario: Scenario) -> None:
    """Per-epoch losses, learning rates and evaluation accuracies, and the final weights, tensor for tensor."""
    from safetensors.torch import load_file

    (reference,), (run,) = outcomes["uninterrupted"][0].runs(), scenario.runs()
    assert run["id"] == reference["id"] and run["eval_top1"] == reference["eval_top1"]
    got, want = (
        [{k: row[k] for k in COMPARED} for row in csv.DictReader((s.root / r["run_dir"] / "metrics.csv").open())]
        for s, r in ((scenario, run), (outcomes["uninterrupted"][0], reference))
    )
    assert len(got) == EPOCHS and got == want
    weights = [sorted((s.root / r["run_dir"] / "checkpoints").glob("*/model.safetensors"))[-1] for s, r in
               ((scenario, run), (outcomes["uninterrupted"][0], reference))]  # fmt: skip
    assert weights[0].parent.name == weights[1].parent.name  # the same last update
    got_w, want_w = load_file(str(weights[0])), load_file(str(weights[1]))
    assert got_w.keys() == want_w.keys() and all((got_w[k] == want_w[k]).all() for k in want_w)


# --------------------------------------------------------------------------- the tests


def test_a_campaign_submitted_to_slurm_and_waited_for_trains_its_run(outcomes):
    scenario, found = outcomes["uninterrupted"]
    assert found["result"].returncode == 0, found["result"].stdout + found["result"].stderr
    (run,) = scenario.runs()
    assert run["status"] == "done" and len(run["launches"]) == 1
    assert [a["stopped"] for a in run["attempts"]] == ["complete"]
    assert "sacct cannot tell (Slurm accounting storage is disabled): following the jobs with squeue" in (
        found["result"].stdout
    )
    assert (scenario.root / "report.md").is_file()


def test_scancel_cancels_the_job_and_running_the_campaign_again_resumes_the_run(outcomes):
    scenario, found = outcomes["cancelled"]
    status, output = found["first"]
    assert status == 3, output
    assert "cancelled (run the campaign again to resume it)" in output and "1 run(s) cancelled" in output
    assert found["after_cancel"]["status"] == "cancelled"
    assert found["after_cancel"]["attempts"][-1]["stopped"] == "signal SIGTERM"
    assert found["job_state"] == "CANCELLED"  # not requeued by the job
    again = found["again"]
    assert again.returncode == 0, again.stdout + again.stderr
    (run,) = scenario.runs()
    assert run["status"] == "done" and [launch["outcome"] for launch in run["launches"]] == ["cancelled", "done"]
    assert run["launches"][1]["resumed_from"] and run["launches"][1]["job_id"] != run["launches"][0]["job_id"]
    assert [a["stopped"] for a in run["attempts"]] == ["signal SIGTERM", "complete"]
    assert_same_as_uninterrupted(outcomes, scenario)


def test_scontrol_requeue_is_followed_by_one_job_only_which_finishes_the_run(outcomes):
    scenario, found = outcomes["requeued"]
    meanwhile, waited = found["meanwhile"], found["waited"]
    assert meanwhile.returncode == 0 and "0 of 1 runs to start" in meanwhile.stdout, meanwhile.stdout
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert found["jobs"] == [found["job"]]  # one job for the run, ever
    assert f"job {found['job']} was requeued by SLURM: its next start resumes the run" in found["log"]
    assert "CalledProcessError" not in found["log"]
    (run,) = scenario.runs()
    assert run["status"] == "done" and len(run["launches"]) == 1
    assert [a["stopped"] for a in run["attempts"]] == ["signal SIGTERM", "complete"]
    assert run["attempts"][1]["resumed_at_update"] > 0
    assert_same_as_uninterrupted(outcomes, scenario)


def test_submitits_signal_requeues_the_job_which_finishes_the_run(outcomes):
    scenario, found = outcomes["signalled"]
    status, output = found["waited"]
    assert status == 0, output
    (run,) = scenario.runs()
    assert run["status"] == "done" and len(run["launches"]) == 1
    assert [a["stopped"] for a in run["attempts"]] == ["signal SIGUSR2", "complete"]
    assert_same_as_uninterrupted(outcomes, scenario)


def test_a_run_still_training_at_its_time_limit_is_requeued_until_done(outcomes):
    scenario, found = outcomes["timed_out"]
    status, output = found["waited"]
    assert len(found["paused"]) == 1 and status == 0, output
    (run,) = scenario.runs()
    stops = [a["stopped"] for a in run["attempts"]]
    assert run["status"] == "done" and len(run["launches"]) == 1
    assert len(stops) >= 2 and set(stops[:-1]) == {"signal SIGUSR2"} and stops[-1] == "complete", stops
    assert "this job is timed-out" in Path(run["logs"][0]).read_text()  # submitit counted it against the limit
    assert_same_as_uninterrupted(outcomes, scenario)


def test_without_accounting_wait_returns_for_a_job_cancelled_before_it_ran(outcomes):
    scenario, found = outcomes["cancelled_before_it_ran"]
    status, output = found["waited"]
    assert status == 3, output
    (run,) = scenario.runs()
    assert run["status"] == "cancelled" and run["run_dir"] is None and run["attempts"] == []
