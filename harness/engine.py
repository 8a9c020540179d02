"""train_one_epoch(), evaluate(), fit(). All device, precision and distribution work goes through accelerate."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3, distribute_bn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from harness.preemption import StopAgreement, StopRequested
from harness.results import tracked_top1


class NonFiniteLoss(Exception):
    """The training loss became NaN or infinite somewhere in a window of updates (read at log intervals)."""

    def __init__(self, epoch: int, first_update: int, last_update: int, value: float):
        where = f"update {last_update}" if first_update == last_update else f"updates {first_update}-{last_update}"
        super().__init__(f"training loss became {value} at epoch {epoch}, within {where}; stopping")
        self.epoch, self.first_update, self.last_update = epoch, first_update, last_update


class Batches(Protocol):
    """What the engine iterates: (images, targets) batches and their count (harness.data.loader's loaders, or a
    DataLoader prepared by accelerate)."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...


@dataclass
class Trainer:
    """What one training run needs, already passed through `accelerator.prepare`."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler  # timm's, stepped per update and per epoch
    train_loss: torch.nn.Module
    train_loader: Batches
    eval_loader: Batches
    num_classes: int
    global_batch_size: int
    # the epochs the schedule spans (harness.build.build_scheduler: epochs + cooldown, + warmup with warmup_prefix)
    epochs: int = 1
    mixup: Callable | None = None
    # timm's RandomErasing on the device, after Mixup/CutMix as timm's PrefetchLoader erases the batches its collate
    # mixed (harness.data.device.random_erasing)
    erase: Callable | None = None
    clip_grad: float | None = None
    ema: ModelEmaV3 | None = None
    # what evaluates the EMA when it is not `ema.module` itself (the same weights through torch.compile)
    ema_evaluated: torch.nn.Module | None = None
    num_updates: int = 0
    history: list[dict] = field(default_factory=list)
    save_every: int = 0
    # on_checkpoint(epoch, steps_done_in_epoch, epoch_loss_sum): called every `save_every` updates
    on_checkpoint: Callable[[int, int, float], None] | None = None
    # parameters without gradients for the first `freeze_epochs` epochs; the optimizer holds them throughout
    frozen: list[torch.nn.Parameter] = field(default_factory=list)
    freeze_epochs: int = 0
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.0
    stopped_early_at_epoch: int | None = None
    # micro-batches accumulated per optimizer update (accelerate's gradient accumulation); the loader yields them
    accum_steps: int = 1
    # device values (loss, accuracy counts) are read every `log_every` updates and at epoch end, never per step
    log_every: int = 50
    # on_log(num_updates, {"train/loss", "train/lr", "train/img_per_s"}): on every process at each read
    on_log: Callable[[int, dict], None] | None = None
    # asked after every update and epoch whether a signal stops the run there (harness.preemption)
    stop: StopAgreement | None = None

    @property
    def updates_per_epoch(self) -> int:
        return len(self.train_loader) // self.accum_steps


def set_frozen(t: Trainer, epoch: int) -> int:
    """Freeze or release `t.frozen` for this epoch; returns the number of trainable parameters.

    Frozen parameters get no gradient, so every optimizer skips them (no update, no weight decay) and they keep
    no optimizer state until released. BatchNorm statistics in frozen parts still update, as with PyTorch's
    `requires_grad_(False)` idiom."""
    frozen = epoch < t.freeze_epochs
    for p in t.frozen:
        p.requires_grad_(not frozen)
    return sum(p.numel() for p in t.model.parameters() if p.requires_grad)


def should_stop_early(history: list[dict], patience: int, min_delta: float) -> bool:
    """Keras' EarlyStopping on eval loss: no improvement of more than min_delta for `patience` epochs."""
    if patience <= 0 or len(history) <= patience:
        return False
    losses = [row["eval_loss"] for row in history]
    best_before = min(losses[:-patience])
    return min(losses[-patience:]) > best_before - min_delta


def _progress(accelerator: Accelerator) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not accelerator.is_main_process,
        transient=False,
    )


