"""Trackers through accelerate: TensorBoard curves read back from the event files, MLflow runs read back with
MLflow's own client; refusals at planning time and trackers that do not start."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness.config import ConfigError
from harness.run import main
from harness.trackers import hyper_parameters, parse_log_with
from recipes import get_recipe
from tests.conftest import only_summary


@pytest.mark.slow
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


SMOKE = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--epochs", "2", "--workers", "0"]


def _mlflow_run(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    (found,) = [e for e in client.search_experiments() if e.name == experiment]
    (run,) = client.search_runs([found.experiment_id])
    return client, run


def _assert_logged(client, run, run_dir) -> None:
    """Params are the recipe's; eval top-1 once per epoch at the update it ended on (4 an epoch), the last equal to
    the record's; the train curves at each read (every 3 updates and at each epoch's end)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    recipe = json.loads((run_dir / "recipe.json").read_text())
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert float(run.data.params["lr"]) == recipe["lr"] and run.data.params["model"] == "seed_cnn_fmnist"
    assert run.data.params["reference.top1"] == str(recipe["reference"]["top1"])
    top1 = client.get_metric_history(run.info.run_id, "eval/top1")
    assert [m.step for m in top1] == [4, 8]
    assert top1[-1].value == pytest.approx(summary["eval_top1"], abs=1e-4)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [3, 4, 7, 8]


@pytest.mark.slow
def test_mlflow_logs_into_a_sqlite_database_in_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "runs"
    argv = [*SMOKE, "--log-every", "3", "--log-with", "mlflow", "--project", "demo", "--output", str(out)]
    assert main(argv) == 0
    (run_dir,) = out.iterdir()
    client, run = _mlflow_run(f"sqlite:///{run_dir / 'mlflow.db'}", "demo")
    _assert_logged(client, run, run_dir)
    (attempt,) = only_summary(out)["attempts"]
    assert attempt["trackers"]["mlflow"] == {
        "tracking_uri": f"sqlite:///{(run_dir / 'mlflow.db').resolve()}",
        "run_id": run.info.run_id,
    }


@pytest.mark.slow
def test_mlflow_logs_into_the_store_the_environment_names(tmp_path, monkeypatch):
    shared = tmp_path / "campaign" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared}")
    out = tmp_path / "runs"
    argv = [*SMOKE, "--log-every", "3", "--log-with", "mlflow", "--project", "ladder", "--output", str(out)]
    assert main(argv) == 0
    (run_dir,) = out.iterdir()
    assert not (run_dir / "mlflow.db").exists()
    client, run = _mlflow_run(f"sqlite:///{shared}", "ladder")
    _assert_logged(client, run, run_dir)
    assert client.get_experiment(run.info.experiment_id).artifact_location == str(shared.parent / "mlartifacts")


def test_a_tracker_that_does_not_start_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())  # MLflow 3 refuses its file store
    out = tmp_path / "new" / "runs"
    assert main([*SMOKE, "--log-with", "mlflow", "--output", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: --log-with mlflow: a tracker did not start with MLFLOW_TRACKING_URI=file://")
    assert "filesystem tracking backend" in lines[0]
    assert not (tmp_path / "new").exists()
