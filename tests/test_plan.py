"""The typed plan: argv -> RunOptions -> plan() -> RunSpec, without a process, a device or a file written."""

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from harness.arguments import build_parser, parse_options
from harness.campaign.checks import plan_runs
from harness.campaign.grid import GridRun
from harness.config import ConfigError
from harness.plan import RunOptions, RunSpec, plan


def test_the_parser_defaults_are_the_options_defaults():
    parsed = parse_options([])
    assert parsed == RunOptions()


def test_the_saved_options_read_back_as_the_same_options(tmp_path):
    options = parse_options(
        ["--recipe", "rsb_a3", "--set", "lr=0.01", "--set", "epochs=3", "--data-dir", str(tmp_path), "--seed", "7"]
    )
    saved = json.loads(json.dumps(options.saved()))  # as run.json holds them
    assert saved["set"] == ["lr=0.01", "epochs=3"] and "overrides" not in saved
    assert "resume" not in saved and "force" not in saved
    assert RunOptions.from_saved(saved) == options


def test_every_run_option_is_a_command_line_option():
    dests = {action.dest for action in build_parser()._actions}
    names = {"set" if f.name == "overrides" else f.name for f in dataclasses.fields(RunOptions)}
    assert names <= dests, names - dests


def test_plan_writes_nothing_and_resolves_the_recipe(tmp_path):
    options = RunOptions(recipe="rsb_a3", budget="smoke", output=tmp_path / "runs", overrides=("lr=0.004",))
    spec = plan(options, world=1)
    assert isinstance(spec, RunSpec)
    assert not (tmp_path / "runs").exists()
    assert spec.published.name == "rsb_a3" and spec.recipe.lr == 0.004 and spec.published.lr != 0.004
    assert spec.given == {"lr": "--set"}
    assert spec.dataset == "digits" and spec.budget == "smoke"
    assert spec.route.path in ("memory", "workers")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.budget = "full"


def test_epochs_and_batch_size_options_are_named_as_what_set_them():
    spec = plan(parse_options(["--recipe", "rsb_a3", "--budget", "smoke", "--epochs", "2", "--set", "lr=0.01"]))
    assert spec.given == {"lr": "--set", "epochs": "--epochs"}
    assert spec.recipe.epochs == 2


def test_the_world_is_the_argument_not_the_environment(monkeypatch):
    options = parse_options(["--recipe", "rsb_a3", "--budget", "smoke", "--batch-size", "64", "--micro-batch", "32"])
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert plan(options, world=2).recipe.batch_size == 64
    with pytest.raises(ConfigError, match="micro-batch 32"):
        plan(options, world=4)  # 64 over 4 processes is 16 each, which a micro-batch of 32 cannot split
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="micro-batch 32"):
        plan(options)


def _jpeg_folder(root: Path) -> Path:
    """train/ and val/ class folders of small JPEGs, as an ImageNet folder holds them."""
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (40, 40), (200, 10, 10) if name == "a" else (10, 10, 200)).save(
                root / split / name / "0.jpg"
            )
    return root


def test_an_evaluation_refuses_the_options_only_training_uses(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    folder = _jpeg_folder(tmp_path / "images")
    base = ["--recipe", "rsb_a3", "--dataset", "folder", "--data-dir", str(folder), "--eval-only"]
    for extra, flag in (
        (["--save-weights", str(tmp_path / "out.safetensors")], "--save-weights"),
        (["--decode-on", "device"], "--decode-on device"),
    ):
        options = parse_options([*base, "--pretrained-file", str(weights), *extra])
        with pytest.raises(ConfigError, match=f"--eval-only trains nothing, so {flag} cannot go with it"):
            plan(options, world=1)


def test_a_campaign_plans_each_run_as_the_command_line_does(tmp_path):
    argv = ("--recipe", "rsb_a3", "--budget", "smoke", "--batch-size", "64", "--micro-batch", "32")
    runs = [GridRun("a", {}, argv, "a")]
    (spec,) = plan_runs(runs, tmp_path, processes=2)
    assert spec == plan(parse_options([*argv, "--output", str(tmp_path / "runs" / "a")]), world=2)
    with pytest.raises(ConfigError, match="^run a: .*micro-batch 32"):
        plan_runs(runs, tmp_path, processes=4)
