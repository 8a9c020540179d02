"""The main job end to end: RSB A3 at its published setting trained from a folder of ImageNet-sized JPEGs, timed in
the steady state, beside timm's `train.py` on the same folder and the bare model; and where a batch's time goes.

Rows (each its own process, so none inherits another's device memory or workers):
- the harness with decode on the device, and with decode in the workers (`harness/run.py`'s run, built by
  `harness.assemble.build_run` and trained by `harness.engine.train_one_epoch`, as `--recipe rsb_a3 --dataset folder
  --batch-size 256 --micro-batch 256 --decode-on X --workers 14` would);
- timm's `train.py` from a checkout, on the same folder with its prefetcher and the same workers, at A3's arguments;
- the bare model: ResNet-50 forward, BCE, backward and LAMB step on a fixed batch (`common.model_step`).

Every row prints a line per `LOG_EVERY` updates (timm's own `Train:` log lines; the others `update N`); the clock
here stamps each line as it arrives, and the rate is the images between the first line at or after WARMUP updates
and the first at or after WARMUP + TIMED, over the time between them, all inside the first epoch (the folder holds
more than that), after which the process is stopped. Sampled over that window: GPU utilisation and memory
(nvidia-smi), the host's CPU in use (psutil), and the process tree's resident memory.

    python -m benchmarks.main_job --folder DIR --timm-train-py PATH/train.py --out record.json
    python -m benchmarks.main_job harness --folder DIR --decode-on device    # one row's process (prints lines)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil  # accelerate's dependency
import torch
from rich.progress import Progress

from benchmarks.common import ROOT, default_device, endless, make_jpeg_folder, model_step, script_command, sync
from harness.assemble import build_run
from harness.build import build_mixup, build_model, build_optimizer, build_train_loss
from harness.data.autoaugment import device_policy
from harness.data.decode import DeviceDecoder, EncodedTrainTransform, collate_encoded
from harness.data.device import DeviceStage, batch_generator
from harness.data.loader import make_loader
from harness.data.readers.folder import SkippingImageFolder
from harness.engine import train_one_epoch
from harness.fitting import make_trainer
from harness.plan import RunOptions, plan
from recipes import get_recipe

WORKERS = 14
BATCH = 256  # RSB A3's per-process batch (2048 over 8 GPUs)
LOG_EVERY, WARMUP, TIMED = 25, 25, 175
CLASSES = 1000
QUICK = {"batch": 8, "size": 32, "warmup": 2, "timed": 4, "log_every": 1, "workers": 2, "classes": 4}


@dataclasses.dataclass(frozen=True)
class Setting:
    batch: int = BATCH
    size: int = 160
    warmup: int = WARMUP
    timed: int = TIMED
    log_every: int = LOG_EVERY
    workers: int = WORKERS
    classes: int = CLASSES

    @property
    def images(self) -> int:
        """Train images for the window to fall inside one epoch, with a log interval to spare."""
        return (self.warmup + self.timed + self.log_every) * self.batch


def setting(quick: bool) -> Setting:
    return Setting(**QUICK) if quick else Setting()


# ---- the folder ------------------------------------------------------------------------------------------------------


def _make_part(args: tuple) -> int:
    root, start, count, classes = args
    return make_jpeg_folder(root, count, classes=classes, seed=start, first=start) and count


def make_folder(root: Path, train: int, classes: int, processes: int | None = None) -> Path:
    """`train` JPEGs in train/ and one per class in val/ (benchmarks.common.make_jpeg_folder's photographs),
    made by one process per core."""
    processes = processes or os.cpu_count() or 1
    chunk = -(-train // processes)
    parts = [(root, start, min(chunk, train - start), classes) for start in range(0, train, chunk)]
    with ProcessPoolExecutor(processes) as pool:
        made = sum(pool.map(_make_part, parts))
    for folder in sorted((root / "train").iterdir()):
        (root / "val" / folder.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(next(folder.iterdir()), root / "val" / folder.name)
    assert made == train
    return root


# ---- the rows' processes ---------------------------------------------------------------------------------------------


def harness_row(folder: Path, decode_on: str, s: Setting) -> None:
    """The harness's run of rsb_a3 on the folder, printing `update N` at every read of its device values."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"main-job-{os.getpid()}"
    # bfloat16 as the bare model and timm's row here (RSB's published float16 shows among the run's differences)
    options = RunOptions(
        recipe="rsb_a3",
        dataset="folder",
        data_dir=folder,
        batch_size=s.batch,
        micro_batch=s.batch,
        workers=s.workers,
        decode_on=decode_on,
        log_every=s.log_every,
        output=out,
        overrides=(f"img_size={s.size}", "amp_dtype='bfloat16'"),
    )
    run = build_run(plan(options))
    trainer = make_trainer(run)
    trainer.on_log = lambda updates, _values: print(f"update {updates}", flush=True)
    config = {"decode_on": run.decode_on, "augment_on": run.augment_on, "img_size": run.recipe.img_size,
              "mixed_precision": run.accelerator.mixed_precision, "micro_batch": run.batches.micro_batch}  # fmt: skip
    print("config " + json.dumps(config), flush=True)
    with Progress(disable=True) as progress:
        for epoch in itertools.count():
            train_one_epoch(trainer, epoch, progress)


def bare_row(s: Setting) -> None:
    """The model alone on a fixed batch, printing `update N` every LOG_EVERY steps after the device finished them."""
    step, device = model_step(s.batch, s.size, compiled=False), default_device()
    for update in itertools.count(1):
        step()
        if update % s.log_every == 0:
            sync(device)
            print(f"update {update}", flush=True)


def timm_command(train_py: Path, folder: Path, out: Path, s: Setting, cuda: bool) -> list[str]:
    """timm's train.py at RSB A3's arguments (timm's RSB A3 hyper-parameters), its prefetcher on, per-process
    batch 256, no validation split (the timed window ends inside the first epoch)."""
    command = [sys.executable, str(train_py), str(folder), "--train-split", "train", "--val-split", "",
               "--model", "resnet50", "--num-classes", str(s.classes), "--img-size", str(s.size),
               "--batch-size", str(s.batch), "--opt", "lamb", "--lr", "8e-3", "--weight-decay", "0.02",
               "--sched", "cosine", "--epochs", "100", "--warmup-epochs", "5", "--warmup-lr", "1e-6",
               "--min-lr", "1e-6", "--smoothing", "0.0", "--mixup", "0.1", "--cutmix", "1.0", "--bce-loss",
               "--bce-target-thresh", "0.2", "--aa", "rand-m6-mstd0.5-inc1", "--reprob", "0.0", "--drop-path", "0.0",
               "--train-interpolation", "bicubic", "--channels-last", "--workers", str(s.workers), "--pin-mem",
               "--log-interval", str(s.log_every), "--seed", "0", "--output", str(out)]  # fmt: skip
    return command + (["--amp", "--amp-dtype", "bfloat16"] if cuda else ["--device", "cpu"])


def row_commands(
    folder: Path, train_py: Path | None, out: Path, s: Setting, quick: bool, cuda: bool
) -> dict[str, list[str]]:
    here = script_command("main_job", *(["--quick"] if quick else []))
    commands = {
        "harness, decode on the device": [*here, "harness", "--folder", str(folder), "--decode-on", "device"],
        f"harness, decode in {s.workers} workers": [
            *here,
            "harness",
            "--folder",
            str(folder),
            "--decode-on",
            "workers",
        ],
        f"timm train.py, prefetcher, {s.workers} workers": None,
        "bare model (fixed batch)": [*here, "bare"],
    }
    name = f"timm train.py, prefetcher, {s.workers} workers"
    if train_py is not None:
        commands[name] = timm_command(train_py, folder, out / "timm", s, cuda)
    else:
        del commands[name]
    return commands


# ---- where a batch's time goes ---------------------------------------------------------------------------------------

PROFILE_STAGES = ("fetch from the workers", "transfer", "decode", "crop, resize, flip", "device stage", "training step")


class _Stages:
    """The training process's main-thread CPU time and (on CUDA) the device's time of each stage of one batch."""

    def __init__(self, device: torch.device):
        self.cuda, self.cpu_ms, self.device_ms = device.type == "cuda", {}, {}
        self.events: list[tuple[str, object, object]] = []

    def run(self, name: str, work):
        begin, start = time.thread_time(), None
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        result = work()
        if self.cuda:
            end.record()
            self.events.append((name, start, end))
        self.cpu_ms[name] = self.cpu_ms.get(name, 0.0) + 1000 * (time.thread_time() - begin)
        return result

    def collect(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        for name, start, end in self.events:
            self.device_ms[name] = self.device_ms.get(name, 0.0) + start.elapsed_time(end)
        self.events.clear()


def _profile_parts(folder: Path, s: Setting, device: torch.device):
    """The decode-on-device path of the main job, in its parts: loader, decoder, device stage, a training step."""
    recipe = dataclasses.replace(get_recipe("rsb_a3"), img_size=s.size)
    dataset = SkippingImageFolder(folder / "train", EncodedTrainTransform(recipe))
    loader = make_loader(dataset, s.batch, True, s.workers, 0, device.type == "cuda", collate_fn=collate_encoded)
    stage = DeviceStage(recipe, device, train=True, policy=device_policy(recipe, device))
    model = build_model(recipe, s.classes).to(device, memory_format=torch.channels_last)
    optimizer, loss_fn, mixup = (
        build_optimizer(recipe, model),
        build_train_loss(recipe, True),
        build_mixup(recipe, s.classes),
    )

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        images, targets = mixup(images, labels)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return loader, DeviceDecoder(s.size, device, dataset), stage, step


def _one_batch(stages: _Stages, batches, decoder, stage, step, device: torch.device) -> None:
    encoded, labels = stages.run("fetch from the workers", lambda: next(batches))
    in_workers = encoded.decoded if encoded.decoded is not None else torch.empty(0)
    labels, in_workers = stages.run(
        "transfer", lambda: (labels.to(device, non_blocking=True), in_workers.to(device, non_blocking=True))
    )
    whole = stages.run("decode", lambda: decoder.decode_all(encoded))
    pairs = list(zip(whole, encoded.device_images, strict=True))
    crops = stages.run("crop, resize, flip", lambda: [decoder.crop(d, i) for d, i in pairs])
    slots = [None] * len(encoded)
    placed = [
        *zip(encoded.device_positions, crops, strict=True),
        *zip(encoded.decoded_positions, in_workers, strict=True),
    ]
    for position, image in placed:
        slots[position] = image
    finished = stages.run("device stage", lambda: stage(torch.stack(slots), batch_generator(0, 0, 0, 0, device)))
    stages.run("training step", lambda: step(finished, labels))


def profile_rows(folder: Path, s: Setting, batches: int = 20) -> list[dict]:
    """Per stage of a decode-on-device batch, run one after another and timed apart: the training process's
    main-thread CPU ms and the device's ms per batch; the workers' and the other threads' CPU ms per batch."""
    device = default_device()
    loader, decoder, stage, step = _profile_parts(folder, s, device)
    stream, stages, me = endless(loader), _Stages(device), psutil.Process()
    for _ in range(max(2, s.workers)):  # warm-up: every worker started, cuDNN's choices made
        _one_batch(stages, stream, decoder, stage, step, device)
    stages.collect()
    stages.cpu_ms.clear(), stages.device_ms.clear()
    workers_before = sum(sum(c.cpu_times()[:2]) for c in me.children(recursive=True))
    process_before, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        _one_batch(stages, stream, decoder, stage, step, device)
        stages.collect()
    wall = time.perf_counter() - wall
    workers = sum(sum(c.cpu_times()[:2]) for c in me.children(recursive=True)) - workers_before
    main_thread = sum(stages.cpu_ms.values())
    rows = [
        {"stage": name, "training_process_cpu_ms": stages.cpu_ms[name] / batches,
         "device_ms": stages.device_ms[name] / batches if stages.cuda else None}
        for name in PROFILE_STAGES
    ]  # fmt: skip
    other = 1000 * (time.process_time() - process_before) - main_thread
    rows.append({"stage": "other threads of the training process", "training_process_cpu_ms": other / batches})
    rows.append({"stage": f"{s.workers} workers (bytes, header, draws, fallbacks, collation)",
                 "worker_cpu_ms": 1000 * workers / batches})  # fmt: skip
    rows.append({"stage": "wall per batch, stages one after another", "wall_ms": 1000 * wall / batches})
    return rows


def profile_command(folder: Path, quick: bool) -> list[str]:
    return script_command("main_job", *(["--quick"] if quick else []), "profile", "--folder", str(folder))


def profile_process(folder: Path, quick: bool, timeout: float) -> list[dict]:
    """profile_rows in a process of its own (its workers and device memory its own)."""
    result = subprocess.run(profile_command(folder, quick), capture_output=True, text=True, cwd=ROOT,
                            timeout=timeout)  # fmt: skip
    line = next((x for x in result.stdout.splitlines() if x.startswith("profile ")), None)
    if line is None:
        raise RuntimeError(f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(line[len("profile ") :])


# ---- timing a row ----------------------------------------------------------------------------------------------------

PROGRESS = (re.compile(r"^update (\d+)$"), re.compile(r"Train: \d+ \[\s*(\d+)/"))


class Sampler:
    """GPU utilisation and memory (nvidia-smi, every 200 ms), the host's busy cores and a process tree's resident
    memory (psutil, every 200 ms), each sample stamped."""

    def __init__(self, pid: int):
        self.tree, self.samples, self.gpu = psutil.Process(pid), [], []
        self.stop = threading.Event()
        self.smi = None
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
            self.smi = subprocess.Popen([*query, "-lms", "200"], stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read_smi, daemon=True).start()
        psutil.cpu_percent(interval=None)
        threading.Thread(target=self._sample, daemon=True).start()

    def _read_smi(self) -> None:
        for line in self.smi.stdout:
            util, memory = (float(v) for v in line.split(",")[:2])
            self.gpu.append((time.perf_counter(), util, memory))

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            try:
                processes = [self.tree, *self.tree.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in processes if p.is_running())
            except psutil.Error:
                continue
            cores = psutil.cpu_percent(interval=None) / 100 * psutil.cpu_count()
            self.samples.append((time.perf_counter(), cores, rss / 2**20))

    def close(self) -> None:
        self.stop.set()
        if self.smi is not None:
            self.smi.terminate()
            self.smi.wait()

    def summary(self, start: float, end: float) -> dict:
        window = [s for s in self.samples if start <= s[0] <= end]
        gpu = [g for g in self.gpu if start <= g[0] <= end]
        return {
            "gpu_util_pct": sum(g[1] for g in gpu) / len(gpu) if gpu else None,
            "gpu_memory_peak_mib": max((g[2] for g in self.gpu), default=None),
            "host_cores_busy": sum(s[1] for s in window) / len(window) if window else None,
            "host_rss_peak_mib": max((s[2] for s in self.samples), default=None),
        }


def _stop(process: subprocess.Popen) -> None:
    """End the row's process and everything it started (its own session: DataLoader workers included)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def time_row(command: list[str], s: Setting, timeout: float) -> dict:
    """Start a row's process, stamp its progress lines, time the window, stop it; the window's samples."""
    start_at, end_at = s.warmup, s.warmup + s.timed
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               env=env, start_new_session=True)  # fmt: skip
    sampler, marks, config, tail = Sampler(process.pid), [], None, []
    deadline = threading.Timer(timeout, lambda: _stop(process))
    deadline.start()
    try:
        for line in process.stdout:
            now, line = time.perf_counter(), line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith("config "):
                config = json.loads(line[len("config ") :])
            update = next((int(m[1]) for p in PROGRESS if (m := p.search(line))), None)
            if update is None:
                continue
            if update >= start_at and not marks:
                marks.append((update, now))
            elif update >= end_at and marks:
                marks.append((update, now))
                break
    finally:
        deadline.cancel()
        _stop(process)
        sampler.close()
    if len(marks) < 2:
        raise RuntimeError(f"no steady window (exit {process.returncode}): {' | '.join(tail[-3:])}")
    (first, t1), (last, t2) = marks
    return {"img_per_s": (last - first) * s.batch / (t2 - t1), "updates_timed": last - first,
            "window_s": t2 - t1, **sampler.summary(t1, t2), **({"config": config} if config else {})}  # fmt: skip


def measure(folder: Path, train_py: Path | None, out: Path, s: Setting, quick: bool, budget_s: float) -> list[dict]:
    """Every row, each within what is left of `budget_s`; a row that fails or runs out of time says so."""
    rows, started = [], time.perf_counter()
    for name, command in row_commands(folder, train_py, out, s, quick, torch.cuda.is_available()).items():
        left = budget_s - (time.perf_counter() - started)
        row = {"setting": name, "command": shlex.join(command)}
        try:
            if left < 30:
                raise TimeoutError("no time left in the step's budget")
            row.update(time_row(command, s, timeout=left))
        except (RuntimeError, TimeoutError, OSError) as e:
            row["error"] = str(e)[:300]
        rows.append(row)
        print(json.dumps(row, default=str)[:600], flush=True)
    bare = next((r["img_per_s"] for r in rows if r["setting"].startswith("bare") and "img_per_s" in r), None)
    for row in rows:
        row["vs_bare_model"] = row["img_per_s"] / bare if bare and "img_per_s" in row else None
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.main_job", description=__doc__.splitlines()[0])
    p.add_argument("row", nargs="?", choices=("harness", "bare", "profile"), help="one row's process (prints lines)")
    p.add_argument("--folder", type=Path, help="a folder with train/ and val/ (made here when absent)")
    p.add_argument("--decode-on", default="device", choices=("device", "workers"))
    p.add_argument("--timm-train-py", type=Path, help="timm's train.py, from a pytorch-image-models checkout")
    p.add_argument("--quick", action="store_true", help="a tiny setting a CPU can run")
    p.add_argument("--budget-s", type=float, default=300)
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    s = setting(args.quick)
    if args.row == "harness":
        harness_row(args.folder, args.decode_on, s)
    elif args.row == "bare":
        bare_row(s)
    elif args.row == "profile":
        print("profile " + json.dumps(profile_rows(args.folder, s, batches=3 if args.quick else 20)), flush=True)
    else:
        folder = args.folder if args.folder and args.folder.is_dir() else make_folder(args.folder, s.images, s.classes)
        record = {"rows": measure(folder, args.timm_train_py, folder.parent / "outputs", s, args.quick, args.budget_s)}
        record["profile"] = profile_process(folder, args.quick, timeout=300)
        if args.out:
            args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(json.dumps(record, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
