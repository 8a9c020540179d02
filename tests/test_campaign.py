"""Campaign files refused before anything starts, and the SLURM job a campaign submits, read without a cluster."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.campaign.cli import main
from harness.campaign.launch import RUN_PY
from harness.campaign.rundirs import last_error_line
from harness.campaign.spec import slurm_minutes
from tests.conftest import ROOT

TINY = {
    "name": "tiny",
    "output": "out",
    "executor": "local",
    "grid": {"recipe": ["lenet_mnist", "cnn_fmnist"], "seed": [0, 1], "dataset": ["digits"], "budget": ["smoke"]},
    "options": {"workers": 0},
}


def write_campaign(folder: Path, text: str | None = None, **changes) -> Path:
    path = folder / "campaign.yaml"
    path.write_text(text if text is not None else yaml.safe_dump({**TINY, **changes}, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": [0, 1]}, "unknown key 'seeds'; valid keys: name, output, executor, grid, set"),
        ({"grid": {**TINY["grid"], "recipes": ["x"]}}, "unknown key 'grid.recipes'; valid keys in grid: recipe, seed"),
        ({"grid": {**TINY["grid"], "recipe": ["lenet_mnist", "no_such"]}}, "grid.recipe 'no_such': unknown recipe"),
        ({"grid": {**TINY["grid"], "recipe": ["mine.yaml"]}}, "grid.recipe 'mine.yaml': recipe file"),
        ({"grid": {**TINY["grid"], "recipe": []}}, "grid.recipe=[]: list should have at least 1 item"),
        ({"grid": {**TINY["grid"], "seed": []}}, "grid.seed=[]: list should have at least 1 item"),
        ({"grid": {**TINY["grid"], "seed": [0, 0]}}, "grid.seed=[0, 0]: lists a value twice"),
        ({"grid": {**TINY["grid"], "budget": ["huge"]}}, "grid.budget[0]='huge': input should be 'full', 'proxy'"),
        ({"executor": "ssh"}, "executor='ssh': input should be 'local', 'slurm' or 'submitit-local'"),
        ({"set": {"lr": -1}}, "run lenet_mnist-digits-smoke-seed0-"),
        ({"set": {"nope": 1}}, "unknown --set key 'nope'"),
        (
            {"options": {"output": "x"}},
            "output is set by the campaign's output (each run gets CAMPAIGN_ROOT/runs/RUN/)",
        ),
        ({"options": {"wrkers": 0}}, "unrecognized arguments: --wrkers 0"),
        ({"launch": {"processes": 3, "nodes": 2}}, "processes (3) must be a multiple of nodes (2)"),
        ({"launch": {"processes": 2, "nodes": 2}}, "launch.nodes=2: executor local runs on one machine"),
        (
            {"executor": "slurm", "slurm": {"time": "-1:00:00"}},
            "slurm.time='-1:00:00': must be a SLURM time such as 72:00:00",
        ),
        ({"executor": "slurm", "slurm": {"time": -5}}, "slurm.time=-5: must be a positive number of minutes"),
        ({"executor": "slurm"}, "slurm.time is required for executor slurm"),
        ({"executor": "slurm", "slurm": {"time": 60, "extra": ["--nodes=4"]}}, "--nodes is set by the campaign"),
        ({"grid": {**TINY["grid"], "dataset": ["cifar10"]}}, "cifar10"),
    ],
)
def test_a_bad_campaign_file_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, changes, message):
    path = write_campaign(tmp_path, **changes)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_the_refusal_of_a_bad_set_names_the_run_and_the_field(tmp_path, capsys):
    assert main([str(write_campaign(tmp_path, set={"lr": -1}))]) == 2
    err = capsys.readouterr().err
    assert "run lenet_mnist-digits-smoke-seed0-" in err and "--set: lr=-1: input should be greater than 0" in err


def test_slurm_without_submitit_is_refused_with_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    path = write_campaign(tmp_path, executor="slurm", slurm={"time": "1:00:00"})
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "executor slurm needs submitit, which is not installed: pip install 'recipe-harness[campaign]'" in err
    assert not (tmp_path / "out").exists()


def test_slurm_without_srun_says_where_to_submit_from(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main([str(write_campaign(tmp_path, executor="slurm", slurm={"time": 60}))]) == 2
    assert "SLURM's srun is not on this machine" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_campaign_file_starts_nothing(tmp_path, capsys):
    """YAML that is not a mapping, and a file that does not exist."""
    assert main([str(write_campaign(tmp_path, text="- just\n- a list\n"))]) == 2
    assert "must hold a mapping" in capsys.readouterr().err
    assert main([str(tmp_path / "absent.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "minutes"),
    [(90, 90), ("90", 90), ("1:30", 2), ("72:00:00", 4320), ("2-00", 2880), ("1-02:03", 1563), ("0-00:00:30", 1)],
)
def test_slurm_times_in_every_form_slurm_takes(text, minutes):
    assert slurm_minutes(text) == minutes


def test_an_unquoted_slurm_time_stays_a_time(tmp_path):
    """YAML 1.1 would read 72:00:00 as the sexagesimal number 259200."""
    from harness.campaign.spec import read_campaign

    path = write_campaign(tmp_path, text=yaml.safe_dump(TINY) + "slurm: {time: 72:00:00}\n")
    assert read_campaign(path).slurm.time == 4320


def test_the_last_error_line_is_the_runs_own_not_the_launchers():
    log = "\n".join(
        [
            "epoch 1 ...",
            "[rank0]: Traceback (most recent call last):",
            "[rank0]: ValueError: the batch is odd",
            "subprocess.CalledProcessError: Command '['python', 'run.py']' returned non-zero exit status 1.",
            "harness.campaign.jobs.RunFailed: training ended with exit status 1 without a finished record",
        ]
    )
    assert last_error_line(log) == "ValueError: the batch is odd"
    launcher = "error: freeze='trunk' names no parameter\nRuntimeError: error: freeze='trunk' names no parameter\n"
    assert last_error_line(launcher) == "error: freeze='trunk' names no parameter"  # accelerate 1.16 repeats it
    assert last_error_line("error: --set: lr=-1: input should be greater than 0\n") == (
        "error: --set: lr=-1: input should be greater than 0"
    )


# --------------------------------------------------------------------------- slurm, without a cluster

FAKE_SBATCH = """#!/bin/sh
cp "$1" "{copy}"
echo "Submitted batch job 4242"
"""


def fake_slurm(folder: Path) -> Path:
    """sbatch that keeps the script it is given and answers with a job id; srun that only exists."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, text in {
        "sbatch": FAKE_SBATCH.format(copy=folder / "submitted.sh"),
        "srun": "#!/bin/sh\nexit 1\n",
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    return bin_dir


