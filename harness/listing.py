"""`run.py --list`: the registered recipes (and recipe files) with what they reported, as a rich table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from recipes import Recipe, get_recipe, list_recipes

if TYPE_CHECKING:
    from harness.recipe_files import Resolved


def _reported(recipe: Recipe) -> str:
    reported = "—" if recipe.reference.top1 is None else f"{recipe.reference.top1:g}"
    return reported + (" UNVERIFIED" if recipe.reference.unverified else "")


def print_recipes(files: list[Resolved] = ()) -> None:
    table = Table(title="registered recipes" + (" and recipe files" if files else ""))
    for column in ("recipe", "model", "dataset", "epochs", "reported top-1", "summary"):
        table.add_column(column)
    for name in list_recipes():
        r = get_recipe(name)
        table.add_row(name, r.model, r.dataset, str(r.epochs), _reported(r), r.summary)
    for resolved in files:
        r = resolved.recipe
        table.add_row(
            f"{r.name} ({resolved.path})", r.model, r.dataset, str(r.epochs), _reported(resolved.published), r.summary
        )
    Console().print(table)
