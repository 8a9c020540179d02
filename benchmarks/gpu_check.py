"""The GPU check: what the harness does on one GPU, measured in one command of a few minutes, written as JSON and
Markdown with the device named. `benchmarks/gpu_check.sh` installs what it needs and runs it.

    python -m benchmarks.gpu_check --data-dir DIR_WITH_FASHION_MNIST --out benchmarks/results/gpu-check
    python -m benchmarks.gpu_check --quick ...     # every step at a tiny size (a CPU can run it)

Steps, each timed and recorded even when another fails, the most telling first; a step that would overrun the
check's time budget (`--budget-s`) is recorded as skipped. Correctness comes before speed:
-  cuda_tests, first: the tests marked `cuda` (`python -m pytest -m cuda` over the test modules that mark any),
   their passed/failed/errors/skipped counts and the failing tests' ids kept in the record; a failing test is the
   step's error (the check exits 1), and the measurements follow all the same.
0. The main job end to end (`python -m benchmarks.main_job`): RSB A3 at its published setting (ResNet-50, 160 px, bf16,
   channels_last, LAMB, BCE, Mixup/CutMix, RandAugment on the device, per-process batch 256) trained from a folder of
   51,200 generated ImageNet-sized JPEGs, timed in the steady state, for the harness with decode on the device and in
   14 workers, timm's train.py (`--timm-train-py`) with its prefetcher and 14 workers, and the bare model; then where
   a decode-on-device batch's time goes (the profile).
1. ResNet-50 at RSB A3's 160 px, bf16, channels_last, micro-batch 256 on a fixed random batch: the model alone
   (forward, BCE loss, backward, LAMB step) against the harness's training step (accelerate, Mixup/CutMix, the
   device-side tally, the schedule), without and with torch.compile.
2. The per-image path on a folder of generated ImageNet-sized JPEGs: timm's train.py loader with its prefetcher
   against the harness's (policy in the workers, on the device, and decode on the device), end to end with 14
   workers, timed after 28 warm-up batches on the main job's folder.
3. `rsb_a3 --budget proxy` (one epoch) on Fashion-MNIST on the in-memory path and on the per-image path, then
   `--eval-only` of the in-memory run's weights, which must give the run's own evaluation.
4. The recipes' RandAugment/AutoAugment/AugMix policies on the device: time per batch, no host sync, the same draws
   giving the CPU's images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import torch
from accelerate.state import AcceleratorState

from benchmarks import autoaugment_device, data_path, main_job
from benchmarks.common import (
    ROOT,
    default_device,
    fixed_batch,
    harness_command,
    make_jpeg_folder,
    model_step,
    rsb_a3,
    seconds_per_call,
    write_readme,
)
from harness.accelerator import make_accelerator
from harness.build import build_mixup, build_model, build_optimizer, build_scheduler, build_train_loss
from harness.engine import DeviceTally, Trainer, count_update, train_micro_step
from harness.results import atomic_write_json, atomic_write_text, versions

WORKERS = 14


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} ({os.cpu_count()} CPU cores)"
    return f"CPU ({os.cpu_count()} cores), no GPU"


def _timed(step, steps: int, warmup: int, images_per_step: int) -> float:
    """Images per second of `step` over `steps` calls after `warmup`."""
    return images_per_step / seconds_per_call(step, steps, warmup, default_device())


def harness_step(micro: int, size: int, compiled: bool):
    """The harness's own training step on the same batch: accelerate (bf16, prepare, backward), timm's Mixup/CutMix,
    the device-side tally and the schedule, as `engine.train_one_epoch` runs it."""
    AcceleratorState._reset_state(reset_partial_state=True)
    recipe = rsb_a3(micro, size)
    accelerator = make_accelerator(recipe.amp, compile_model=compiled, amp_dtype="bfloat16")
    model = build_model(recipe, 1000).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, model)
    model, optimizer = accelerator.prepare(model, optimizer)
    trainer = Trainer(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(recipe, optimizer, 1000)[0],
        train_loss=build_train_loss(recipe, True),
        train_loader=None,
        eval_loader=None,
        num_classes=1000,
        global_batch_size=micro,
        mixup=build_mixup(recipe, 1000),
    )
    tally = DeviceTally(accelerator.device)
    images, labels = fixed_batch(micro, size, accelerator.device)

    def step() -> None:
        if train_micro_step(trainer, images, labels, tally):
            count_update(trainer)

    return step


def step_rows(quick: bool, deadline: float) -> list[dict]:
    """Model alone vs the harness's training step on one fixed random batch, without and with torch.compile (the
    compiled pair only while time is left before `deadline`)."""
    micro, size, steps, warmup = (8, 64, 2, 1) if quick else (256, 160, 30, 10)
    rows = []
    for compiled in (False, True):
        if compiled and time.perf_counter() > deadline:
            rows.append({"setting": "torch.compile pair", "skipped": "no time left in the check's budget"})
            continue
        label = ", torch.compile" if compiled else ""
        model = _timed(model_step(micro, size, compiled), steps, warmup + (2 if compiled else 0), micro)
        harness = _timed(harness_step(micro, size, compiled), steps, warmup + (2 if compiled else 0), micro)
        rows.append(
            {
                "setting": f"ResNet-50 {size} px, bf16, channels_last, batch {micro}{label}",
                "model_only_img_per_s": model,
                "harness_img_per_s": harness,
                "harness_vs_model": harness / model,
            }
        )
    return rows


LOADER_PIPELINES = [
    "timm train.py, prefetcher",
    "harness, policy in workers",
    "harness, policy on the device",
    "harness, decode on the device",
]


def loader_rows(quick: bool, folder: Path, rate_folder: Path) -> list[dict]:
    """Worker CPU per image over `folder` (one worker), and the steady rate over `rate_folder` with 14 workers after
    two batches per worker."""
    device = default_device()
    workers = (2,) if quick else (WORKERS,)
    batch, epochs, batches = (16, 1, 3) if quick else (data_path.A3_MICRO_BATCH, 1, 40)
    warmup = 2 * workers[0]
    return data_path.measure(folder, batch, epochs, batches, LOADER_PIPELINES, workers, device, warmup, rate_folder)


def main_job_rows(quick: bool, root: Path, timm_train_py: Path | None, budget_s: float) -> dict:
    """benchmarks.main_job: its folder made here (one process per core), its rows and its profile."""
    s = main_job.setting(quick)
    started = time.perf_counter()
    folder = main_job.make_folder(root / "main-job" / "jpegs", s.images, s.classes)
    made_s = time.perf_counter() - started
    rows = main_job.measure(folder, timm_train_py, root / "main-job" / "outputs", s, quick, budget_s - made_s - 60)
    profile = main_job.profile_process(folder, quick, timeout=max(30, budget_s - (time.perf_counter() - started)))
    return {"rows": rows, "profile": profile, "images": s.images, "folder_s": made_s, "setting": dataclasses.asdict(s)}


def _run(args: list[str], timeout: int) -> dict:
    """The harness's run in a fresh interpreter; its summary.json."""
    with tempfile.TemporaryDirectory() as out:
        command = harness_command(*args, "--output", out)
        print("+ " + " ".join(command), flush=True)
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
        return json.loads(next(Path(out).glob("*/summary.json")).read_text())


