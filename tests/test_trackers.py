"""Trackers through accelerate: TensorBoard curves read back from the event files; refusals at planning time."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness.config import ConfigError
from harness.run import main
from harness.trackers import hyper_parameters, parse_log_with
from recipes import get_recipe
from tests.conftest import only_summary


def test_tensorboard_gets_one_eval_point_per_epoch_and_the_train_curves(tmp_path):
    out = tmp_path / "runs"
    argv = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--epochs", "2", "--workers", "0"]
    argv += ["--log-every", "3"]  # read at updates 3, 4 (epoch end), 7, 8 (epoch end)
    assert main([*argv, "--log-with", "tensorboard", "--project", "demo", "--output", str(out)]) == 0
    summary = only_summary(out)
    (run_dir,) = out.iterdir()
    events = EventAccumulator(str(run_dir / "demo"))
    events.Reload()
    top1 = events.Scalars("eval/top1")
    assert [e.step for e in top1] == [4, 8]  # 64 smoke images / batch 16 = 4 updates per epoch
    assert top1[-1].value == pytest.approx(summary["eval_top1"], abs=1e-4)
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [3, 4, 7, 8] and all(e.value > 0 for e in loss)
    assert len(events.Scalars("train/lr")) == 4 and len(events.Scalars("train/img_per_s")) == 4


def test_unknown_or_missing_trackers_are_refused_with_the_install_command():
    assert parse_log_with(None) == [] and parse_log_with("tensorboard,tensorboard") == ["tensorboard"]
    assert "tensorboard" in parse_log_with("all")
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'; valid: all, aim"):
        parse_log_with("tensorboard,tensorbord")
    with pytest.raises(ConfigError, match="the comet-ml package is not installed; pip install comet-ml"):
        parse_log_with("comet_ml")


def test_hyper_parameters_are_the_recipe_as_scalars():
    recipe = get_recipe("rsb_a3")
    params = hyper_parameters(recipe)
    assert params["lr"] == recipe.lr and params["aa"] == recipe.aa and params["scale"] == "(0.08, 1.0)"
    assert params["reference.top1"] == 78.1 and params["bce_target_thresh"] == 0.2
    assert all(isinstance(v, int | float | str | bool) for v in params.values())
