"""The campaign's outcome: its runs' statuses (failed ones with the last line of their error), and one report over
its finished runs (report.md, comparison.png and results.csv in the campaign root) rendered by harness.report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.campaign.spec import Campaign
from harness.campaign.state import STATE, STATUSES, RunState
from harness.report import load_records, write_report_files


def status_frame(states: list[RunState]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": s.id,
                "status": s.status,
                "top-1": "" if s.eval_top1 is None else f"{s.eval_top1:.2f}",
                "attempts": len(s.attempts) or "",
                "job": s.job_id or "",
                "error": s.error or "",
            }
            for s in states
        ]
    )


def counts_line(states: list[RunState]) -> str:
    counts = [f"{sum(s.status == status for s in states)} {status}" for status in STATUSES]
    return f"{len(states)} runs: " + ", ".join(c for c in counts if not c.startswith("0 "))


def print_summary(states: list[RunState]) -> None:
    print()
    print(status_frame(states).to_markdown(index=False, tablefmt="simple", disable_numparse=True))
    print(counts_line(states))


def campaign_markdown(campaign: Campaign, path: Path, states: list[RunState]) -> str:
    """The report's opening: where the campaign comes from, and every run's status."""
    table = status_frame(states).to_markdown(index=False, disable_numparse=True)
    return (
        f"# Campaign {campaign.name}\n\nFrom `{path}`, executor {campaign.executor}; {counts_line(states)}. Each run's "
        f"state is in `{STATE}`, its record under `runs/RUN/`.\n\n{table}\n\n"
    )


def write_campaign_report(campaign: Campaign, path: Path, root: Path, states: list[RunState]) -> list[Path]:
    """report.md, comparison.png and results.csv in the root, over the finished runs of the campaign's grid."""
    finished = {s.run_dir for s in states if s.status == "done"}
    runs = root / "runs"
    records = [r for r in (load_records(runs) if runs.is_dir() else []) if f"runs/{r.run_dir}" in finished]
    return write_report_files(root, records, runs, campaign_markdown(campaign, path, states))
