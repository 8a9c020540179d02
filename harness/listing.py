"""`run.py --list`: the registered recipes with what they reported, as a rich table."""

from rich.console import Console
from rich.table import Table

from recipes import get_recipe, list_recipes


def print_recipes() -> None:
    table = Table(title="registered recipes")
    for column in ("recipe", "model", "dataset", "epochs", "reported top-1", "summary"):
        table.add_column(column)
    for name in list_recipes():
        r = get_recipe(name)
        reported = "—" if r.reference.top1 is None else f"{r.reference.top1:g}"
        if r.reference.unverified:
            reported += " UNVERIFIED"
        table.add_row(name, r.model, r.dataset, str(r.epochs), reported, r.summary)
    Console().print(table)
