"""benchmarks/gpu_check.sh as far as a CPU can check it: every command it would run, the wheel folder's contents,
and its refusals."""

import importlib.metadata
import os
import shlex
import subprocess
import sys

import pytest

from benchmarks import gpu_check as check
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


def test_dry_run_installs_from_the_wheel_folder_without_an_index_and_runs_the_check(tmp_path):
    result = gpu_check("--dry-run", "--out", str(tmp_path / "out"), GPU_DIR=str(tmp_path / "gpu"))
    assert result.returncode == 0, result.stderr
    commands = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    install, driver = commands[0], commands[-1]
    assert "-m pip install" in install and "--no-index" in install and f"{tmp_path}/gpu/wheels/*.whl" in install
    assert driver.endswith(
        f" -m benchmarks.gpu_check --data-dir {tmp_path}/gpu/data/fashion-mnist --out {tmp_path}/out "
        f"--timm-train-py {tmp_path}/gpu/pytorch-image-models/train.py"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "gpu").exists()


def test_prepare_dry_run_pins_the_versions_tested_here_for_the_gpu_machines_python(tmp_path):
    result = gpu_check("--prepare", "--dry-run", GPU_DIR=str(tmp_path / "gpu"))
    assert result.returncode == 0, result.stderr
    download = next(line for line in result.stdout.splitlines() if "pip download" in line)
    assert "--only-binary=:all:" in download and "--python-version 3.12" in download and "--no-deps" in download
    for name in ("pydantic", "pydantic-core", "timm"):
        assert f"{name}=={importlib.metadata.version(name)}" in download.split()
    assert "train-images-idx3-ubyte.gz" in result.stdout and "t10k-labels-idx1-ubyte.gz" in result.stdout


def test_without_wheels_or_with_an_unknown_option_it_stops_with_one_line(tmp_path):
    missing = gpu_check(GPU_DIR=str(tmp_path / "nothing"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "--prepare" in missing.stderr and not (tmp_path / "nothing").exists()
    unknown = gpu_check("--fast")
    assert unknown.returncode == 2 and unknown.stderr.strip() == (
        "error: unknown option --fast; options: --prepare --dry-run --quick --no-install --out DIR --timm-checkout DIR "
        "--timm-train-py PATH"
    )


def test_dry_run_lists_the_main_job_with_timms_train_py_at_a3s_setting_beside_the_harness_and_the_bare_model(tmp_path):
    result = gpu_check("--dry-run", "--timm-train-py", "/checkout/train.py", GPU_DIR=str(tmp_path / "gpu"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    steps = [line.split()[1] for line in lines if line.startswith("step ")]
    assert steps == ["cuda_tests", "main_job", "policy", "loader", "step", "proxy"]  # the CUDA tests, then the main job
    main_job = lines[lines.index(next(x for x in lines if x.startswith("step main_job"))) :]
    assert "57600 train JPEGs of 500x375 (quality 90)" in main_job[0] and "time updates 25-200" in main_job[0]
    rows = {line.split(": $ ")[0].strip(): line.split(": $ ")[1].split() for line in main_job[1:6]}
    assert rows["harness, decode on the device"][-2:] == ["--decode-on", "device"]
    assert rows["harness, decode in 14 workers"][-2:] == ["--decode-on", "workers"]
    timm = rows["timm train.py, prefetcher, 14 workers"]
    assert timm[1] == "/checkout/train.py" and "--no-prefetcher" not in timm
    for flag, value in [("--model", "resnet50"), ("--img-size", "160"), ("--batch-size", "256"), ("--opt", "lamb"),
                        ("--aa", "rand-m6-mstd0.5-inc1"), ("--mixup", "0.1"), ("--cutmix", "1.0"), ("--workers", "14"),
                        ("--amp-dtype", "bfloat16")]:  # fmt: skip
        assert timm[timm.index(flag) + 1] == value, flag
    assert "--bce-loss" in timm and "--channels-last" in timm
    assert rows["bare model (fixed batch)"][-1] == "bare" and "profile" in main_job[5]
    assert not (tmp_path / "gpu").exists()


def test_dry_run_lists_the_cuda_tests_first_with_their_pytest_command(tmp_path):
    result = gpu_check("--dry-run", GPU_DIR=str(tmp_path / "gpu"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("step "))
    assert lines[first].startswith("step cuda_tests ")
    command = shlex.split(lines[first + 1].split("$ ", 1)[1])
    assert command[1:9] == "-m pytest -m cuda -q -p no:cacheprovider --junitxml=<tmp>/cuda_tests.xml".split()
    assert "tests/test_cuda_decode.py" in command[9:]
    assert all((ROOT / f).is_file() and "pytest.mark.cuda" in (ROOT / f).read_text() for f in command[9:])


def test_the_cuda_step_keeps_counts_and_failing_ids_and_renders_them_first(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_on_the_gpu.py").write_text(
        "import pytest\n"
        "pytestmark = pytest.mark.cuda\n"
        "def test_passes():\n    assert 1 + 1 == 2\n"
        "def test_fails():\n    assert 1 + 1 == 3, 'one and one make two'\n"
        "@pytest.mark.skip(reason='no device here')\n"
        "def test_skipped():\n    pass\n"
    )
    (tests / "test_elsewhere.py").write_text("def test_not_marked_not_collected():\n    raise AssertionError\n")
    result = check.cuda_tests(120, tests)
    assert (result["passed"], result["failed"], result["errors"], result["skipped"]) == (1, 1, 0, 1)
    assert result["exit_status"] == 1 and result["skip_reasons"] == ["no device here"]
    (failing,) = result["failing"]
    assert failing["test"].endswith("::test_fails") and "one and one make two" in failing["message"]
    assert "test_elsewhere" not in result["command"] and "-p no:cacheprovider" in result["command"]
    markdown = check._cuda_tests({"cuda_tests": result})
    assert "1 passed, 1 failed, 0 errors, 1 skipped" in markdown and "test_fails" in markdown


def test_the_cuda_tests_of_this_repository_skip_with_their_reason_without_a_gpu():
    result = check.cuda_tests(300)
    assert result["skipped"] >= 5 and result["passed"] == result["failed"] == result["errors"] == 0
    assert "needs a CUDA device" in result["skip_reasons"]
