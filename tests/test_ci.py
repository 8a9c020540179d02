"""CI runs exactly the test command the README gives users."""

import re

from tests.conftest import ROOT


def _quickstart_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^## Quickstart\n.*?^```\n(.*?)^```", readme, flags=re.S | re.M)
    assert block, "README.md has no Quickstart code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_two_commands_install_and_run_then_test():
    lines = _quickstart_lines()
    assert len(lines) == 2
    assert "harness/run.py --recipe rsb_a3" in lines[0]
    assert "pytest" in lines[1]


def test_ci_runs_the_readmes_test_command_verbatim():
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert script[-1] == _quickstart_lines()[1]
