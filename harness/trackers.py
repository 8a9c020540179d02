"""Experiment trackers through accelerate: TensorBoard, W&B, MLflow and the others accelerate knows.

The main process logs the resolved recipe as hyper-parameters, the train loss, LR and img/s at each log interval
(`Trainer.on_log`) and the eval metrics once per epoch. Trackers write under the run directory and offline unless
configured otherwise: W&B in offline mode (set WANDB_MODE=online to sync), MLflow into the SQLite database
RUN_DIR/mlflow.db (MLflow 3 refuses its old file store) unless MLFLOW_TRACKING_URI names another store, where a
campaign gathers its runs. A resumed run continues its MLflow run. A tracker that does not start is a one-line
ConfigError, raised before anything is written into the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

from harness.config import ConfigError
from recipes import Recipe

# The PyPI package each tracker needs, for the install command in a refusal.
PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet-ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}
DEFAULT_PROJECT = "recipe-harness"


def parse_log_with(text: str | None) -> list[str]:
    """`--log-with a,b` (or `all`) to tracker names accelerate accepts; unknown or uninstalled ones are refused."""
    if not text:
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    available = [str(t) for t in get_available_trackers()]
    if "all" in names:
        if not available:
            raise ConfigError("--log-with all: no tracker package is installed; pip install tensorboard")
        return available
    valid = sorted(LOGGER_TYPE_TO_CLASS)
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(f"--log-with: unknown tracker {name!r}; valid: all, {', '.join(valid)}")
        if name not in available:
            package = PACKAGES.get(name, name)
            raise ConfigError(f"--log-with {name}: the {package} package is not installed; pip install {package}")
    return list(dict.fromkeys(names))


def hyper_parameters(recipe: Recipe) -> dict[str, int | float | str | bool]:
    """The recipe flattened to the scalar values every tracker accepts (TensorBoard's hparams is the strictest)."""
    flat: dict[str, int | float | str | bool] = {}
    for key, value in recipe.to_dict().items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in items:
            name = f"{key}.{sub}" if sub else key
            flat[name] = v if isinstance(v, int | float | str | bool) else str(v)
    return flat


def start(
    accelerator: Accelerator,
    run_dir: Path,
    project: str | None,
    recipe: Recipe,
    earlier: list[dict] | None = None,
    continue_run: bool = True,
) -> dict:
    """Point the trackers at the run directory and open them with the recipe as hyper-parameters; return what a
    later attempt needs to continue them (MLflow's tracking URI and run id). `earlier` are the run's attempts so
    far; `continue_run=False` (a forced resume that changes the recipe) opens a new MLflow run instead."""
    if not accelerator.log_with:
        return {}
    # The run directory is created after the Accelerator, so the logging directory is set here.
    accelerator.project_configuration.project_dir = str(run_dir)
    accelerator.project_configuration.logging_dir = str(run_dir)
    names = {str(t) for t in accelerator.log_with}
    wandb_mode = os.environ.get("WANDB_MODE", "offline")
    init_kwargs = {"wandb": {"dir": str(run_dir), "name": run_dir.name, "mode": wandb_mode}}
    uri = mlflow_tracking_uri(run_dir)
    if "mlflow" in names:
        init_kwargs["mlflow"] = _mlflow_setup(uri, run_dir, earlier or [], continue_run)
    try:
        accelerator.init_trackers(project or DEFAULT_PROJECT, config=hyper_parameters(recipe), init_kwargs=init_kwargs)
    except Exception as e:  # each tracker raises its own types
        store = f" with MLFLOW_TRACKING_URI={uri}" if "mlflow" in names else ""
        raise ConfigError(
            f"--log-with {','.join(sorted(names))}: a tracker did not start{store} ({type(e).__name__}: {_gist(e)})"
        ) from None
    if "mlflow" not in names or not accelerator.is_main_process:
        return {}
    run_id = accelerator.get_tracker("mlflow", unwrap=True).info.run_id
    return {"mlflow": {"tracking_uri": uri, "run_id": run_id}}


def _gist(error: Exception, limit: int = 300) -> str:
    """The first line of an error, cut after its last whole sentence within `limit` characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind(". ") + 1] if ". " in cut else cut + "..."


def mlflow_tracking_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI if set (a campaign's shared database), else the run's own SQLite database."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"


def _mlflow_setup(uri: str, run_dir: Path, earlier: list[dict], continue_run: bool) -> dict:
    """MLflow's init arguments for accelerate; the tracking URI is set here (accelerate uses MLflow's global one)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    kwargs = {"run_name": run_dir.name}
    if uri.startswith("sqlite:///"):  # a new experiment keeps its artifacts beside the database
        kwargs["logging_dir"] = str(Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts")
    previous = [a["trackers"]["mlflow"] for a in earlier if a.get("trackers", {}).get("mlflow")]
    if continue_run and previous and previous[-1]["tracking_uri"] == uri:
        kwargs["run_id"] = previous[-1]["run_id"]
    return kwargs


def train_logger(accelerator: Accelerator):
    """The `Trainer.on_log` callback: (num_updates, {"train/loss": ..., "train/lr": ..., "train/img_per_s": ...})."""
    if not accelerator.log_with:
        return None

    def on_log(num_updates: int, values: dict) -> None:
        accelerator.log(values, step=num_updates)

    return on_log


def log_epoch(accelerator: Accelerator, row: dict, num_updates: int) -> None:
    """The eval metrics of one epoch, at the update count the epoch ended on."""
    if not accelerator.log_with:
        return
    values = {"epoch": row["epoch"], "train/epoch_loss": row["train_loss"]}
    values.update({f"eval/{k.removeprefix('eval_')}": row[k] for k in ("eval_loss", "eval_top1", "eval_top5")})
    if "eval_top1_ema" in row:
        values["eval/top1_ema"] = row["eval_top1_ema"]
    accelerator.log(values, step=num_updates)


def finish(accelerator: Accelerator, mlflow_status: str = "FINISHED") -> None:
    """Close the trackers; MLflow marks a run stopped on a signal KILLED and one that failed FAILED."""
    if not accelerator.log_with:
        return
    if mlflow_status != "FINISHED" and accelerator.is_main_process and accelerator.trackers:
        if "mlflow" in {str(t) for t in accelerator.log_with}:
            import mlflow

            mlflow.end_run(status=mlflow_status)
    accelerator.end_training()
