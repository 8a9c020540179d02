"""One run: build the timm objects for a planned recipe, train through accelerate, write the record."""

from __future__ import annotations

from harness import trackers
from harness.assemble import build_run
from harness.attempts import AttemptLog, first_line
from harness.checkpoint import (
    complete_checkpoints,
)
from harness.errors import RUN_ERRORS
from harness.fitting import fit_attempt, make_trainer, open_run_dir
from harness.plan import RunSpec
from harness.preemption import EXIT_PREEMPTED, stop_signals


def train(spec: RunSpec) -> int:
    """Build, fit and record one run; 0 when complete, EXIT_PREEMPTED when stopped on a signal with a checkpoint,
    2 after a non-finite loss. Errors of RUN_ERRORS propagate after the attempt records them."""
    with stop_signals() as signals:
        run = build_run(spec)
        trainer = make_trainer(run)
        run_dir, tracking = open_run_dir(run)
        resumed_from = complete_checkpoints(run_dir)[-1] if spec.resume_dir is not None else None
        attempt = AttemptLog.begin(run.accelerator, run_dir, resumed_from, tracking)
        mlflow_status = "FAILED"
        try:
            status = fit_attempt(run, trainer, run_dir, signals, attempt)
            mlflow_status = {0: "FINISHED", EXIT_PREEMPTED: "KILLED"}.get(status, "FAILED")
        except BaseException as e:
            stopped, exit_status = _failure(e)
            attempt.end(stopped, exit_status)
            raise
        finally:
            trackers.finish(run.accelerator, mlflow_status)
    return status


def _failure(error: BaseException) -> tuple[str, int | None]:
    """How an attempt that raised ended: its one line and the exit status the process will have."""
    if isinstance(error, RUN_ERRORS):
        return f"error: {first_line(error)}", 2
    if isinstance(error, Exception):
        return f"error: {type(error).__name__}: {first_line(error)}", 1
    return f"error: {type(error).__name__}", None  # KeyboardInterrupt, SystemExit: the status is not ours