RUN_KEYS = (
    "data_path",
    "augment_on",
    "worker_output",
    "eval_top1",
    "eval_loss",
    "eval_samples",
    "train_img_per_s",
    "wall_time_s",
    "mixed_precision",
    "epochs_run",
    "device",
)


def proxy_rows(quick: bool, data_dir: Path | None, weights: Path) -> list[dict]:
    """rsb_a3 at the proxy budget on Fashion-MNIST on both paths; --eval-only of the in-memory run's weights."""
    epochs = "1"
    data = ["--dataset", "fashion_mnist"] + (["--data-dir", str(data_dir)] if data_dir else [])
    base = ["--recipe", "rsb_a3", "--budget", "smoke" if quick else "proxy", "--epochs", epochs, *data]
    rows = []
    memory = _run([*base, "--loader", "memory", "--save-weights", str(weights)], 600)
    rows.append({"setting": f"rsb_a3 proxy, {epochs} epochs, in-memory path", **{k: memory[k] for k in RUN_KEYS}})
    workers = "2" if quick else str(WORKERS)
    per_image = _run([*base, "--loader", "workers", "--workers", workers], 600)
    rows.append(
        {
            "setting": f"rsb_a3 proxy, {epochs} epochs, per-image path ({workers} workers)",
            **{k: per_image[k] for k in RUN_KEYS},
        }
    )
    evaluated = _run([*base, "--loader", "memory", "--eval-only", "--pretrained-file", str(weights)], 300)
    row = {"setting": "--eval-only of the in-memory run's weights", **{k: evaluated.get(k) for k in RUN_KEYS}}
    row["equals_run"] = (evaluated["eval_top1"], evaluated["eval_loss"]) == (memory["eval_top1"], memory["eval_loss"])
    row["loss_difference"] = abs(evaluated["eval_loss"] - memory["eval_loss"])
    rows.append(row)
    return rows