class DeviceTally:
    """One epoch's loss sum and accuracy counts, kept on the device and read only at log intervals.

    The loss sum adds each update's mean loss (the mean over its micro-batches); a window sum since the last read
    is kept beside it, so a non-finite loss is found at the next read and named by its window of updates."""

    def __init__(self, device: torch.device, carried_loss: float = 0.0):
        self.sums = torch.tensor([carried_loss, 0.0, 0.0, 0.0], device=device)  # epoch loss, correct, seen, window

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, accum_steps: int) -> None:
        share = loss.detach().float() / accum_steps
        self.sums[0] += share
        self.sums[1] += (logits.detach().argmax(dim=1) == labels).sum()
        self.sums[2] += labels.numel()
        self.sums[3] += share

    def read(self, accelerator: Accelerator) -> dict:
        """The one host read: totals over every process; the window starts again."""
        total, correct, seen, window = accelerator.reduce(self.sums, reduction="sum").tolist()
        self.sums[3].zero_()
        world = accelerator.num_processes
        return {"loss_sum": total / world, "correct": correct, "seen": seen, "window_loss_sum": window / world}


def train_micro_step(t: Trainer, images: torch.Tensor, targets: torch.Tensor, tally: DeviceTally) -> bool:
    """Forward and backward of one micro-batch; the optimizer steps on the last of each update's micro-batches,
    where accelerate lets DDP all-reduce. Returns whether it stepped. Nothing here reads the device."""
    labels = targets
    if t.mixup is not None:
        images, targets = t.mixup(images, targets)
    if t.erase is not None:  # outside autocast, in float32, as timm's loader erases
        images = t.erase(images)
    with t.accelerator.accumulate(t.model):
        with t.accelerator.autocast():
            logits = t.model(images)
            loss = t.train_loss(logits, targets)
        t.accelerator.backward(loss)  # divided by the accumulation steps inside accelerate
        if t.clip_grad and t.accelerator.sync_gradients:
            t.accelerator.clip_grad_norm_(t.model.parameters(), t.clip_grad)
        t.optimizer.step()  # accelerate's optimizer wrapper skips the micro-steps between updates
        t.optimizer.zero_grad(set_to_none=True)
    # Accuracy against the labels before Mixup/CutMix, on the augmented images the model saw.
    tally.add(loss, logits, labels, t.accelerator.gradient_accumulation_steps)
    return t.accelerator.sync_gradients


def count_update(t: Trainer) -> None:
    """An optimizer update happened: the schedule and the EMA move one update on. A schedule stepped per epoch
    ignores `step_update`, as it does in timm's train.py, which makes the same call."""
    t.num_updates += 1
    t.scheduler.step_update(num_updates=t.num_updates)
    if t.ema is not None:
        t.ema.update(t.model, step=t.num_updates)


def end_epoch_schedule(scheduler, epochs_done: int, eval_top1: float) -> None:
    """After an epoch's evaluation, as train.py does: the LR of the next epoch (a no-op for a schedule stepped per
    update), with top-1 as the metric a plateau schedule watches (train.py's default eval metric)."""
    scheduler.step(epochs_done, eval_top1)


