"""`--estimate`: time a recipe on this machine and project its whole schedule, before committing to it.

The run is built exactly as training builds it (model, loss, optimizer, data path, micro-batch and accumulation);
a few warm-up updates are followed by timed ones and a timed slice of evaluation. Where the dataset is absent,
random images of its shape and split sizes stand in (no JPEG decoding, which a real folder dataset adds). Only
`estimate.json` is written; nothing is trained beyond the timed updates, and no checkpoint is kept.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from PIL import Image
from rich.table import Table
from torch.utils.data import Dataset

from harness.assemble import BuiltRun, Splits, build_run
from harness.config import ConfigError, budget_limits
from harness.data import dataset_info, first
from harness.data.loader import worker_transforms
from harness.data.route import DataRoute
from harness.engine import DeviceTally, Trainer, count_update, set_frozen, train_micro_step
from harness.fitting import make_trainer
from harness.plan import RunSpec
from harness.records import Estimate
from harness.report import wide_console
from harness.results import atomic_write_text, estimate_record, new_run_dir, peak_rss_mb
from recipes import Recipe

WARMUP_UPDATES = 3
TIMED_UPDATES = 20
EVAL_BATCHES = 10
# Published train / eval split sizes, for synthetic stand-ins of absent datasets.
SPLIT_SIZES = {
    "imagenet": (1_281_167, 50_000),
    "mnist": (60_000, 10_000),
    "fashion_mnist": (60_000, 10_000),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
}
FILE_IMAGE_SIZE = 256  # stand-in source resolution for datasets of image files (ImageNet's are about 400x350)


class SyntheticImages(Dataset):
    """Random images of a dataset's shape; `in_memory` ones hold `.data`/`.targets` like torchvision's."""

    def __init__(self, length: int, channels: int, size: int, num_classes: int, transform=None, in_memory=False):
        self.length, self.channels, self.size, self.transform = length, channels, size, transform
        self.classes = [str(c) for c in range(num_classes)]
        self.targets = [i % num_classes for i in range(length)]
        if in_memory:
            shape = (length, size, size) if channels == 1 else (length, size, size, channels)
            self.data = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        pixels = torch.randint(
            0,
            256,
            (self.size, self.size, self.channels),
            dtype=torch.uint8,
            generator=torch.Generator().manual_seed(index),
        )
        image = Image.fromarray(pixels.squeeze(-1).numpy())
        return (self.transform(image) if self.transform else image), self.targets[index]


def synthetic_splits(spec: RunSpec, recipe: Recipe, route: DataRoute) -> Splits:
    """Stand-ins for an absent dataset: its channels, native size (or FILE_IMAGE_SIZE) and split sizes."""
    info = dataset_info(spec.dataset)
    if spec.dataset not in SPLIT_SIZES:
        raise ConfigError(f"--estimate needs {spec.dataset} on disk (its size is unknown): {info.how_to_get}")
    train_tf, eval_tf = worker_transforms(recipe, info.channels, route)
    size, classes, memory = info.native_size or FILE_IMAGE_SIZE, info.num_classes or 1000, route.path == "memory"
    limits = budget_limits(spec.budget)
    n_train, n_eval = SPLIT_SIZES[spec.dataset]
    train = first(SyntheticImages(n_train, info.channels, size, classes, train_tf, memory), limits.max_train_samples)
    evaluate = first(SyntheticImages(n_eval, info.channels, size, classes, eval_tf, memory), limits.max_eval_samples)
    note = f"synthetic data: {len(train)} train / {len(evaluate)} eval random {size}x{size} images"
    return Splits(train, evaluate, classes, None, [note])


def sync(device: torch.device) -> None:
    """Wait for the work queued on `device` (nothing to wait for on the CPU), so a clock read after it is true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _micro_batches(t: Trainer):
    """The training loader, epoch after epoch."""
    epoch = 0
    while True:
        if hasattr(t.train_loader, "set_epoch"):
            t.train_loader.set_epoch(epoch)
        yield from t.train_loader
        epoch += 1


def time_updates(t: Trainer, warmup: int, timed: int) -> dict:
    """Seconds per optimizer update, split into waiting for the loader and computing (the device synchronised
    after each micro-step, so the split is exact; the training loop itself never synchronises)."""
    t.model.train()
    set_frozen(t, 0)
    device, tally, batches = t.accelerator.device, DeviceTally(t.accelerator.device), _micro_batches(t)
    data_s = compute_s = 0.0
    for update in range(warmup + timed):
        if update == warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(t.accum_steps):
            fetched = time.perf_counter()
            images, targets = next(batches)
            sync(device)
            started = time.perf_counter()
            train_micro_step(t, images, targets, tally)
            sync(device)
            if update >= warmup:
                data_s += started - fetched
                compute_s += time.perf_counter() - started
        count_update(t)
    if not math.isfinite(tally.read(t.accelerator)["loss_sum"]):
        raise ConfigError("the training loss became non-finite within the timed updates; check the recipe's LR")
    return {"update_s": (data_s + compute_s) / timed, "data_wait_s": data_s / timed, "compute_s": compute_s / timed}


