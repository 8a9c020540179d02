"""The recipes' RandAugment / AutoAugment / AugMix policies on the device: time per batch, and checks.

    python -m benchmarks.autoaugment_device --device cuda          # on a GPU machine
    python -m benchmarks.autoaugment_device --device cpu --threads 1 --policies rsb_a3

For each policy, on a batch of crops of scikit-learn's two sample photographs (256 x 3 x 160 x 160 uint8 by
default): the median time per batch; that the same seed gives the same images; on CUDA, that three batches run under
`torch.cuda.set_sync_debug_mode("error")` (no host sync), that the same draws give the same images as on the CPU
(pixel ops exactly, geometric ops up to float rounding), and one ResNet-50 training step (bf16, channels_last) for
scale. On the CPU, timm's own per-image PIL transform on the same images, for comparison. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time

import numpy as np
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from benchmarks.common import sync
from harness.data import autoaugment as aa
from recipes import get_recipe

POLICIES = {  # label: (aa, interpolation)
    "rsb_a3": ("rand-m6-mstd0.5-inc1", "bicubic"),
    "rsb_a1": ("rand-m7-mstd0.5-inc1", "bicubic"),
    "rand_m9_random": ("rand-m9-mstd0.5-inc1", "random"),
    "rand_t3aw": ("rand-m9-n3-t3aw", "bicubic"),
    "v0": ("v0", "bicubic"),
    "3a": ("3a", "bicubic"),
    "augmix": ("augmix-m5-w4-d2", "bicubic"),
    "augmix_blended": ("augmix-m3-b1", "random"),
}


def crops(n: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(array) for array in load_sample_images().images]
    images = []
    for i in range(n):
        photo, side = photos[i % 2], int(rng.integers(150, 420))
        x, y = int(rng.integers(0, photo.width - side)), int(rng.integers(0, photo.height - side))
        images.append(photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BICUBIC))
    return images


def median_ms(fn, reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def moved(draws, device: torch.device):
    """A policy's draws on another device."""
    if isinstance(draws, list):
        return [moved(d, device) for d in draws]
    if isinstance(draws, aa.AugMixDraw):
        return aa.AugMixDraw(draws.weights.to(device), draws.mix.to(device), moved(draws.chains, device))
    return aa.LayerDraw(*(getattr(draws, f.name).to(device) for f in dataclasses.fields(draws)))


def no_host_sync(policy, batch, generator) -> bool | str:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for seed in range(3):
            policy(batch, generator.manual_seed(100 + seed))
        return True
    except RuntimeError as e:
        return f"synchronised: {e}"[:300]
    finally:
        torch.cuda.set_sync_debug_mode(0)


def against_cpu(recipe, policy, cpu_batch, device: torch.device) -> dict:
    """The same draws applied on the CPU and on the device."""
    cpu_policy = aa.device_policy(recipe, torch.device("cpu"))
    n = min(64, len(cpu_batch))
    draws = cpu_policy.draw(n, torch.Generator().manual_seed(11))
    expected = cpu_policy.apply(cpu_batch[:n], draws)
    got = policy.apply(cpu_batch[:n].to(device), moved(draws, device)).cpu()
    diff = (expected.int() - got.int()).abs()
    return {
        "images_equal": f"{int((diff.amax((1, 2, 3)) == 0).sum())}/{n}",
        "max": int(diff.max()),
        "pixels_differing": round(float((diff > 0).float().mean()), 6),
    }


def timm_per_image_ms(recipe, images: list[Image.Image]) -> float:
    transform = aa.timm_policy(recipe)
    random.seed(0)
    np.random.seed(0)
    start = time.perf_counter()
    for image in images:
        try:
            transform(image)
        except ValueError:  # Posterize at 0 bits, which recent Pillow refuses
            pass
    return round((time.perf_counter() - start) * 1000 / len(images), 3)


def resnet50_step_ms(batch: int, size: int, device: torch.device) -> float:
    model = timm.create_model("resnet50").to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    median_ms(step, 5, device)
    return median_ms(step, 15, device)


def measure(label: str, args, images, cpu_batch, batch, device: torch.device) -> dict:
    aa_string, interpolation = POLICIES[label]
    recipe = dataclasses.replace(get_recipe("rsb_a3"), aa=aa_string, interpolation=interpolation, img_size=args.size)
    policy = aa.device_policy(recipe, device)
    generator = torch.Generator(device=device)
    policy(batch, generator.manual_seed(0))  # warm-up
    row = {"aa": aa_string, "interpolation": interpolation}
    row["ms_per_batch"] = median_ms(lambda: policy(batch, generator.manual_seed(1)), args.reps, device)
    row["ms_per_image"] = round(row["ms_per_batch"] / len(batch), 4)
    first, again = (policy(batch, generator.manual_seed(7)) for _ in range(2))
    row["same_seed_same_images"] = torch.equal(first, again)
    if device.type == "cuda":
        row["no_host_sync"] = no_host_sync(policy, batch, generator)
        row["vs_cpu"] = against_cpu(recipe, policy, cpu_batch, device)
    else:
        row["timm_pil_ms_per_image"] = timm_per_image_ms(recipe, images)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.autoaugment_device", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated, of {', '.join(POLICIES)}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = crops(args.batch, args.size)
    cpu_batch = torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images])
    batch = cpu_batch.to(device)
    record = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "threads": torch.get_num_threads(),
        "batch": list(batch.shape),
        "policies": {},
    }
    for label in args.policies.split(","):
        record["policies"][label] = measure(label, args, images, cpu_batch, batch, device)
    if device.type == "cuda":
        record["resnet50_train_step_ms"] = resnet50_step_ms(args.batch, args.size, device)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
