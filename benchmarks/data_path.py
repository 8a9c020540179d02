"""The per-image data path side by side with timm's: worker CPU time per image of RSB A3's training pipeline on a
folder of ImageNet-sized JPEG photographs, and the loader's throughput end to end.

    python -m benchmarks.data_path                    # 2,000 JPEGs made under a temporary folder, 2 epochs
    python -m benchmarks.data_path --record benchmarks/results/data-path-cpu.json --readme benchmarks/README.md

Pipelines, each RSB A3's training transform at its published setting (160 px random-resized crop, bicubic, flip,
rand-m6-mstd0.5-inc1, ImageNet mean/std):
- timm's `train.py` loader without its prefetcher (workers convert to float and normalise) and with it (workers
  hand over uint8; normalisation runs in the main process / on the device), built by `timm.data.create_loader` over
  `timm.data.create_dataset` exactly as train.py builds them;
- the harness's per-image path with the policy in the workers, and with the policy on the device (workers decode,
  crop, flip and hand over uint8; RandAugment, normalisation and erasing run per batch on the device).

Worker CPU time is the operating system's account of the worker processes (user + system seconds of the children,
read when they have exited) over two epochs with one worker, divided by the images they produced. End to end is the
wall-clock rate of iterating the loader with 1 and 2 workers, the device stage included (on a CPU-only machine the
"device" is the same cores the workers use).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from accelerate.data_loader import prepare_data_loader
from timm.data import create_dataset, create_loader

from benchmarks.common import endless, make_jpeg_folder, sync, write_readme
from harness.build import transform_kwargs
from harness.data.autoaugment import device_policy
from harness.data.capabilities import unsupported_on_device
from harness.data.decode import DecodingLoader, DeviceDecoder, EncodedTrainTransform, collate_encoded
from harness.data.device import DeviceLoader, DeviceStage
from harness.data.loader import make_loader
from harness.data.readers.folder import SkippingImageFolder
from harness.data.transforms import build_transforms
from harness.results import versions
from recipes import get_recipe

MARKS = ("<!-- data_path:start -->", "<!-- data_path:end -->")
CPU = torch.device("cpu")
A3_MICRO_BATCH = 256  # RSB A3's global batch of 2048 as 8 micro-batches of 256 on one GPU


def a3_recipe():
    return get_recipe("rsb_a3")


def timm_loader(folder: Path, batch: int, workers: int, prefetcher: bool, device: torch.device = CPU):
    """timm's train.py loader for RSB A3's arguments (its defaults where A3 sets nothing)."""
    recipe = a3_recipe()
    dataset = create_dataset("", root=str(folder), is_training=True)
    transform = transform_kwargs(recipe, is_training=True, input_size=(3, recipe.img_size, recipe.img_size))
    return create_loader(
        dataset,
        **transform,
        batch_size=batch,
        mean=recipe.mean,
        std=recipe.std,
        re_prob=recipe.reprob,
        num_workers=workers,
        device=device,
        use_prefetcher=prefetcher,
        pin_memory=device.type == "cuda",
    )


def harness_loader(
    folder: Path, batch: int, workers: int, policy_on_device: bool, device: torch.device = CPU, decode: bool = False
):
    """The harness's per-image path: uint8 workers, accelerate's move to the device (pinned, non-blocking on a GPU),
    then the device stage (the policy there or in the workers). With `decode` the workers hand over JPEG bytes and
    timm's draws, decoded on `device` one batch ahead (harness.data.decode)."""
    recipe = a3_recipe()
    train_tf, _ = build_transforms(recipe, 3, aa_in_workers=not policy_on_device)
    cuda = device.type == "cuda"
    dataset = SkippingImageFolder(folder, EncodedTrainTransform(recipe) if decode else train_tf)
    loader = make_loader(dataset, batch, True, workers, 0, cuda, collate_fn=collate_encoded if decode else None)
    loader = prepare_data_loader(
        loader, device, num_processes=1, process_index=0, put_on_device=True, non_blocking=cuda
    )
    policy = device_policy(recipe, device) if policy_on_device else None
    stage = DeviceStage(recipe, device, train=True, policy=policy)
    if decode:
        return DecodingLoader(loader, stage, DeviceDecoder(recipe.img_size, device, dataset), 0, 0, device)
    return DeviceLoader(loader, stage, 0, 0, device)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker_ms_per_image(make, epochs: int) -> dict:
    """CPU milliseconds one worker process spends per image, over `epochs` epochs (the worker exits after each)."""
    images, cpu = 0, 0.0
    for epoch in range(epochs):
        loader = make()
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        before = _children_cpu_s()
        iterator = iter(loader)
        for x, _ in iterator:
            images += len(x)
        del iterator, loader
        gc.collect()  # the workers exit and their CPU time is accounted to this process
        cpu += _children_cpu_s() - before
    return {"worker_ms_per_image": 1000 * cpu / images, "images": images}