SLURM_CAMPAIGN = {
    **TINY,
    "executor": "slurm",
    "grid": {"recipe": ["baseline"], "seed": [0], "dataset": ["digits"], "budget": ["proxy"]},
    "launch": {"processes": 16, "nodes": 2},
    "slurm": {
        "partition": "gpu",
        "time": "72:00:00",
        "gpus_per_node": 8,
        "cpus_per_task": 96,
        "account": "vision",
        "qos": "high",
        "constraint": "a100",
        "extra": ["--mem=0", "#SBATCH --exclusive"],
    },
}


def test_a_slurm_campaign_submits_one_job_per_run_with_the_sbatch_parameters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", f"{fake_slurm(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    path = write_campaign(tmp_path, text=yaml.safe_dump(SLURM_CAMPAIGN))
    assert main([str(path)]) == 0
    assert "runs still to end" in capsys.readouterr().out
    script = (tmp_path / "submitted.sh").read_text().splitlines()
    flags = {line for line in script if line.startswith("#SBATCH")}
    expected = {
        "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=96", "--partition=gpu",
        "--time=4320", "--account=vision", "--qos=high", "--constraint=a100", "--mem=0", "--exclusive",
        "--signal=USR2@90", "--job-name=tiny.baseline-digits-proxy-seed0",
    }  # fmt: skip
    assert {f"#SBATCH {flag}" for flag in expected} <= flags, flags
    root = tmp_path / "out"
    assert f"#SBATCH --output={root}/submitit/%j/%j_0_log.out" in flags
    srun = next(line for line in script if line.startswith("srun "))
    assert srun.endswith(f"-u -m submitit.core._submit {root}/submitit/%j")

    run = json.loads((root / "campaign.json").read_text())["runs"][0]
    assert run["status"] == "running" and run["job_id"] == "4242"
    assert run["logs"] == [f"{root}/submitit/4242/4242_0_log.out", f"{root}/submitit/4242/4242_0_log.err"]
    assert run["key"] == {"recipe": "baseline", "dataset": "digits", "budget": "proxy", "seed": 0,
                          "overrides": {}, "options": {}}  # fmt: skip


def test_each_node_of_the_slurm_job_launches_accelerate_for_its_rank(tmp_path, monkeypatch):
    """The pickled job submitit would run, asked for node 1's command in a 2 x 8 GPU allocation."""
    import submitit
    from submitit.core.utils import DelayedSubmission

    monkeypatch.setenv("PATH", f"{fake_slurm(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    assert main([str(write_campaign(tmp_path, text=yaml.safe_dump(SLURM_CAMPAIGN)))]) == 0
    delayed = DelayedSubmission.load(tmp_path / "out" / "submitit" / "4242" / "4242_submitted.pkl")
    slurm_env = {
        "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1",
        "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "gpu-[07-08]",
    }  # fmt: skip
    for name, value in slurm_env.items():
        monkeypatch.setenv(name, value)
    command, resumed_from = delayed.function.command(submitit.JobEnvironment(), *delayed.args)
    assert resumed_from is None
    launcher = command[: command.index(str(RUN_PY))]
    options = dict(zip(launcher[::1], launcher[1:], strict=False))
    assert "--multi_gpu" in launcher
    assert options["--num_processes"] == "16" and options["--num_machines"] == "2"
    assert options["--machine_rank"] == "1" and options["--main_process_ip"] == "gpu-07"
    assert options["--main_process_port"] == str(20000 + 4242)
    run_argv = command[command.index(str(RUN_PY)) + 1 :]
    output = tmp_path / "out" / "runs" / "baseline-digits-proxy-seed0"
    assert run_argv == ["--recipe", "baseline", "--seed", "0", "--budget", "proxy", "--dataset", "digits",
                        "--workers", "0", "--output", str(output)]  # fmt: skip


def test_plan_wall_time_on_slurm_is_the_longest_run_split_into_jobs_of_the_time_limit():
    import pandas as pd

    from harness.campaign.plan import wall_time
    from harness.campaign.spec import Campaign

    slurm = Campaign.model_validate({**TINY, "executor": "slurm", "slurm": {"time": "1:00:00"}})
    # 7,200 s at 3,510 s a job (the hour less submitit's 90 s warning): 3 jobs.
    assert wall_time(slurm, pd.Series([7200.0, 3000.0])) == (
        "2.0 h if the cluster runs all 2 jobs at once, 2.8 h one at a time; "
        "the longest run needs 3 job(s) of the 60-minute limit"
    )
    assert wall_time(slurm, pd.Series([], dtype=float)) == "none: every run is done"
    local = Campaign.model_validate(TINY)
    assert wall_time(local, pd.Series([600.0, 1200.0])) == "30.0 min one run after another on this machine"


def test_plan_wall_time_on_slurm_counts_the_start_up_each_job_repeats():
    import pandas as pd

    from harness.campaign.plan import wall_time
    from harness.campaign.spec import Campaign

    slurm = Campaign.model_validate({**TINY, "executor": "slurm", "slurm": {"time": "1:00:00"}})
    # 7,020 s: 2 jobs of 3,510 s; with 510 s of start-up a job trains 3,000 s, so 3 jobs.
    assert wall_time(slurm, pd.Series([7020.0])).endswith("needs 2 job(s) of the 60-minute limit")
    assert wall_time(slurm, pd.Series([7020.0]), start_s=510).endswith("needs 3 job(s) of the 60-minute limit")


# --------------------------------------------------------------------------- how SLURM stops a job

# `scontrol show job` while a job whose run stopped on SIGTERM is ending, as SLURM 22.05 shows it (trimmed).
ENDING = "JobState=COMPLETING Reason=None Requeue=1 Restarts={restarts} TimeLimit={limit} StartTime=2026-12-02T15:55:30"
RECORDS = {
    "scancel": ENDING.format(restarts=0, limit="00:30:00") + " EndTime=2026-12-02T15:56:40",
    "scontrol requeue": ENDING.format(restarts=1, limit="00:30:00") + " EndTime=Unknown",
    "preemption, REQUEUE mode": ENDING.format(restarts=1, limit="UNLIMITED") + " EndTime=Unknown",
    "preemption, CANCEL mode": ENDING.format(restarts=0, limit="UNLIMITED")
    + " EndTime=2026-12-02T15:55:36 PreemptTime=2026-12-02T15:55:36",
    "time limit": ENDING.format(restarts=0, limit="00:03:00") + " EndTime=2026-12-02T15:58:30",
    "scancel --signal=TERM": ENDING.format(restarts=0, limit="00:30:00").replace("COMPLETING", "RUNNING")
    + " EndTime=2026-12-02T16:25:30",
}


def _parsed(text: str, monkeypatch) -> dict:
    import subprocess

    from harness.campaign import slurm

    answer = subprocess.CompletedProcess([], 0, f"JobId=7 JobName=tiny.run UserId=root(0) {text} Command=(null)\n", "")
    monkeypatch.setattr(slurm, "_run", lambda command: answer)
    return slurm.job_record("7")


@pytest.mark.parametrize(
    ("stop", "restarts_here", "why"),
    [
        ("scancel", 0, "cancelled"),
        ("scontrol requeue", 0, "requeued"),
        ("preemption, REQUEUE mode", 0, "requeued"),
        ("preemption, CANCEL mode", 0, "preempted"),
        ("time limit", 0, "preempted"),
        ("scancel --signal=TERM", 0, "preempted"),
        ("scontrol requeue", 1, "cancelled"),  # one restart, already known to this start: not a new requeue
    ],
)
def test_why_slurm_is_ending_a_job_is_read_from_its_record(monkeypatch, stop, restarts_here, why):
    from harness.campaign.slurm import why_stopping

    record = _parsed(RECORDS[stop], monkeypatch)
    assert record["JobState"] in ("COMPLETING", "RUNNING") and record["UserId"] == "root(0)"
    assert why_stopping(record, restarts_here) == why
    assert why_stopping({}, restarts_here) == "preempted"  # scontrol did not answer: requeue through submitit


class _JobEnv:
    cluster, job_id, global_rank, node = "slurm", "7", 0, 0


@pytest.mark.parametrize(
    ("stop", "outcome"),
    [("scancel", "cancelled"), ("scontrol requeue", "exit 3"), ("preemption, CANCEL mode", "submitit's signal")],
)
def test_a_job_whose_run_stopped_on_sigterm_ends_as_slurm_ends_it(monkeypatch, stop, outcome):
    """Cancelled: the job ends with the run cancelled (no requeue). Requeued by SLURM: the job exits without a result
    (submitit must not requeue it again). Otherwise submitit's signal is raised, whose handler requeues the job."""
    import signal

    from harness.campaign import jobs, slurm

    record = _parsed(RECORDS[stop], monkeypatch)
    monkeypatch.setattr(slurm, "job_record", lambda job_id: record)
    raised = []
    monkeypatch.setattr(signal, "raise_signal", raised.append)
    job = jobs.TrainingJob([], "out", 1, {})
    if outcome == "exit 3":
        with pytest.raises(SystemExit) as stopped:
            job._stopped(_JobEnv(), signal.SIGUSR2)
        assert stopped.value.code == 3 and raised == []
    elif outcome == "cancelled":
        assert job._stopped(_JobEnv(), signal.SIGUSR2) == "cancelled" and raised == []
    else:
        assert job._stopped(_JobEnv(), signal.SIGUSR2) == "preempted" and raised == [signal.SIGUSR2]


def test_a_second_job_on_a_run_being_trained_is_refused_with_who_trains_it(tmp_path, monkeypatch):
    from harness.campaign import jobs
    from harness.campaign.state import FileLock

    for name, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "8", "SLURM_JOB_NUM_NODES": "1",
                        "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "1",
                        "SLURM_JOB_NODELIST": "node-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    started = []
    monkeypatch.setattr(jobs.launch, "start", lambda *a, **k: started.append(a))
    output = tmp_path / "runs" / "run"
    output.mkdir(parents=True)
    with FileLock(output / ".job-node0.lock", "job 7 on node-1 (pid 99)"):
        with pytest.raises(jobs.RunInUseError, match=r"run folder .*/runs/run is being trained by job 7 on node-1"):
            jobs.TrainingJob(["--recipe", "lenet_mnist"], str(output), 1, {})()
    assert started == []  # nothing was launched


# --------------------------------------------------------------------------- following jobs without accounting

NO_ACCOUNTING = "#!/bin/sh\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n"


def fake_squeue(folder: Path, listed: str) -> None:
    """sacct as on a cluster without accounting; squeue that lists `listed` (lines JOBID|STATE)."""
    for name, text in {"sacct": NO_ACCOUNTING, "squeue": f"#!/bin/sh\nprintf '{listed}'\n"}.items():
        (folder / name).write_text(text)
        (folder / name).chmod(stat.S_IRWXU)


@pytest.mark.parametrize(("listed", "done", "state"), [
    ("4242|RUNNING\\n", False, "RUNNING"),
    ("4242|CANCELLED\\n", True, "CANCELLED"),
    ("", True, "ENDED"),  # slurmctld forgot it: it ended more than MinJobAge ago
])  # fmt: skip
def test_without_accounting_a_job_is_followed_with_squeue(tmp_path, monkeypatch, listed, done, state):
    import submitit

    from harness.campaign.slurm import CampaignSlurmJob, Watcher

    bin_dir = fake_slurm(tmp_path)
    fake_squeue(bin_dir, listed)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(CampaignSlurmJob, "watcher", Watcher())
    monkeypatch.setattr(submitit.SlurmJob, "watcher", submitit.slurm.slurm.SlurmInfoWatcher())
    folder = tmp_path / "submitit" / "%j"
    ours, submitits = CampaignSlurmJob(folder=folder, job_id="4242"), submitit.SlurmJob(folder=folder, job_id="4242")
    assert ours.done(force_check=True) is done and ours.state == state
    assert submitits.done(force_check=True) is False and submitits.state == "UNKNOWN"  # sacct's error, forever


def test_wait_returns_for_a_job_cancelled_before_it_could_write_a_result(tmp_path, monkeypatch, capsys):
    """A job cancelled while pending: no result, and sacct disabled. --wait ends with the run cancelled (exit 3)."""
    from harness.campaign.slurm import CampaignSlurmJob, Watcher

    bin_dir = fake_slurm(tmp_path)
    fake_squeue(bin_dir, "4242|CANCELLED\\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(CampaignSlurmJob, "watcher", Watcher())
    monkeypatch.setattr(CampaignSlurmJob, "_results_timeout_s", 0)
    path = write_campaign(tmp_path, text=yaml.safe_dump({**SLURM_CAMPAIGN, "launch": {}, "slurm": {"time": 60}}))
    assert main([str(path), "--wait"]) == 3
    out = capsys.readouterr().out
    assert "cancelled (run the campaign again to resume it)" in out and "1 run(s) cancelled" in out
    (run,) = json.loads((tmp_path / "out" / "campaign.json").read_text())["runs"]
    assert run["status"] == "cancelled" and run["launches"][0]["outcome"] == "cancelled"


def test_a_cancelled_run_stays_cancelled_though_its_folder_says_stopped_on_a_signal(tmp_path):
    from harness.campaign.state import RunState

    run_dir = tmp_path / "runs" / "r" / "r-20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text("{}")
    (run_dir / "attempts.json").write_text(json.dumps({"attempts": [{"stopped": "signal SIGTERM"}]}))
    state = RunState("r", {}, status="running", launches=[{}])
    state.ended(tmp_path, 0, None, cancelled=True)
    assert state.status == "cancelled" and state.launches[-1]["outcome"] == "cancelled"
    state.observe(tmp_path)
    assert state.status == "cancelled"
    state.status = "running"
    state.ended(tmp_path, 0, None)
    assert state.status == "preempted"


# --------------------------------------------------------------------------- the time limit against the warning


@pytest.mark.parametrize(("time", "start_s", "refused", "warned"), [
    (1, 0.0, "slurm.time=1 min leaves a job no time to train: submitit signals each job 90 s before its time "
             "limit; give at least 3 min", None),
    (2, 0.0, None, "slurm.time=2 min leaves about 30 s of each job to train"),
    (3, 0.0, None, None),
    (3, 95.0, "slurm.time=3 min leaves a job no time to train: submitit signals each job 90 s before its time limit "
              "and a run takes about 95 s to start (--plan's estimate); give at least 7 min", None),
    (5, 95.0, None, "leaves about 115 s of each job to train"),
])  # fmt: skip
def test_a_time_limit_barely_above_the_signal_lead_is_refused_or_warned_of(time, start_s, refused, warned):
    from harness.campaign.plan import time_limit_notes
    from harness.campaign.spec import Campaign
    from harness.config import ConfigError

    campaign = Campaign.model_validate({**TINY, "executor": "slurm", "slurm": {"time": time}})
    if refused:
        with pytest.raises(ConfigError) as e:
            time_limit_notes(campaign, start_s)
        assert str(e.value) == refused
    else:
        notes = time_limit_notes(campaign, start_s)
        assert (notes == []) if warned is None else (len(notes) == 1 and warned in notes[0])
    assert time_limit_notes(Campaign.model_validate(TINY), 1000.0) == []  # local: no time limit


def test_a_slurm_campaign_whose_kept_estimate_starts_slower_than_its_time_limit_allows_is_refused(
    tmp_path, capsys, monkeypatch
):
    from harness.campaign.grid import expand_grid
    from harness.campaign.plan import estimate_folder
    from harness.campaign.spec import read_campaign

    monkeypatch.setenv("PATH", f"{fake_slurm(tmp_path)}{os.pathsep}{os.environ['PATH']}")  # SLURM or not here
    path = write_campaign(tmp_path, executor="slurm", slurm={"time": 3})
    root, campaign = tmp_path / "out", read_campaign(path)
    for spec in expand_grid(campaign, path)[:1]:
        folder = estimate_folder(root, campaign, spec) / "estimate-x"
        folder.mkdir(parents=True)
        (folder / "estimate.json").write_text(json.dumps({"startup_s": 95.0, "total_s": 10.0}))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: slurm.time=3 min leaves a job no time to train: submitit signals each job 90 s before its time limit "
        "and a run takes about 95 s to start (--plan's estimate); give at least 7 min\n"
    )
    assert not (root / "campaign.json").exists()


@pytest.mark.slow
def test_the_start_up_an_estimate_records_is_the_time_since_its_process_started():
    code = "import time; time.sleep(1.0); from harness.estimate import process_age_s; print(process_age_s())"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert 1.0 <= float(found.stdout) < 120


@pytest.mark.slow
def test_a_stop_signal_reaches_a_training_process_still_starting_once_it_catches_it(tmp_path):
    """A SLURM job's launcher starts with the stop signals blocked, as its training process then does until it sets
    its handlers (and lifts the block): the signal is passed on once, when it is caught."""
    import signal

    from harness.campaign import launch

    child = (
        "import signal, sys, time; time.sleep(1.5); got = []; "
        "signal.signal(signal.SIGUSR1, lambda *a: got.append(1)); "
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1]); time.sleep(2); print(len(got))"
    )
    launcher = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {child!r}]))"
    with (tmp_path / "log").open("w") as log:
        process = launch.start([sys.executable, "-c", launcher], {}, log, shielded=True)
        stops = launch.StopRequests(())
        stops.received.append(signal.SIGUSR1)  # as the job received it, before the training process started
        assert stops.wait(process, interval=0.1) == 0
    assert (tmp_path / "log").read_text() == "1\n"  # delivered once, after its handler was set