def reduce_batchnorm(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """train.py's --dist-bn reduce: every process's BatchNorm running statistics averaged (several processes)."""
    if accelerator.num_processes > 1:
        distribute_bn(model, accelerator.num_processes, reduce=True)


def _epoch_batches(t: Trainer, epoch: int, start_update: int):
    """This epoch's micro-batches from update `start_update` on; the few beyond the last whole update are left."""
    if hasattr(t.train_loader, "set_epoch"):
        t.train_loader.set_epoch(epoch)  # the shuffle order is a function of (seed, epoch)
    loader = t.train_loader
    if start_update:
        skip = getattr(t.train_loader, "skip_first_batches", None)  # the in-memory loader skips by itself
        skipped = start_update * t.accum_steps
        loader = skip(skipped) if skip else t.accelerator.skip_first_batches(t.train_loader, skipped)
    return itertools.islice(loader, (t.updates_per_epoch - start_update) * t.accum_steps)


class _Window:
    """The updates since the last read, their wall time, and what to do at a read."""

    def __init__(self, t: Trainer, epoch: int, progress: Progress, task, first_update: int):
        self.t, self.epoch, self.progress, self.task = t, epoch, progress, task
        self.first_update, self.start = first_update, time.perf_counter()

    def read(self, tally: DeviceTally, steps: int) -> dict:
        t, values = self.t, tally.read(self.t.accelerator)
        updates = t.num_updates - self.first_update
        if not math.isfinite(values["window_loss_sum"]):
            raise NonFiniteLoss(self.epoch + 1, self.first_update + 1, t.num_updates, values["window_loss_sum"])
        elapsed = time.perf_counter() - self.start
        logged = {
            "train/loss": values["window_loss_sum"] / max(updates, 1),
            "train/lr": current_lr(t.optimizer),
            "train/img_per_s": updates * t.global_batch_size / elapsed if elapsed > 0 else 0.0,
        }
        self.progress.update(
            self.task,
            completed=steps,
            info=f"loss {logged['train/loss']:.4f}  lr {logged['train/lr']:.3g}  {logged['train/img_per_s']:.0f} img/s",
        )
        if t.on_log is not None and updates:
            t.on_log(t.num_updates, logged)
        self.first_update, self.start = t.num_updates, time.perf_counter()
        return values


def train_one_epoch(t: Trainer, epoch: int, progress: Progress, start_step: int = 0, carried_loss: float = 0.0) -> dict:
    """One epoch of optimizer updates; a resumed one starts after its first `start_step` updates, whose
    micro-batches it does not load. Device values are read every `log_every` updates and at the end."""
    t.model.train()
    trainable = set_frozen(t, epoch)
    total = t.updates_per_epoch
    task = progress.add_task(f"epoch {epoch + 1}", total=total, completed=start_step, info="")
    tally, window = DeviceTally(t.accelerator.device, carried_loss), _Window(t, epoch, progress, task, t.num_updates)
    steps, timed, values = start_step, 0, None
    start = time.perf_counter()
    for images, targets in _epoch_batches(t, epoch, start_step):
        if not train_micro_step(t, images, targets, tally):
            continue
        count_update(t)
        steps += 1
        timed += 1
        checkpoint_due = bool(t.on_checkpoint and t.save_every and t.num_updates % t.save_every == 0)
        checkpoint_due = checkpoint_due and steps < total  # the epoch's end checkpoints after evaluation
        # A stop in the epoch's last update waits for the epoch's end, which checkpoints after evaluation.
        stop = t.stop.at_update() if t.stop is not None and t.on_checkpoint and steps < total else 0
        if checkpoint_due or stop or steps % t.log_every == 0 or steps == total:
            values = window.read(tally, steps)  # so a checkpoint is taken only after a finite window
        if checkpoint_due or stop:
            t.on_checkpoint(epoch, steps, values["loss_sum"])
        if stop:
            raise StopRequested(stop, t.num_updates)
    elapsed = time.perf_counter() - start
    if values is None:  # nothing left to train in this epoch (resumed at its end)
        values = window.read(tally, steps)
    return {
        "train_loss": values["loss_sum"] / max(steps, 1),
        # Over the batches trained since this process started the epoch (all of them unless resumed mid-epoch).
        "train_top1": 100.0 * values["correct"] / max(values["seen"], 1),
        "trainable_params": trainable,
        "lr": current_lr(t.optimizer),
        "train_time_s": elapsed,
        "train_img_per_s": timed * t.global_batch_size / elapsed if elapsed > 0 else 0.0,
    }


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The mean LR over the parameter groups, as timm's train.py writes it into summary.csv."""
    return sum(g["lr"] for g in optimizer.param_groups) / len(optimizer.param_groups)


def _metrics(num_classes: int, device: torch.device) -> MetricCollection:
    # Inputs are already gathered across processes, so torchmetrics must not sync them again.
    common = {"num_classes": num_classes, "sync_on_compute": False}
    return MetricCollection(
        {
            "top1": MulticlassAccuracy(top_k=1, average="micro", **common),
            "top5": MulticlassAccuracy(top_k=min(5, num_classes), average="micro", **common),
            "precision": MulticlassPrecision(average="macro", **common),
            "recall": MulticlassRecall(average="macro", **common),
            "f1": MulticlassF1Score(average="macro", **common),
            "per_class": MulticlassAccuracy(average=None, **common),
            "confusion": MulticlassConfusionMatrix(**common),
        },
        # Compute groups merge metrics whose states match after the first batch: top-1 and top-5 would
        # then share one state whenever the first batch is all correct.
        compute_groups=False,
    ).to(device)


@torch.no_grad()
def evaluate(accelerator: Accelerator, model: torch.nn.Module, loader: Batches, num_classes: int) -> dict:
    """Top-1/5, loss, macro P/R/F1, per-class accuracy and confusion, each sample counted once."""
    model.eval()
    metrics = _metrics(num_classes, accelerator.device)
    loss_sum, samples = torch.zeros((), device=accelerator.device), 0
    for images, targets in loader:
        with accelerator.autocast():
            logits = model(images)
        logits, targets = accelerator.gather_for_metrics((logits.float(), targets))
        real = targets >= 0  # the in-memory loader pads processes to equal batches with label -1
        logits, targets = logits[real], targets[real]
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        samples += targets.numel()
        metrics.update(logits, targets)
    values = metrics.compute()
    pct = {k: 100.0 * values[k].item() for k in ("top1", "top5", "precision", "recall", "f1")}
    return {
        "eval_loss": loss_sum.item() / max(samples, 1),
        "eval_top1": pct["top1"],
        "eval_top5": pct["top5"],
        "eval_precision": pct["precision"],
        "eval_recall": pct["recall"],
        "eval_f1": pct["f1"],
        "eval_samples": samples,
        "per_class_accuracy": [round(100.0 * v, 4) for v in values["per_class"].tolist()],
        "confusion_matrix": values["confusion"].int().tolist(),
    }


def fit(
    t: Trainer,
    epochs: int,
    on_epoch_end: Callable[[dict, dict], None],
    start_epoch: int = 0,
    start_step: int = 0,
    carried_loss: float = 0.0,
) -> dict:
    """Train up to `epochs`, evaluating after each; `on_epoch_end(row, eval)` persists progress."""
    last_eval: dict = {}
    with _progress(t.accelerator) as progress:
        for epoch in range(start_epoch, epochs):
            # Checked before each epoch, so a resumed run that had already stopped stays stopped.
            if should_stop_early(t.history, t.early_stop_patience, t.early_stop_min_delta):
                t.stopped_early_at_epoch = epoch
                if t.accelerator.is_main_process:
                    progress.console.print(
                        f"early stop after epoch {epoch}: eval loss has not improved for {t.early_stop_patience} epochs"
                    )
                break
            epoch_start = time.perf_counter()
            resume_here = epoch == start_epoch
            train = train_one_epoch(
                t, epoch, progress, start_step if resume_here else 0, carried_loss if resume_here else 0.0
            )
            reduce_batchnorm(t.accelerator, t.model)
            last_eval = evaluate(t.accelerator, t.model, t.eval_loader, t.num_classes)
            row = {"epoch": epoch + 1, **train}
            row.update({k: last_eval[k] for k in ("eval_loss", "eval_top1", "eval_top5")})
            if t.ema is not None:
                reduce_batchnorm(t.accelerator, t.ema.module)  # so the EMA saved is the EMA evaluated
                ema_model = t.ema.module if t.ema_evaluated is None else t.ema_evaluated
                row["eval_top1_ema"] = evaluate(t.accelerator, ema_model, t.eval_loader, t.num_classes)["eval_top1"]
            end_epoch_schedule(t.scheduler, epoch + 1, tracked_top1(row))  # before the epoch's checkpoint
            row["epoch_time_s"] = time.perf_counter() - epoch_start
            t.history.append(row)
            on_epoch_end(row, last_eval)
            if t.accelerator.is_main_process:
                progress.console.print(
                    f"epoch {epoch + 1}/{epochs}: train loss {row['train_loss']:.4f}  "
                    f"eval loss {row['eval_loss']:.4f}  top-1 {row['eval_top1']:.2f}  "
                    f"top-5 {row['eval_top5']:.2f}  {row['train_img_per_s']:.0f} img/s"
                )
            # After the last epoch only the record is left to write: the run completes.
            stop = t.stop.at_epoch_end() if t.stop is not None and epoch + 1 < epochs else 0
            if stop:
                raise StopRequested(stop, t.num_updates)  # on_epoch_end has checkpointed this epoch
    if not last_eval:  # resumed a run whose every epoch was already done
        last_eval = evaluate(t.accelerator, t.model, t.eval_loader, t.num_classes)
    return last_eval
