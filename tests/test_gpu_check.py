"""benchmarks/gpu_check.sh as far as a CPU can check it: every command it would run, the wheel folder's contents,
and its refusals."""

import importlib.metadata
import os
import subprocess
import sys

from tests.conftest import ROOT


def gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, "PYTHON": sys.executable, **env},
    )


def test_dry_run_installs_from_the_wheel_folder_without_an_index_and_runs_the_check(tmp_path):
    result = gpu_check("--dry-run", "--out", str(tmp_path / "out"), GPU_DIR=str(tmp_path / "gpu"))
    assert result.returncode == 0, result.stderr
    commands = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    install, driver = commands[0], commands[-1]
    assert "-m pip install" in install and "--no-index" in install and f"{tmp_path}/gpu/wheels/*.whl" in install
    assert driver.endswith(f"benchmarks/gpu_check.py --data-dir {tmp_path}/gpu/data/fashion-mnist --out {tmp_path}/out")
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
        "error: unknown option --fast; options: --prepare --dry-run --quick --no-install --out DIR"
    )