@torch.no_grad()
def time_evaluation(t: Trainer, batches: int) -> float:
    """Evaluation images per second on this process, over a slice of the eval loader after one untimed batch."""
    t.model.eval()
    device, loader = t.accelerator.device, iter(t.eval_loader)
    images, _ = next(loader)
    with t.accelerator.autocast():
        t.model(images)
    sync(device)
    seen, start = 0, time.perf_counter()
    for _, (images, _targets) in zip(range(batches), loader, strict=False):
        with t.accelerator.autocast():
            t.model(images)
        seen += images.shape[0]
    sync(device)
    elapsed = time.perf_counter() - start
    if not seen:  # a one-batch eval set: the warm batch is all there is
        return images.shape[0] / max(elapsed, 1e-9)
    return seen / elapsed


def projection(run: BuiltRun, t: Trainer, timing: dict, eval_img_per_s: float, eval_samples: int) -> dict:
    """One epoch (training and every evaluation it runs) and the whole schedule, from the timings."""
    evaluations = 2 if t.ema is not None else 1  # the EMA weights are evaluated too
    train_epoch_s = t.updates_per_epoch * timing["update_s"]
    eval_s = evaluations * math.ceil(eval_samples / run.world) / eval_img_per_s
    epoch_s = train_epoch_s + eval_s
    total_s = epoch_s * t.epochs
    return {
        "img_per_s": run.batches.global_batch / timing["update_s"],
        "epoch_s": epoch_s,
        "total_s": total_s,
        "device_hours": total_s * run.world / 3600,
        "train_epoch_s": train_epoch_s,
        "eval_s": eval_s,
        "updates_per_epoch": t.updates_per_epoch,
        "epochs": t.epochs,
        "update_s": timing["update_s"],
        "data_wait_s": timing["data_wait_s"],
        "compute_s": timing["compute_s"],
        "data_wait_share": timing["data_wait_s"] / timing["update_s"],
        "eval_img_per_s": eval_img_per_s,
    }


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def process_age_s() -> float | None:
    """Seconds since this process started (from /proc; None where there is none)."""
    try:
        started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime_s - started_ticks / os.sysconf("SC_CLK_TCK")


def estimate(spec: RunSpec) -> int:
    """Build the run, time it, write estimate.json in a new run directory and print it."""
    synthetic = spec.synthetic_data  # decided while planning, where the dataset was looked for
    run = build_run(spec, load=synthetic_splits if synthetic else None)
    t = make_trainer(run)
    startup_s = process_age_s()  # the interpreter, the imports, the data and the model, before the first update
    timing = time_updates(t, WARMUP_UPDATES, TIMED_UPDATES)
    projected = projection(run, t, timing, time_evaluation(t, EVAL_BATCHES), run.eval_samples)
    if run.accelerator.is_main_process:  # the record (and its versions, read from git) is the main process's alone
        record = estimate_record(
            spec,
            run,
            projected,
            startup_s=startup_s,
            peak_memory_mb=_peak_memory_mb(run.accelerator.device),
            warmup=WARMUP_UPDATES,
            timed=TIMED_UPDATES,
        )
        options = spec.options
        run_dir = new_run_dir(options.output, f"estimate-{run.recipe.name}", spec.dataset, spec.budget, options.seed)
        atomic_write_text(run_dir / "estimate.json", record.to_json())
        print_estimate(record)
        wide_console().print(f"wrote {run_dir / 'estimate.json'}")
    return 0


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def print_estimate(record: Estimate) -> None:
    table = Table(title=f"estimate: {record.recipe} on {record.dataset} ({record.budget} budget)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("data", "synthetic (dataset absent)" if record.synthetic_data else "the dataset on disk"),
        ("device", f"{record.device} x {record.world_size} ({(record.mixed_precision or 'no').replace('no', 'fp32')})"),
        (
            "global batch = micro x accumulation x processes",
            f"{record.global_batch_size} = {record.micro_batch_size} x {record.grad_accum_steps} x {record.world_size}",
        ),
        ("img/s (training)", f"{record.img_per_s:.1f}"),
        (
            "step time: waiting for data / computing",
            f"{record.data_wait_s * 1000:.1f} / {record.compute_s * 1000:.1f} ms "
            f"({100 * record.data_wait_share:.0f}% waiting)",
        ),
        ("start-up (process start to the first update)", _duration(record.startup_s or 0.0)),
        ("one epoch (train + eval)", _duration(record.epoch_s)),
        (f"whole schedule ({record.epochs} epochs)", _duration(record.total_s)),
        ("device-hours", f"{record.device_hours:.3g}"),
        ("peak memory per device", f"{record.peak_memory_mb_per_device:.0f} MiB"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = wide_console()
    for notice in record.notices:
        console.print(f"[yellow]note:[/] {notice}")
    console.print(table)
