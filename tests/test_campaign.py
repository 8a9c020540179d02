"""Campaign files refused before anything starts, and the SLURM job a campaign submits, read without a cluster."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from harness.campaign.cli import main
from harness.campaign.launch import RUN_PY
from harness.campaign.rundirs import last_error_line
from harness.campaign.spec import slurm_minutes

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