POLICY_LABELS = ("rsb_a3", "rsb_a1", "v0", "augmix")


def policy_rows(quick: bool) -> list[dict]:
    """The recipes' policies on the device: time per batch of 256 x 3 x 160 x 160, no host sync, the same draws
    equal on the CPU (benchmarks.autoaugment_device)."""
    device = default_device()
    batch, size = (8, 32) if quick else (256, 160)
    args = argparse.Namespace(size=size, reps=3 if quick else 20)
    images = autoaugment_device.crops(batch, size)
    cpu_batch = torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images])
    rows = []
    for label in POLICY_LABELS[:1] if quick else POLICY_LABELS:
        row = autoaugment_device.measure(label, args, images, cpu_batch, cpu_batch.to(device), device)
        rows.append({"policy": label, **{k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()}})
    return rows


CUDA_TESTS_TIMEOUT_S = 240


def cuda_test_files(tests: Path = ROOT / "tests") -> list[Path]:
    """The test modules that mark tests `cuda` (only they are collected: the others may import what the GPU
    machine lacks)."""
    return sorted(path for path in tests.rglob("test_*.py") if "pytest.mark.cuda" in path.read_text())


def cuda_tests_command(junit: Path, files: list[Path]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
            *(str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f) for f in files)]  # fmt: skip


def junit_summary(junit: Path) -> dict:
    """Counts of a pytest JUnit report's outcomes, the failing tests (id, outcome, first line) and the skip reasons."""
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    failing, skip_reasons = [], set()
    for case in ElementTree.parse(junit).iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["skipped"] += 1
            skip_reasons.add(outcome.get("message", ""))
        else:
            counts["failed" if outcome.tag == "failure" else "errors"] += 1
            message = (outcome.get("message") or "").strip().splitlines()
            failing.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome.tag,
                            "message": message[0][:300] if message else ""})  # fmt: skip
    return {**counts, "failing": failing, "skip_reasons": sorted(skip_reasons)}


