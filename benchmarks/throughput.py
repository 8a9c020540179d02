"""Training throughput, side by side in one process tree on one machine: the model alone, the harness end to
end (in-memory and per-image data paths), and a plain torchvision DataLoader pipeline as the seeds build it.

    python -m benchmarks.throughput                       # ResNet-18, Fashion-MNIST, 28 px, batch 128
    python -m benchmarks.throughput --readme benchmarks/README.md --record benchmarks/results/throughput-cpu.json

On a GPU the same rows are measured at 224 px too, with the achieved TFLOP/s and its share of the
device's dense bf16 peak (MFU), and RSB A3's setting is added: ResNet-50 at its 160 px train size, bf16,
channels_last, micro-batch 256 (its global batch 2048 through accumulation): the model alone, and the harness's
per-image path timed by `--estimate` (the share of each step spent waiting for data), with and without --compile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torchvision.transforms as T
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import ROOT, default_device, harness_command, seconds_per_call, sync, write_readme
from harness.build import build_model, build_optimizer, build_train_loss
from harness.data import build_datasets
from harness.data.memory import BatchAugment
from harness.results import versions
from recipes import get_recipe

# ResNet-18 with flips, rotation and colour jitter, trained here from scratch and with nothing frozen, so every
# row runs the full forward and backward pass.
RECIPE = "resnet18_fmnist_transfer"
MARK_START, MARK_END = "<!-- throughput:start -->", "<!-- throughput:end -->"
# Dense bf16 peak TFLOP/s by device name (vendor data sheets, SXM parts).
BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def bench_recipe(size: int, batch: int):
    recipe = get_recipe(RECIPE)
    return dataclasses.replace(
        recipe, pretrained=False, freeze_epochs=0, img_size=size, test_img_size=size, batch_size=batch
    )


def flops_per_image(recipe, batch: int) -> float:
    """Forward + backward FLOPs of one training image (torch's flop counter, on the CPU)."""
    model = build_model(recipe, 10).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, recipe.img_size, recipe.img_size).contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / batch


def _train_steps(model, optimizer, loss_fn, batches, steps: int, warmup: int, amp: bool) -> float:
    """img/s over `steps` updates after `warmup`; `batches` yields (images, labels) on the device."""
    model.train()
    seen, start = 0, None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync(default_device())
            start, seen = time.perf_counter(), 0
        with torch.autocast(default_device().type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
        if i + 1 == warmup + steps:
            break
    sync(default_device())
    return seen / (time.perf_counter() - start)


def model_only(recipe, steps: int, warmup: int) -> float:
    """The ceiling: forward, backward and optimizer step on one fixed random batch already on the device."""
    dev = default_device()
    model = build_model(recipe, 10).to(dev, memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, model)
    x = torch.randn(recipe.batch_size, 3, recipe.img_size, recipe.img_size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (recipe.batch_size,), device=dev)
    batches = iter(lambda: (x, y), None)
    return _train_steps(model, optimizer, build_train_loss(recipe, False), batches, steps, warmup, dev.type == "cuda")


def dataloader_pipeline(recipe, steps: int, warmup: int, workers: int, data_dir: Path | None) -> float:
    """The seeds' way: per-image PIL transforms in DataLoader workers, batches copied to the device."""
    dev = default_device()
    transform = T.Compose(
        [
            T.Grayscale(num_output_channels=3),
            T.RandomRotation(recipe.rotate),
            T.Resize(recipe.img_size),
            T.RandomHorizontalFlip(recipe.hflip),
            T.ColorJitter(recipe.color_jitter, recipe.color_jitter, recipe.color_jitter),
            T.ToTensor(),
            T.Normalize(recipe.mean, recipe.std),
        ]
    )
    train_set, _, _ = build_datasets("fashion_mnist", data_dir, False, transform, None)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=recipe.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        persistent_workers=workers > 0,
    )
    model = build_model(recipe, 10).to(dev, memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, model)

    def batches():
        while True:
            for x, y in loader:
                yield x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)

    return _train_steps(model, optimizer, build_train_loss(recipe, False), batches(), steps, warmup, dev.type == "cuda")


def augment_seconds(recipe, steps: int, warmup: int) -> float:
    """Seconds the in-memory path spends augmenting one batch on the device: its share of each training step."""
    dev = default_device()
    augment = BatchAugment(recipe, dev)
    batch = torch.randint(0, 256, (recipe.batch_size, 1, 28, 28), dtype=torch.uint8, device=dev)
    generator = torch.Generator(device=dev).manual_seed(0)
    return seconds_per_call(lambda: augment(batch, generator), steps, warmup, dev)


def harness_run(size: int, batch: int, loader: str, workers: int, data_dir: Path | None) -> dict:
    """One epoch of the real harness on Fashion-MNIST; its record gives the steady training img/s."""
    with tempfile.TemporaryDirectory() as out:
        command = harness_command(
            "--recipe", RECIPE, "--dataset", "fashion_mnist", "--epochs", "1", "--batch-size", str(batch),
            "--set", "pretrained=False", "--set", "freeze_epochs=0", "--set", f"img_size={size}",
            "--set", f"test_img_size={size}", "--loader", loader, "--workers", str(workers), "--output", out,
        )  # fmt: skip
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            raise SystemExit(f"error: the harness run failed:\n{result.stderr[-2000:]}")
        summary = json.loads(next(Path(out).glob("*/summary.json")).read_text())
    return {"img_per_s": summary["train_img_per_s"], "peak_rss_mb": summary["peak_rss_mb"],
            "data_path": summary["data_path"]}  # fmt: skip


def peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def measure(size: int, batch: int, steps: int, warmup: int, workers: int, data_dir: Path | None) -> list[dict]:
    recipe = bench_recipe(size, batch)
    flops = flops_per_image(recipe, min(batch, 8))
    rows = [
        {"setting": "model only (fixed random batch)", "img_per_s": model_only(recipe, steps, warmup)},
        {"setting": "harness, in-memory path", **harness_run(size, batch, "memory", 0, data_dir)},
        {"setting": f"harness, per-image path ({workers} workers)",
         **harness_run(size, batch, "workers", workers, data_dir)},
        {"setting": f"torchvision DataLoader, PIL per image ({workers} workers)",
         "img_per_s": dataloader_pipeline(recipe, steps, warmup, workers, data_dir)},
    ]  # fmt: skip
    peak = peak_tflops()
    for row in rows:
        row.update({"img_size": size, "batch": batch})
        row["tflops"] = row["img_per_s"] * flops / 1e12
        row["mfu_pct"] = 100 * row["tflops"] / peak if peak else None
    model, harness, loader = rows[0]["img_per_s"], rows[1]["img_per_s"], rows[3]["img_per_s"]
    rows[1]["vs_model_only"] = harness / model
    rows[1]["vs_dataloader"] = harness / loader
    augment = augment_seconds(recipe, steps, warmup)
    rows[1]["data_share_pct"] = 100 * augment / (augment + batch / model)
    return rows


RSB_A3_MICRO_BATCH = 256


def rsb_a3_rows(steps: int, warmup: int, workers: int, data_dir: Path | None) -> list[dict]:
    """GPU only. `--estimate` times the per-image path on --data-dir's ImageNet, or on synthetic images of its
    shape (no JPEG decoding) when none is given; the model-only row trains one fixed random batch."""
    recipe = dataclasses.replace(get_recipe("rsb_a3"), batch_size=RSB_A3_MICRO_BATCH)  # img_size 160
    flops = flops_per_image(recipe, 8)
    model = model_only(recipe, steps, warmup)
    rows = [{"setting": "RSB A3: ResNet-50 model only (fixed random batch, bf16)", "img_per_s": model}]
    for compiled in (False, True):
        with tempfile.TemporaryDirectory() as out:
            command = harness_command(
                "--recipe", "rsb_a3", "--estimate", "--micro-batch", str(RSB_A3_MICRO_BATCH),
                "--workers", str(workers), "--output", out,
            )  # fmt: skip
            command += ["--compile"] if compiled else []
            command += ["--data-dir", str(data_dir)] if data_dir is not None else []
            subprocess.run(command, check=True, cwd=ROOT)
            estimate = json.loads(next(Path(out).glob("*/estimate.json")).read_text())
        rows.append({
            "setting": f"RSB A3: harness per-image path ({workers} workers){', --compile' if compiled else ''}",
            "img_per_s": estimate["img_per_s"],
            "vs_model_only": estimate["img_per_s"] / model,
            "data_share_pct": 100 * estimate["data_wait_share"],
        })  # fmt: skip
    peak = peak_tflops()
    for row in rows:
        row.update({"img_size": recipe.img_size, "batch": RSB_A3_MICRO_BATCH})
        row["tflops"] = row["img_per_s"] * flops / 1e12
        row["mfu_pct"] = 100 * row["tflops"] / peak if peak else None
    return rows


def render(rows: list[dict], meta: dict) -> str:
    frame = pd.DataFrame(rows)
    shown = pd.DataFrame(
        {
            "setting": frame["setting"],
            "px": frame["img_size"],
            "batch": frame["batch"],
            "img/s": frame["img_per_s"].map("{:.0f}".format),
            "TFLOP/s": frame["tflops"].map("{:.3f}".format),
            "MFU": frame["mfu_pct"].map(lambda v: "—" if pd.isna(v) else f"{v:.1f}%"),
            "harness / model only": frame.get("vs_model_only", pd.Series(dtype=float)).map(
                lambda v: "" if pd.isna(v) else f"{v:.2f}"
            ),
            "harness / DataLoader": frame.get("vs_dataloader", pd.Series(dtype=float)).map(
                lambda v: "" if pd.isna(v) else f"{v:.2f}"
            ),
            "augmentation / data-wait share of a step": frame.get("data_share_pct", pd.Series(dtype=float)).map(
                lambda v: "" if pd.isna(v) else f"{v:.1f}%"
            ),
            "peak RSS": frame.get("peak_rss_mb", pd.Series(dtype=float)).map(
                lambda v: "" if pd.isna(v) else f"{v:.0f} MiB"
            ),
        }
    )
    header = (
        f"`{meta['command']}` on {meta['device']}, torch {meta['versions']['torch']}, "
        f"{meta['cpu_threads']} CPU threads, {meta['measured_at']}:"
    )
    return header + "\n\n" + shown.to_markdown(index=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="timed updates for the in-process rows")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-image rows")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--imagenet-dir", type=Path, help="GPU rows: ImageNet train/ and val/ (default: synthetic)")
    p.add_argument("--record", type=Path, help="also write the rows as JSON here")
    p.add_argument("--readme", type=Path, help="replace the throughput block of this Markdown file")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    sizes = [28, 224] if torch.cuda.is_available() else [28]
    rows = [row for size in sizes for row in measure(size, args.batch_size, args.steps, args.warmup, args.workers,
                                                      args.data_dir)]  # fmt: skip
    if torch.cuda.is_available():
        rows += rsb_a3_rows(args.steps, args.warmup, args.workers, args.imagenet_dir)
    meta = {
        "command": "python -m benchmarks.throughput" + (" " + " ".join(argv) if argv else ""),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
        "cpu_threads": torch.get_num_threads(),
        "versions": versions(),
        "measured_at": time.strftime("%Y-%m-%d"),
    }
    table = render(rows, meta)
    print(table)
    if args.record:
        args.record.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    if args.readme:
        write_readme(args.readme, table, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
