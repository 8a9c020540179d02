"""What the benchmark scripts share: the repository root, the harness's command line, the device and its clock, the
generated JPEG folder, RSB A3's bare model step, and the README blocks the scripts rewrite.

Every script imports from here and none from this module's importers, so imports among benchmarks/ run one way.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.build import build_model, build_optimizer, build_train_loss
from harness.estimate import sync
from recipes import get_recipe

ROOT = Path(__file__).resolve().parents[1]


def harness_command(*args: str) -> list[str]:
    """The harness's command line in a fresh interpreter, as a user types it (run with `cwd=ROOT`)."""
    return [sys.executable, str(ROOT / "harness" / "run.py"), *args]


def script_command(name: str, *args: str) -> list[str]:
    """A benchmark script of this package in a fresh interpreter (run with `cwd=ROOT`)."""
    return [sys.executable, "-m", f"benchmarks.{name}", *args]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seconds_per_call(fn: Callable[[], object], calls: int, warmup: int, device: torch.device) -> float:
    """Mean wall-clock seconds of `fn` over `calls` calls after `warmup` calls, the device's queue included."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def endless(loader) -> Iterator:
    """A loader's batches epoch after epoch, its sampler told each epoch."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def make_jpeg_folder(root: Path, images: int, classes: int = 10, seed: int = 0, first: int = 0) -> Path:
    """ImageNet-sized JPEGs (500 x 375, quality 90) cut from scikit-learn's two sample photographs: random crops at
    random scales, flipped at random, so every file decodes to different pixels. Files are numbered from `first`
    (several processes can fill one folder)."""
    from sklearn.datasets import load_sample_images  # scikit-learn is slow to import: only here

    photos = [Image.fromarray(p) for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    for i in range(first, first + images):
        photo = photos[i % len(photos)]
        w = int(rng.integers(300, photo.width + 1))
        h = min(photo.height, int(w * 0.75))
        left, top = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
        image = photo.crop((left, top, left + w, top + h)).resize((500, 375), Image.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        folder = root / "train" / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=90)
    return root / "train"


def rsb_a3(micro: int, size: int):
    """RSB A3 at a micro-batch and train size of one's choosing."""
    return dataclasses.replace(get_recipe("rsb_a3"), img_size=size, batch_size=micro)


def fixed_batch(micro: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(micro, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    return images, torch.randint(0, 1000, (micro,), device=device)


def model_step(micro: int, size: int, compiled: bool) -> Callable[[], None]:
    """The ceiling: ResNet-50 forward, BCE loss, backward and LAMB step under bf16 autocast, nothing else."""
    device = default_device()
    recipe = rsb_a3(micro, size)
    model = build_model(recipe, 1000).to(device, memory_format=torch.channels_last)
    optimizer, loss_fn = build_optimizer(recipe, model), build_train_loss(recipe, True)
    forward = torch.compile(model) if compiled else model
    images, labels = fixed_batch(micro, size, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(forward(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def write_readme(path: Path, table: str, start: str, end: str) -> None:
    """Replace the block between the `start` and `end` markers of a Markdown file with `table`."""
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"error: {path} has no {start} ... {end} block to replace")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{table}{end}{tail}")
