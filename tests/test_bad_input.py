"""Bad input: one line on stderr naming what was wrong and what would be right, exit 2, nothing written.

In-process through `harness.run.main` (and `harness.report.cli.main`), as a user's command line reaches them; one
case runs harness/run.py in a fresh interpreter, where nothing else may reach stderr."""

import pytest

from harness.report.cli import main as report_main
from harness.run import main
from tests.conftest import run_cli

CASES = {
    "unknown recipe": (["--recipe", "rsb_a4"], "unknown recipe 'rsb_a4'; did you mean rsb_a3, rsb_a2 or rsb_a1?"),
    "unknown recipe, nothing close": (["--recipe", "vit_b16"], "unknown recipe 'vit_b16'; valid recipes: baseline"),
    "no recipe": ([], "--recipe is required; valid recipes: baseline"),
    "unknown budget": (
        ["--recipe", "rsb_a3", "--budget", "huge"],
        "error: argument --budget: invalid choice 'huge' (choose from full, proxy, smoke); see --help",
    ),
    "unknown dataset": (["--recipe", "rsb_a3", "--dataset", "svhn"], "unknown dataset 'svhn'; valid datasets: digits"),
    "unknown --set key": (["--recipe", "rsb_a3", "--set", "lrr=0.1"], "unknown --set key 'lrr'; did you mean lr?"),
    "unknown --set key, nothing close": (
        ["--recipe", "rsb_a3", "--set", "zzz=0.1"],
        "unknown --set key 'zzz'; valid keys: aa, amp",
    ),
    "ill-typed --set": (["--recipe", "rsb_a3", "--set", "epochs=ten"], "epochs='ten': input should be a valid integer"),
    "missing data dir": (
        ["--recipe", "rsb_a3", "--dataset", "fashion_mnist", "--data-dir", "/nonexistent/fmnist"],
        "--data-dir /nonexistent/fmnist does not exist",
    ),
    "batch larger than the data": (
        ["--recipe", "rsb_a3", "--budget", "smoke", "--batch-size", "4096"],
        "global batch 4096 is larger than the 64 training images",
    ),
}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """harness.run's exit status and what it wrote on stderr."""
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line_and_exit_2(case, tmp_path, capsys):
    args, message = CASES[case]
    out = tmp_path / "runs"
    returncode, stderr = _run([*args, "--output", str(out)], capsys)
    assert returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: "), stderr
    assert message in lines[0]
    assert "Traceback" not in stderr
    assert not list(out.rglob("summary.json"))


@pytest.mark.slow
def test_bad_input_from_the_script_in_a_fresh_interpreter_is_one_clear_line_and_exit_2(tmp_path):
    args, message = CASES["unknown recipe"]
    out = tmp_path / "runs"
    result = run_cli(*args, "--output", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not list(out.rglob("summary.json"))


def test_folder_without_the_expected_layout_is_refused(tmp_path, capsys):
    (tmp_path / "images" / "train").mkdir(parents=True)
    returncode, stderr = _run(["--recipe", "rsb_a3", "--dataset", "folder", "--data-dir", str(tmp_path / "images"),
                               "--output", str(tmp_path / "runs")], capsys)  # fmt: skip
    assert returncode == 2
    assert stderr.strip().endswith(
        f"lacks val/; expected {tmp_path}/images/train/CLASS/*.jpg and {tmp_path}/images/val/CLASS/*.jpg"
    )


def test_unwritable_output_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    returncode, stderr = _run(["--recipe", "rsb_a3", "--budget", "smoke", "--output", str(blocker / "runs")], capsys)
    assert returncode == 2
    assert stderr.startswith("error: cannot create output directory") and "Traceback" not in stderr


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    returncode, stderr = _run(["--resume", str(tmp_path)], capsys)
    assert returncode == 2
    expected = f"error: --resume {tmp_path} is not a run directory (no run.json); pass one from runs/"
    assert stderr.strip() == expected


def test_report_on_a_directory_without_runs_is_refused(tmp_path, capsys):
    returncode = report_main([str(tmp_path)])
    assert returncode == 2 and "no summary.json found" in capsys.readouterr().err