def cuda_tests(timeout: float, tests: Path = ROOT / "tests") -> dict:
    """The tests marked cuda, run first: the GPU code's correctness (decode stream, host waits, torch.compile, AMP)
    before any measurement. The outcome counts, the failing tests and the command."""
    files = cuda_test_files(tests)
    if not files:
        raise RuntimeError(f"no test module under {tests} marks tests cuda")
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "cuda_tests.xml"
        command = cuda_tests_command(junit, files)
        print("+ " + shlex.join(command), flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        print(result.stdout[-3000:], result.stderr[-2000:], flush=True)
        if not junit.is_file():  # pytest missing, or it could not start
            raise RuntimeError(f"pytest exit {result.returncode}, no report: {result.stderr.strip()[-300:]}")
        summary = junit_summary(junit)
    return {"command": shlex.join(command), "exit_status": result.returncode, **summary,
            "seconds": time.perf_counter() - started}  # fmt: skip


def _cuda_tests(record: dict) -> str:
    title = "### CUDA tests (`pytest -m cuda`), run before any measurement\n\n"
    result = record.get("cuda_tests")
    if not result:
        return title + "not run\n"
    counts = ", ".join(f"{result[k]} {k}" for k in ("passed", "failed", "errors", "skipped"))
    lines = [f"{counts} in {result['seconds']:.0f} s: `{result['command']}`"]
    lines += [f"- {f['outcome']}: {f['test']}: {f['message']}" for f in result["failing"]]
    lines += [f"- skipped: {reason}" for reason in result["skip_reasons"]]
    return title + "\n".join(lines) + "\n"


def _markdown(title: str, rows: list[dict]) -> str:
    if not rows:
        return f"### {title}\n\nnot measured\n"
    frame = pd.DataFrame(rows)
    return f"### {title}\n\n" + frame.to_markdown(index=False, floatfmt=".4g") + "\n"


MAIN_JOB_COLUMNS = {
    "setting": "setting",
    "img_per_s": "img/s",
    "vs_bare_model": "vs bare model",
    "gpu_util_pct": "GPU util %",
    "host_cores_busy": "host cores busy",
    "gpu_memory_peak_mib": "GPU memory peak (MiB)",
    "host_rss_peak_mib": "host RSS peak (MiB)",
    "updates_timed": "updates timed",
    "window_s": "window (s)",
    "error": "error",
}
PROFILE_COLUMNS = {
    "stage": "stage",
    "training_process_cpu_ms": "training process CPU ms / batch",
    "device_ms": "device ms / batch",
    "worker_cpu_ms": "worker CPU ms / batch",
    "wall_ms": "wall ms / batch",
}


def _table(title: str, rows: list[dict], columns: dict[str, str]) -> str:
    """A titled table of `columns` (those the rows have): a value measured as None (the device's time on a CPU)
    says not measured, one a row does not have is left empty."""
    if not rows:
        return f"### {title}\n\nnot measured\n"
    shown_columns = [c for c in columns if any(c in r for r in rows)]
    cells = [{c: ("not measured" if r[c] is None else r[c]) if c in r else "" for c in shown_columns} for r in rows]
    shown = pd.DataFrame(cells, columns=shown_columns).rename(columns=columns)
    return f"### {title}\n\n" + shown.to_markdown(index=False, floatfmt=".4g") + "\n"


def _main_job(record: dict) -> list[str]:
    job = record.get("main_job") or {}
    title = "RSB A3 from JPEGs end to end (steady state): the harness, timm's train.py and the bare model"
    if job:
        s = job["setting"]
        window = f"updates {s['warmup']}-{s['warmup'] + s['timed']}"
        title += f", {job['images']} JPEGs, batch {s['batch']}, {s['size']} px, {window}"
    profile_title = "Where a decode-on-device batch's time goes (stages run one after another, timed apart)"
    return [_table(title, job.get("rows", []), MAIN_JOB_COLUMNS),
            _table(profile_title, job.get("profile", []), PROFILE_COLUMNS)]  # fmt: skip


def render(record: dict) -> str:
    meta = record["meta"]
    lines = [
        f"`{meta['command']}` on {meta['device']}, torch {meta['versions']['torch']}, timm "
        f"{meta['versions']['timm']}, accelerate {meta['versions']['accelerate']}, {meta['measured_at']}, "
        f"{meta['seconds']:.0f} s in all.",
        "",
        _cuda_tests(record),
        *_main_job(record),
        _markdown("Training step: model alone vs the harness (fixed random batch)", record["step"]),
        _markdown("The recipes' RandAugment/AutoAugment/AugMix policies on the device", record["policy"]),
        _markdown("Per-image path on generated ImageNet-sized JPEGs", record["loader"]),
        _markdown("rsb_a3 on Fashion-MNIST, both data paths, and --eval-only of its weights", record["proxy"]),
    ]
    for step, error in record["errors"].items():
        lines.append(f"- {step} failed: {error}")
    for step, why in record.get("skipped", {}).items():
        lines.append(f"- {step} skipped: {why}")
    return "\n".join(lines) + "\n"


MARKS = ("<!-- gpu_check:start -->", "<!-- gpu_check:end -->")


def render_records(folder: Path, readme: Path | None) -> int:
    """gpu_check.md (and a README block) from the committed records: the check's, and a compiled pair's if any."""
    record = json.loads((folder / "gpu_check.json").read_text())
    compiled_file = folder / "compile.json"
    compiled = json.loads(compiled_file.read_text()) if compiled_file.is_file() else None
    text = render(with_compiled_pair(record, compiled))
    atomic_write_text(folder / "gpu_check.md", text)
    if readme is not None:
        write_readme(readme, text, *MARKS)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="Fashion-MNIST (the .gz files or FashionMNIST/raw)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu-check")
    p.add_argument("--images", type=int, default=1024, help="generated JPEGs for the loaders' worker CPU time")
    p.add_argument("--quick", action="store_true", help="every step at a tiny size")
    p.add_argument("--budget-s", type=float, default=500, help="the whole check's seconds: later steps are skipped")
    p.add_argument(
        "--timm-train-py", type=Path, help="timm's train.py (a pytorch-image-models checkout) for the main job"
    )
    p.add_argument("--steps", default=",".join(STEP_NEEDS_S), help=f"comma-separated, of {', '.join(STEP_NEEDS_S)}")
    p.add_argument("--dry-run", action="store_true", help="print each step and the commands it would run")
    p.add_argument("--compiled-only", action="store_true", help="measure only the torch.compile pair (compile.json)")
    p.add_argument("--render", action="store_true", help="render --out's records as Markdown (and --readme)")
    p.add_argument("--readme", type=Path, help="with --render: replace the GPU check block of this Markdown file")
    args = p.parse_args(argv)
    if args.compiled_only:
        atomic_write_json(args.out / "compile.json", compiled_pair())
        return 0
    if args.render:
        return render_records(args.out, args.readme)
    steps = [step for step in args.steps.split(",") if step]
    unknown = [step for step in steps if step not in STEP_NEEDS_S]
    if unknown:
        p.error(f"--steps {args.steps}: unknown step {unknown[0]}; steps: {', '.join(STEP_NEEDS_S)}")
    if args.dry_run:
        return dry_run(args, steps)
    return check(args, steps)


