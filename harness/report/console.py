"""Frames -> the console: the comparison table as a rich table, and a console wide enough for it in a log."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from harness.report.frames import comparison_frame
from harness.report.markdown import table_frame
from harness.report.records import RecordLike

# Differences the console table shows under a "not comparable" row; the rest are in each run's summary.json.
CONSOLE_DIFFERENCES = 3


def rich_table(records: Iterable[RecordLike], differences_shown: int = CONSOLE_DIFFERENCES) -> Table:
    """The comparison table; under a "not comparable" row, its first few differences and where the rest are."""
    table = Table(title="measured vs reported")
    frame = comparison_frame(records)
    shown = table_frame(frame)
    for column in shown.columns:
        table.add_column(column)
    blank = [""] * (len(shown.columns) - 1)
    for (_, row), cells in zip(frame.iterrows(), shown.itertuples(index=False), strict=True):
        table.add_row(*[str(v) for v in cells])
        if row["verdict"] != "not comparable":
            continue
        for line in row["fidelity"][:differences_shown]:
            table.add_row(f"  {line}", *blank, style="dim")
        rest = len(row["fidelity"]) - differences_shown
        if rest > 0:
            table.add_row(f"  ... {rest} more in summary.json (fidelity)", *blank, style="dim italic")
    return table


def wide_console() -> Console:
    """A terminal keeps its own width; a log file gets room for the whole table."""
    console = Console()
    return console if console.is_terminal else Console(width=200)
