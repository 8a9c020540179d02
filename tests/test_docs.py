"""The documentation site: generated pages in sync with the code, a strict build, and a README that stays short."""

import argparse
import os
import re
import subprocess
import sys

import pytest

from harness import docgen
from tests.conftest import ROOT


def test_the_generated_pages_are_what_the_generator_writes_now(tmp_path):
    written = docgen.write_pages(tmp_path)
    stale = [
        p.relative_to(tmp_path)
        for p in written
        if p.read_text() != (ROOT / "docs" / p.relative_to(tmp_path)).read_text()
    ]
    assert not stale, f"run python -m harness.docgen: {stale} differ from the code"
    committed = {p.name for p in (ROOT / "docs" / "recipes").glob("*.md")}
    assert committed == {p.name for p in (tmp_path / "recipes").glob("*.md")}, "a recipe page without its recipe"
    mkdocs_yml = (ROOT / "mkdocs.yml").read_text()
    assert docgen.with_recipes_nav(mkdocs_yml) == mkdocs_yml, "run python -m harness.docgen: the recipes' nav differs"


def test_the_cli_reference_holds_every_option_of_the_three_tools():
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for _, module, builder, _ in docgen.TOOLS:
        for action in docgen._build(module, builder)._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"`{option}" in page or f", {option}" in page, option


def test_every_recipe_page_cites_its_source_and_lists_its_unverified_settings():
    from recipes import get_recipe, list_recipes

    for name in list_recipes():
        recipe = get_recipe(name)
        page = (ROOT / "docs" / "recipes" / f"{name}.md").read_text()
        assert " ".join(recipe.reference.source.split()) in page
        unverified = page.split("## UNVERIFIED settings")[1].split("## Fields")[0]
        assert unverified.count("\n- ") == sum("UNVERIFIED" in note for note in recipe.notes), name


@pytest.mark.slow
def test_mkdocs_builds_strictly(tmp_path):
    # strict: a broken link or anchor, or a page missing from the navigation, is an error (mkdocs.yml's validation)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "recipes" / "rsb_a3" / "index.html").is_file()
    assert (tmp_path / "site" / "benchmarks" / "index.html").is_file()


def test_the_readme_is_a_front_page_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "../" not in readme, "README.md names a path outside the repository"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).resolve().is_relative_to(ROOT.resolve()), target
            assert (ROOT / target).exists(), f"README.md links to {target}, which is not in the repository"


def _summary_keys() -> set[str]:
    """Every key a summary.json can hold, read from the types that write it (harness/records.py): a training
    run's record and an --eval-only one."""
    from harness.records import EvalRecord, RunRecord

    return set(RunRecord.model_fields) | set(EvalRecord.model_fields)


def test_the_run_record_page_names_every_summary_field_and_metrics_column():
    from harness.results import METRIC_COLUMNS

    page = (ROOT / "docs" / "reference" / "run-record.md").read_text()
    keys = _summary_keys()
    assert {"eval_top1", "fidelity", "attempts", "eval_only", "skipped_images", "plots"} <= keys  # the reader works
    missing = sorted(k for k in keys | set(METRIC_COLUMNS) if f"`{k}`" not in page)
    assert not missing, f"docs/reference/run-record.md does not describe {missing}"


def test_the_run_record_page_holds_the_field_tables_of_the_record_schemas():
    page = (ROOT / "docs" / "reference" / "run-record.md").read_text()
    assert docgen.with_record_fields(page) == page, "run python -m harness.docgen: the record field tables differ"
    assert docgen.record_fields_section() in page
    for name in ("`differences`", "`notes`", "`estimate.json`", "`synthetic_data`", "`created_at`"):
        assert name in page, name
