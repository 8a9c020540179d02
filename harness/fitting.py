"""Fitting a built run: the Trainer's wiring, the resume point, checkpoints at each epoch (and every
--save-every updates), and one attempt from start to its end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness import trackers
from harness.assemble import BuiltRun
from harness.attempts import AttemptLog, read_attempts
from harness.build import (
    build_mixup,
    build_scheduler,
    build_train_loss,
)
from harness.checkpoint import (
    checkpoint_root,
    complete_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from harness.data import (
    UNREADABLE_LOG,
    DataError,
    check_unreadable,
    log_unreadable_to,
)
from harness.data.decode import decode_fallbacks
from harness.data.device import random_erasing
from harness.ema import build_ema, ema_for_evaluation
from harness.engine import NonFiniteLoss, Trainer, fit
from harness.preemption import EXIT_PREEMPTED, SignalFlag, StopAgreement, StopRequested
from harness.publish import write_record
from harness.report import wide_console
from harness.results import (
    write_metrics,
)
from harness.run_dir import shared_run_dir


def make_trainer(run: BuiltRun) -> Trainer:
    recipe, accelerator = run.recipe, run.accelerator
    ema = build_ema(accelerator, run.model, recipe)
    mixup = build_mixup(recipe, run.num_classes)
    scheduler, epochs = build_scheduler(recipe, run.optimizer, len(run.train_loader) // run.batches.accum_steps)
    return Trainer(
        accelerator=accelerator,
        model=run.model,
        optimizer=run.optimizer,
        scheduler=scheduler,
        epochs=epochs,
        train_loss=build_train_loss(recipe, mixup is not None),
        train_loader=run.train_loader,
        eval_loader=run.eval_loader,
        num_classes=run.num_classes,
        global_batch_size=recipe.batch_size,
        mixup=mixup,
        erase=random_erasing(recipe, accelerator.device),
        clip_grad=recipe.clip_grad,
        ema=ema,
        ema_evaluated=ema_for_evaluation(accelerator, ema),
        frozen=run.frozen,
        freeze_epochs=recipe.freeze_epochs,
        early_stop_patience=recipe.early_stop_patience,
        early_stop_min_delta=recipe.early_stop_min_delta,
        accum_steps=run.batches.accum_steps,
        log_every=run.spec.options.log_every,
    )


def resume_state(run: BuiltRun, trainer: Trainer, run_dir: Path) -> dict:
    """Where fitting starts: from scratch, or from the newest complete checkpoint of a resumed run."""
    start = {"epoch": 0, "step_in_epoch": 0, "epoch_loss_sum": 0.0, "elapsed_s": 0.0, "num_updates": 0}
    if run.spec.resume_dir is None:
        return start
    latest = complete_checkpoints(run_dir)[-1]
    start = load_checkpoint(run.accelerator, latest, trainer.scheduler, trainer.ema)
    trainer.num_updates, trainer.history = start["num_updates"], start["history"]
    (run_dir / "summary.json").unlink(missing_ok=True)  # the run is no longer finished
    if run.accelerator.is_main_process:
        wide_console().print(f"resuming from {latest} (epoch {start['epoch'] + 1}, step {start['step_in_epoch']})")
    return start


def fit_run(run: BuiltRun, trainer: Trainer, run_dir: Path, start: dict) -> dict:
    """Train from `start`, checkpointing every epoch (and every --save-every updates); the final evaluation."""
    accelerator = run.accelerator

    def checkpoint(epoch: int, step_in_epoch: int, epoch_loss_sum: float) -> None:
        progress = {
            "recipe": run.recipe.name,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "epoch_loss_sum": epoch_loss_sum,
            "num_updates": trainer.num_updates,
            "scheduler": trainer.scheduler.state_dict(),
            "history": trainer.history,
            "elapsed_s": start["elapsed_s"] + time.perf_counter() - run.wall_start,
        }
        save_checkpoint(accelerator, run_dir, progress, trainer.ema, run.spec.options.keep)

    def on_epoch_end(row: dict, _eval: dict) -> None:
        if accelerator.is_main_process:
            write_metrics(run_dir / "metrics.csv", trainer.history)
        trackers.log_epoch(accelerator, row, trainer.num_updates)
        checkpoint(row["epoch"], 0, 0.0)
        readable_or_stop(run, run_dir)

    trainer.save_every, trainer.on_checkpoint = run.spec.options.save_every, checkpoint
    return fit(trainer, trainer.epochs, on_epoch_end, start["epoch"], start["step_in_epoch"], start["epoch_loss_sum"])


def readable_or_stop(run: BuiltRun, run_dir: Path) -> None:
    """Past 0.1% of undecodable images in a split the run stops; the epoch's checkpoint is kept."""
    try:
        check_unreadable(run_dir / UNREADABLE_LOG, {"train": run.train_samples, "val": run.eval_samples})
    except DataError as e:
        raise DataError(f"{e}; the last checkpoint is kept under {checkpoint_root(run_dir)}") from None


def fit_attempt(run: BuiltRun, trainer: Trainer, run_dir: Path, signals: SignalFlag, attempt: AttemptLog) -> int:
    """Resume if asked, fit until done or told to stop, then end the attempt and, when done, write the record."""
    accelerator = run.accelerator
    start = resume_state(run, trainer, run_dir)
    if run.spec.resume_dir is not None:
        attempt.resumed_at(start["num_updates"])
    trainer.on_log = trackers.train_logger(accelerator)
    trainer.stop = StopAgreement(signals, accelerator.num_processes)
    try:
        final = fit_run(run, trainer, run_dir, start)
    except StopRequested as stop:
        attempt.end(stop.reason, EXIT_PREEMPTED)
        if accelerator.is_main_process:
            print(
                f"stopped on {stop.signal_name} after update {stop.update}; checkpoint {attempt.entry['checkpoint']}; "
                f"continue with --resume {run_dir} (exit status {EXIT_PREEMPTED})",
                file=sys.stderr,
            )
        return EXIT_PREEMPTED
    except NonFiniteLoss as e:
        message = f"{e}; the last good checkpoint is kept under {checkpoint_root(run_dir)}"
        attempt.end(f"error: {message}", 2)
        if accelerator.is_main_process:
            print(f"error: {message}", file=sys.stderr)
        return 2
    trainer.stop.close()
    run.decode_fallbacks = decode_fallbacks(accelerator, run.train_loader)
    accelerator.wait_for_everyone()
    attempt.end("complete", 0)
    if accelerator.is_main_process:
        write_record(run, trainer, final, run_dir, start["elapsed_s"], attempt.attempts)
    return 0


def open_run_dir(run: BuiltRun) -> tuple[Path, dict]:
    """The run directory, with the trackers started before anything is written into it, announced with the plan's
    notices on the main process; also what the trackers need to be continued by a later attempt."""
    started: dict = {}

    def start_trackers(run_dir: Path) -> None:
        options = run.spec.options
        earlier = read_attempts(run_dir) if options.resume is not None else []
        accelerator, continue_runs = run.accelerator, not options.force
        started.update(trackers.start(accelerator, run_dir, options.project, run.recipe, earlier, continue_runs))

    run_dir = shared_run_dir(run.accelerator, run.spec, run.recipe, before_writing=start_trackers)
    if run.accelerator.is_main_process:
        console = wide_console()
        for notice in run.spec.notices:
            console.print(f"[yellow]note:[/] {notice}")
        console.print(f"run directory: {run_dir}")
    log_unreadable_to(list(run.datasets), run_dir / UNREADABLE_LOG)
    return run_dir, started
