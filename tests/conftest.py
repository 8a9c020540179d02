import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run harness/run.py as a user would, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, str(ROOT / "harness" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def only_summary(output: Path) -> dict:
    summaries = list(output.rglob("summary.json"))
    assert len(summaries) == 1, summaries
    return json.loads(summaries[0].read_text())


@pytest.fixture
def cli():
    return run_cli
