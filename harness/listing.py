"""`run.py --list` and `--show NAME`: the registered recipes (and recipe files) with what they reported, as plain
aligned text that never cuts a name (at any terminal width, and through a pipe), and one recipe in full.

The published recipes come first; the experiments of the five seed reports (recipes/reports.py) apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from tabulate import tabulate

from recipes import Recipe, get_recipe, list_recipes
from recipes._base import NON_SETTING_FIELDS

if TYPE_CHECKING:
    from harness.recipe_files import Resolved

COLUMNS = ("recipe", "model", "dataset", "epochs", "reported top-1", "summary")
REPORTS_SECTION = "seed-report experiments (recipes/reports.py: the experiments of the five seed reports)"
REPORT_SOURCE = "Seed report "


def _reported(recipe: Recipe) -> str:
    reported = "-" if recipe.reference.top1 is None else f"{recipe.reference.top1:g}"
    return reported + (" UNVERIFIED" if recipe.reference.unverified else "")


def is_report_experiment(recipe: Recipe) -> bool:
    """An experiment of one of the five seed reports (recipes/reports.py): its source is the report."""
    return recipe.reference.source.startswith(REPORT_SOURCE)


def report_experiments() -> list[str]:
    """The registered recipes that are seed-report experiments."""
    return [name for name in list_recipes() if is_report_experiment(get_recipe(name))]


def _row(name: str, recipe: Recipe, published: Recipe) -> list[str]:
    return [name, recipe.model, recipe.dataset, str(recipe.epochs), _reported(published), recipe.summary]


def _section(title: str, rows: list[list[str]]) -> str:
    return f"{title}\n\n{tabulate(rows, headers=COLUMNS, tablefmt='simple', disable_numparse=True)}\n"


def recipes_text(files: list[Resolved] = ()) -> str:
    """The registered recipes in two sections (published, seed-report experiments), and the recipe files."""
    from_reports = set(report_experiments())
    published = [_row(n, get_recipe(n), get_recipe(n)) for n in list_recipes() if n not in from_reports]
    experiments = [_row(n, get_recipe(n), get_recipe(n)) for n in list_recipes() if n in from_reports]
    sections = [_section("published recipes", published), _section(REPORTS_SECTION, experiments)]
    if files:
        rows = [_row(f"{f.recipe.name} ({f.path})", f.recipe, f.published) for f in files]
        sections.append(_section("recipe files", rows))
    return "\n".join(sections) + "\nshow one recipe in full: --show NAME\n"


def print_recipes(files: list[Resolved] = ()) -> None:
    print(recipes_text(files), end="")


def show_recipe(resolved: Resolved) -> str:
    """A recipe in full: its summary, what was reported and where, its notes (UNVERIFIED ones apart) and fields."""
    recipe, ref = resolved.recipe, resolved.published.reference
    reported = ", ".join(
        [f"top-1 {ref.top1:g}"] * (ref.top1 is not None)
        + [f"top-5 {ref.top5:g}"] * (ref.top5 is not None)
        + [f"{key} {value:g}" for key, value in ref.others]
    )
    lines = [f"{recipe.name}: {recipe.summary}"]
    if resolved.path is not None:
        lines.append(f"file: {resolved.path}")
    if resolved.published is not recipe:
        lines.append(f"compared with: {resolved.published.name} ({resolved.published_source})")
    lines.append(f"reported: {reported or 'no number'} on {ref.dataset}" + (" (UNVERIFIED)" * ref.unverified))
    lines.append(f"source: {ref.source}")
    if ref.note:
        lines.append(f"note: {ref.note}")
    unverified = [n for n in recipe.notes if "UNVERIFIED" in n]
    for title, notes in (("notes", [n for n in recipe.notes if n not in unverified]), ("UNVERIFIED", unverified)):
        if notes:
            lines += [f"{title}:", *(f"  - {n}" for n in notes)]
    fields = {k: v for k, v in recipe.to_dict().items() if k not in NON_SETTING_FIELDS}
    fields = yaml.safe_load(yaml.safe_dump(fields, sort_keys=False))  # tuples as lists, printed inline below
    text = yaml.safe_dump(fields, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    lines += ["fields:", *(f"  {line}" for line in text.splitlines())]
    return "\n".join(lines) + "\n"