@pytest.mark.slow
def test_a_shielded_launcher_outlives_slurms_signals_and_the_run_lifts_the_block(tmp_path):
    """SLURM signals every process of a job step: the launcher, started with the stop signals blocked, lives on
    (accelerate's one-process launcher would die of SIGUSR2, or kill its training process 5 s after SIGTERM); the
    run's own handlers take them once `harness.preemption.stop_signals` lifts the block."""
    import signal

    from harness.campaign import launch

    child = (
        "import os, signal, time\nfrom harness.preemption import stop_signals\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\n"  # sent while blocked: it waits
        "with stop_signals() as flag:\n    time.sleep(0.2)\n    print(signal.Signals(flag.signum).name, flush=True)\n"
    )
    with (tmp_path / "log").open("w") as log:
        process = launch.start([sys.executable, "-c", child], {"PYTHONPATH": str(ROOT)}, log, shielded=True)
        time.sleep(0.5)
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            process.send_signal(signum)  # before the run's handlers: held, not fatal
        assert process.wait(timeout=120) == 0
    # All three waited; Linux delivers pending signals lowest number first, and the run records the first.
    assert (tmp_path / "log").read_text().strip() == "SIGUSR1"


def test_the_documented_slurm_conf_is_the_one_the_test_cluster_writes():
    import re

    from tests.scripts.slurm_cluster import SLURM_CONF

    page = (ROOT / "docs" / "guide" / "campaigns.md").read_text()
    block = re.search(r"<!-- slurm.conf:start -->\n```\n(.*?)```\n<!-- slurm.conf:end -->", page, flags=re.S)
    assert block, "docs/guide/campaigns.md has no slurm.conf block"
    node = dict(re.findall(r"(CPUs|RealMemory)=(\d+)", block.group(1)))
    expected = SLURM_CONF.format(
        folder="/tmp/slurm", cpus=node["CPUs"], memory=node["RealMemory"], ctld_port=6817, slurmd_port=6818
    )
    assert block.group(1) == expected
