"""Recipe files: the same validated Recipe as the registry, a dump that re-runs as it ran, the JSON Schema."""

import dataclasses
import json

import pytest
import yaml

from harness.recipe_files import recipe_yaml, resolve
from harness.run import main
from recipes import Recipe, get_recipe, list_recipes
from recipes._base import recipe_schema
from tests.conftest import ROOT, only_summary

EXAMPLE = ROOT / "recipes" / "examples" / "resnet18_rsb_a3.yaml"


@pytest.mark.parametrize("name", list_recipes())
def test_every_registered_recipe_round_trips_through_json_and_yaml(name):
    recipe = get_recipe(name)
    assert Recipe(**json.loads(json.dumps(recipe.to_dict()))) == recipe
    fields = yaml.safe_load(recipe_yaml(recipe, name))
    assert fields.pop("base") == name and Recipe(**fields, reference=recipe.reference) == recipe


def test_the_documented_example_is_a_valid_recipe_with_its_own_reference():
    resolved = resolve(str(EXAMPLE))
    a3 = get_recipe("rsb_a3")
    assert resolved.published == resolved.recipe  # it cites its own number, so it is its own published setting
    assert resolved.recipe.reference.top1 == 68.25 and "2110.00476" in resolved.recipe.reference.source
    changed = {f.name for f in dataclasses.fields(Recipe) if getattr(a3, f.name) != getattr(resolved.recipe, f.name)}
    assert changed == {"name", "summary", "reference", "notes", "model"}
    page = (ROOT / "docs" / "guide" / "recipe-files.md").read_text()
    assert f"```yaml\n{EXAMPLE.read_text()}```" in page  # the recipe-files page shows it verbatim


def test_the_schema_holds_every_field_with_its_constraints(capsys):
    schema = recipe_schema()
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(Recipe)}
    assert schema["properties"]["hflip"]["maximum"] == 1 and schema["properties"]["epochs"]["exclusiveMinimum"] == 0
    assert schema["additionalProperties"] is False
    assert main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(schema))


@pytest.mark.slow
def test_a_dumped_recipe_reruns_to_the_identical_recipe_json(tmp_path):
    common = ["--budget", "smoke", "--workers", "0"]
    original = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--set", "lr=0.003", "--set", "rotate=5.0", *common]
    dumped = tmp_path / "dumped.yaml"
    assert main([*original, "--dump-recipe", str(dumped), "--output", str(tmp_path / "none")]) == 0
    assert not (tmp_path / "none").exists()  # dumping plans the run and trains nothing
    assert main([*original, "--output", str(tmp_path / "a")]) == 0
    assert main(["--recipe", str(dumped), *common, "--output", str(tmp_path / "b")]) == 0
    (run_a,), (run_b,) = (list((tmp_path / d).iterdir()) for d in ("a", "b"))
    assert (run_a / "recipe.json").read_text() == (run_b / "recipe.json").read_text()
    assert (run_a / "recipe.yaml").read_text() == (run_b / "recipe.yaml").read_text() == dumped.read_text()
    first, again = only_summary(tmp_path / "a"), only_summary(tmp_path / "b")
    assert first["fidelity"] == again["fidelity"] and "lr: 0.001 -> 0.003" in again["fidelity"]
    assert again["reference"] == first["reference"]  # still compared with the published cnn_fmnist


@pytest.mark.slow
def test_a_file_with_its_own_reference_runs_and_renders_its_own_row(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "base.yaml").write_text("name: small_cnn\nbase: cnn_fmnist\ndataset: digits\n")
    (folder / "paper.yaml").write_text(
        "name: my_paper\nbase: base.yaml\nsummary: a paper's small CNN on digits\nepochs: 2\n"
        "reference: {source: 'Doe et al. 2026, Table 2', dataset: digits, top1: 97.5}\nnotes: [from the paper]\n"
    )
    assert main(["--list", "--recipes-dir", str(folder)]) == 0
    listing = capsys.readouterr().out
    assert "my_paper" in listing and "97.5" in listing and "small_cnn" in listing
    out = tmp_path / "runs"
    assert (
        main(
            [
                "--recipe",
                str(folder / "paper.yaml"),
                "--epochs",
                "1",
                "--budget",
                "smoke",
                "--workers",
                "0",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = only_summary(out)
    assert summary["recipe"] == "my_paper" and summary["reference"]["top1"] == 97.5
    assert summary["reference"]["source"] == "Doe et al. 2026, Table 2"
    assert summary["fidelity"][:2] == ["img_size: 28 -> 32", "test_img_size: 28 -> 32"]
    report = next(out.iterdir()) / "report.md"
    row = next(line for line in report.read_text().splitlines() if line.startswith("| my_paper"))
    assert "97.50 [1]" in row and "Doe et al. 2026, Table 2" in report.read_text()