# The seconds a step needs at least on the GPU machine; one that has less left is recorded as skipped.
STEP_NEEDS_S = {"cuda_tests": 60, "main_job": 200, "policy": 10, "loader": 70, "step": 20, "proxy": 300}


def check(args: argparse.Namespace, names: list[str]) -> int:
    started = time.perf_counter()
    record = {"cuda_tests": {}, "main_job": {}, "step": [], "policy": [], "loader": [], "proxy": [], "errors": {}}
    record["skipped"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_jpeg_folder(Path(tmp) / "jpegs", 64 if args.quick else args.images)
        main_job_folder = Path(tmp) / "main-job" / "jpegs" / "train"
        steps = {  # correctness first, then the most telling: a later step may meet the time budget
            "cuda_tests": lambda left: cuda_tests(min(left, CUDA_TESTS_TIMEOUT_S)),
            "main_job": lambda left: main_job_rows(args.quick, Path(tmp), args.timm_train_py, min(left, 290)),
            "policy": lambda left: policy_rows(args.quick),
            "loader": lambda left: loader_rows(
                args.quick, folder, main_job_folder if main_job_folder.is_dir() else folder
            ),
            "step": lambda left: step_rows(args.quick, started + args.budget_s - 90),
            "proxy": lambda left: proxy_rows(args.quick, args.data_dir, Path(tmp) / "rsb_a3.safetensors"),
        }
        for name in names:
            left = args.budget_s - (time.perf_counter() - started)
            print(f"[{time.perf_counter() - started:.0f} s] {name}", flush=True)
            if left < STEP_NEEDS_S[name] and not args.quick:
                record["skipped"][name] = (
                    f"{left:.0f} s of the check's {args.budget_s:.0f} s left; it needs about {STEP_NEEDS_S[name]} s"
                )
                continue
            try:
                record[name] = steps[name](left)
            except Exception as e:  # one failing step must not lose the others' measurements
                traceback.print_exc()
                record["errors"][name] = f"{type(e).__name__}: {str(e)[:300]}"
            failing = record[name].get("failing") if isinstance(record[name], dict) else None
            if failing:  # tests that fail on the GPU: the check fails, its measurements still follow
                record["errors"][name] = f"{len(failing)} failing: " + ", ".join(f["test"] for f in failing)[:600]
            print(json.dumps(record[name], default=str)[:2000], flush=True)
            write(record, args, started)  # after every step, so a check cut short keeps what it measured
    print(render(record))
    return 1 if record["errors"] else 0


def dry_run(args: argparse.Namespace, names: list[str]) -> int:
    """Each step and what it runs, without running anything."""
    s = main_job.setting(args.quick)
    folder, out = Path("<tmp>/main-job/jpegs"), Path("<tmp>/main-job/outputs")
    descriptions = {
        "cuda_tests": "the tests marked cuda, before any measurement (counts and failing ids into the record)",
        "main_job": f"make {s.images} train JPEGs of 500x375 (quality 90) in {folder} ({s.classes} classes, one "
        f"process per core); time updates {s.warmup}-{s.warmup + s.timed} of each row (batch {s.batch}, "
        f"{s.size} px); then the profile",
        "policy": "the recipes' policies on the device (benchmarks.autoaugment_device)",
        "loader": f"loaders side by side: {', '.join(LOADER_PIPELINES)}",
        "step": "the training step: model alone vs the harness, without and with torch.compile",
        "proxy": "rsb_a3 --budget proxy --epochs 1 on Fashion-MNIST, both paths, then --eval-only",
    }
    for name in names:
        print(f"step {name} (needs about {STEP_NEEDS_S[name]} s): {descriptions[name]}")
        if name == "cuda_tests":
            print(f"  $ {shlex.join(cuda_tests_command(Path('<tmp>/cuda_tests.xml'), cuda_test_files()))}")
        if name == "main_job":
            rows = main_job.row_commands(folder, args.timm_train_py, out, s, args.quick, cuda=not args.quick)
            for setting, command in rows.items():
                print(f"  {setting}: $ {shlex.join(command)}")
            if args.timm_train_py is None:
                print("  timm train.py: not run (no --timm-train-py)")
            print(f"  profile: $ {shlex.join(main_job.profile_command(folder, args.quick))}")
    return 0


def compiled_pair() -> dict:
    """The torch.compile pair alone (for a second call when the check's time budget skipped it)."""
    rows = []
    for step in (model_step, harness_step):
        start = time.perf_counter()
        rows.append(
            {
                "setting": f"{step.__name__}, torch.compile",
                "img_per_s": _timed(step(256, 160, True), 30, 12, 256),
                "seconds_with_compile": time.perf_counter() - start,
            }
        )
    return {"device": device_name(), "rows": rows}


def with_compiled_pair(record: dict, compiled: dict | None) -> dict:
    """The check's record with a compiled pair measured in a second call on the same machine in its step table."""
    if compiled is None:
        return record
    model, harness = (row["img_per_s"] for row in compiled["rows"])
    step = [row for row in record["step"] if "skipped" not in row]
    step.append(
        {
            "setting": "ResNet-50 160 px, bf16, channels_last, batch 256, torch.compile (second call)",
            "model_only_img_per_s": model,
            "harness_img_per_s": harness,
            "harness_vs_model": harness / model,
        }
    )
    return {**record, "step": step}


def write(record: dict, args: argparse.Namespace, started: float) -> None:
    record["meta"] = {
        "command": "benchmarks/gpu_check.sh" + (" --quick" if args.quick else ""),
        "timm_train_py": str(args.timm_train_py) if args.timm_train_py else None,
        "device": device_name(),
        "versions": versions(),
        "measured_at": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(args.out / "gpu_check.json", record)
    atomic_write_text(args.out / "gpu_check.md", render(record))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
