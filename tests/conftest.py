import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState, GradientState

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run harness/run.py as a user would, in a fresh interpreter (`env`: variables added to this one's)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "harness" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=None if env is None else {**os.environ, **env},
    )


def accelerate_command(processes: int) -> list[str]:
    """`accelerate launch` of `processes` processes on this machine's CPU, without a config file.

    accelerate's launcher starts several processes only with --multi_gpu; without CUDA the harness asks accelerate
    for the CPU, and the processes form a gloo group."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    placement = "--multi_gpu" if processes > 1 else "--cpu"
    return [accelerate, "launch", placement, "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def launch_script(
    processes: int, script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`script` (a path from the repository root) under `accelerate launch` (`env`: variables added to this one's)."""
    return subprocess.run(
        [*accelerate_command(processes), script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=None if env is None else {**os.environ, **env},
    )


def accelerate_launch(processes: int, *args: str) -> subprocess.CompletedProcess:
    """harness/run.py under `accelerate launch`, its data loaded in the training processes."""
    return launch_script(processes, "harness/run.py", *args, "--workers", "0")


def only_summary(output: Path) -> dict:
    summaries = list(output.rglob("summary.json"))
    assert len(summaries) == 1, summaries
    return json.loads(summaries[0].read_text())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def fresh_accelerator_state():
    """A test that builds its own Accelerator in this process (another precision or device than an earlier one):
    accelerate's shared state is reset around it."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