def end_to_end(make, batches: int, device: torch.device = CPU, warmup: int = 1) -> float:
    """Images per second through the whole loader (workers and the per-batch work on the device), epoch after
    epoch, each batch on the device as a float tensor when the clock stops; the clock starts after `warmup`
    batches (workers spawned, their queues filled: the steady state)."""
    loader = make()
    stream = endless(loader)
    for _ in range(warmup):
        next(stream)
    sync(device)
    seen, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(stream):
        x = x.to(device, non_blocking=True).float()  # timm's loader without prefetcher leaves this to train.py
        seen += len(x)
        if i + 1 == batches:
            break
    sync(device)
    elapsed = time.perf_counter() - start
    del stream, loader
    gc.collect()
    return seen / elapsed


PIPELINES = {
    "timm train.py, no prefetcher": lambda f, b, w, d: timm_loader(f, b, w, False, d),
    "timm train.py, prefetcher": lambda f, b, w, d: timm_loader(f, b, w, True, d),
    "harness, policy in workers": lambda f, b, w, d: harness_loader(f, b, w, False, d),
    "harness, policy on the device": lambda f, b, w, d: harness_loader(f, b, w, True, d),
    # decode_jpeg on `d`: on a CPU-only machine the host decodes, the same code path as nvJPEG's on a GPU
    "harness, decode on the device": lambda f, b, w, d: harness_loader(f, b, w, True, d, decode=True),
}
REFERENCE = "timm train.py, prefetcher"


def measure(
    folder: Path,
    batch: int,
    epochs: int,
    batches: int,
    only: list[str] | None,
    workers: tuple[int, ...] = (1, 2),
    device: torch.device = CPU,
    warmup: int = 1,
    rate_folder: Path | None = None,
) -> list[dict]:
    """Per pipeline: one worker's CPU time per image (worker-side work is the same whatever the device), and the
    end-to-end rate with each count of `workers` after `warmup` batches (on `rate_folder`, default `folder`)."""
    rows = []
    for name, make in PIPELINES.items():
        if only and name not in only:
            continue
        if "on the device" in name and unsupported_on_device(a3_recipe()):
            continue
        torch.manual_seed(0)
        row = {"pipeline": name, **worker_ms_per_image(lambda m=make: m(folder, batch, 1, CPU), epochs)}
        for n in workers:
            make_n = lambda m=make, n=n: m(rate_folder or folder, batch, n, device)  # noqa: E731
            row[f"img_per_s_{n}w"] = end_to_end(make_n, batches, device, warmup)
        rows.append(row)
        print(f"{name}: {row['worker_ms_per_image']:.2f} ms/image", flush=True)
    reference = next((r["worker_ms_per_image"] for r in rows if r["pipeline"] == REFERENCE), None)
    for row in rows:
        row["per_core_img_per_s"] = 1000 / row["worker_ms_per_image"]
        row["vs_timm_prefetcher"] = reference / row["worker_ms_per_image"] if reference else None
    return rows


def render(rows: list[dict], meta: dict) -> str:
    frame = pd.DataFrame(rows)
    shown = pd.DataFrame(
        {
            "pipeline": frame["pipeline"],
            "worker CPU ms / image": frame["worker_ms_per_image"].map("{:.2f}".format),
            "per-core img/s": frame["per_core_img_per_s"].map("{:.0f}".format),
            "vs timm + prefetcher (per core)": frame["vs_timm_prefetcher"].map("{:.2f}x".format),
        }
    )
    for column in (c for c in frame.columns if c.startswith("img_per_s_")):
        n = int(column.removeprefix("img_per_s_").removesuffix("w"))
        shown[f"end to end img/s, {n} worker{'s' if n > 1 else ''}"] = frame[column].map("{:.0f}".format)
    header = (
        f"`{meta['command']}` on {meta['device']}, {meta['images']} JPEGs of 500x375 (quality 90), batch "
        f"{meta['batch']}, torch {meta['versions']['torch']}, timm {meta['versions']['timm']}, {meta['measured_at']}:"
    )
    return header + "\n\n" + shown.to_markdown(index=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.data_path", description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000, help="JPEGs to make (when --folder is not given)")
    p.add_argument("--folder", type=Path, help="an existing CLASS/*.jpg folder instead of generated photographs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="epochs for the worker CPU time")
    p.add_argument("--batches", type=int, default=20, help="timed batches end to end")
    p.add_argument("--only", action="append", help="measure only this pipeline (repeatable)")
    p.add_argument("--record", type=Path, help="also write the rows as JSON here")
    p.add_argument("--readme", type=Path, help="replace the data-path block of this Markdown file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or make_jpeg_folder(Path(tmp), args.images)
        images = sum(1 for _ in folder.rglob("*.jpg"))
        rows = measure(folder, args.batch_size, args.epochs, args.batches, args.only)
    meta = {
        "command": "python -m benchmarks.data_path" + (" " + " ".join(argv) if argv else ""),
        "device": f"CPU ({os.cpu_count()} cores)",
        "images": images,
        "batch": args.batch_size,
        "versions": versions(),
        "measured_at": time.strftime("%Y-%m-%d"),
    }
    table = render(rows, meta)
    print(table)
    if args.record:
        args.record.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    if args.readme:
        write_readme(args.readme, table, *MARKS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
