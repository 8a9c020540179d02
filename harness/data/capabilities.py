"""What each data path can take: pure checks on a recipe, a dataset and a device, with the reason when it cannot.

`harness.data.route` decides a run's path from these; the implementations (`memory`, `transforms`, `decode`,
`autoaugment`) read them too. Nothing here builds a loader or imports the modules that do.
"""

from __future__ import annotations

import functools
import io
import os
import warnings

import torch
from PIL import Image
from timm.data import create_transform
from timm.data.auto_augment import AugmentOp, AugMixAugment, AutoAugment, RandAugment
from torchvision.io import ImageReadMode, decode_jpeg

from harness.build import transform_kwargs
from harness.data.augment_ops import supported_ops
from harness.data.catalog import hub_repo
from recipes import Recipe

# Held as arrays, small enough for the in-memory path.
IN_MEMORY_DATASETS = ("digits", "mnist_5k", "mnist", "fashion_mnist", "cifar10", "cifar100")
MEMORY_GRID_MODES = ("bilinear", "bicubic", "nearest")  # named as grid_sample and torchvision name them
# Read from files in one of the layouts of harness.data.layouts (class folders, parquet, tar shards).
FILE_DATASETS = ("imagenet", "folder", "hfds", "wds")
# PIL's resampling filters the device's policy kernels have (timm's policy ops name PIL's).
_POLICY_MODES = {
    Image.Resampling.NEAREST: "nearest",
    Image.Resampling.BILINEAR: "bilinear",
    Image.Resampling.BICUBIC: "bicubic",
}

# decode_jpeg is deprecated in favour of TorchCodec from torchvision 0.29 on; it is what the GPU image has.
warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities of TorchVision", category=UserWarning)
warnings.filterwarnings(
    "ignore", message=".*decoding and encoding capabilities of TorchVision", category=DeprecationWarning
)


# ---- the per-image transforms ----------------------------------------------------------------------------------------


def jitter_active(recipe: Recipe) -> bool:
    """Whether colour jitter runs: timm turns it off when a policy runs, except after a '3a' policy."""
    return recipe.color_jitter > 0 and (not recipe.aa or "3a" in recipe.aa)


def resizes_tensors(recipe: Recipe, aa_in_workers: bool) -> bool:
    """Whether the workers take the tensor path: nothing they run needs a PIL image."""
    return not (recipe.aa and aa_in_workers) and recipe.rotate == 0 and not jitter_active(recipe)


def reads_files(name: str) -> bool:
    """Whether dataset `name` is read from image files (not held as arrays)."""
    return name in FILE_DATASETS or hub_repo(name) is not None


# ---- the recipe's policy on the device -------------------------------------------------------------------------------


def timm_policy(recipe: Recipe) -> RandAugment | AutoAugment | AugMixAugment:
    """The policy object timm's `create_transform` builds for this recipe (translate_const = int(img_size * 0.45),
    img_mean from recipe.mean, the recipe's training interpolation unless random, translate_pct 0.3 for AugMix)."""
    kwargs = transform_kwargs(recipe, is_training=True, mean=recipe.mean, std=recipe.std, separate=True)
    _, secondary, _ = create_transform(**kwargs)
    return next(t for t in secondary.transforms if isinstance(t, RandAugment | AutoAugment | AugMixAugment))


def policy_ops(policy) -> list[AugmentOp]:
    """Every op of a timm policy (an AutoAugment's sub-policies one after another)."""
    if isinstance(policy, AutoAugment):
        return [op for sub_policy in policy.policy for op in sub_policy]
    return list(policy.ops)


def policy_mode(op: AugmentOp) -> str | None:
    """The op's resampling as the device names it: "random" for timm's random choice, None where it has none."""
    resample = op.kwargs["resample"]
    return "random" if isinstance(resample, tuple | list) else _POLICY_MODES.get(resample)


def unsupported_on_device(recipe: Recipe) -> str | None:
    """Why recipe.aa cannot run on the device (None when it can)."""
    if recipe.aa is None:
        return None
    try:
        policy = timm_policy(recipe)
    except (AssertionError, ValueError, KeyError, IndexError) as e:
        return f"timm cannot build aa={recipe.aa!r} ({e or 'malformed'})"
    ops = policy_ops(policy)
    missing = sorted({op.name for op in ops} - supported_ops())
    if missing:
        return f"aa={recipe.aa!r} uses {', '.join(missing)}, which the device has no kernel for"
    if ops and policy_mode(ops[0]) is None:
        return f"PIL's affine transform has no {ops[0].kwargs['resample']!r} filter"
    if isinstance(policy, AutoAugment) and len({len(sub) for sub in policy.policy}) > 1:
        return f"aa={recipe.aa!r} has sub-policies of different lengths"
    return None


def policy_reason(recipe: Recipe, path: str) -> str | None:
    """Why the recipe's policy cannot run on the device on this path (None when it can, or there is none)."""
    if not recipe.aa:
        return None
    reason = unsupported_on_device(recipe)
    if reason is None and path == "workers" and jitter_active(recipe):
        reason = "its colour jitter follows the 3a policy per image in the workers"
    return reason


# ---- the in-memory path ----------------------------------------------------------------------------------------------


def unsupported_in_memory(recipe: Recipe, dataset: str, world_size: int) -> list[str]:
    """Why this recipe on this dataset cannot take the in-memory path (empty when it can)."""
    reasons = []
    if dataset not in IN_MEMORY_DATASETS:
        reasons.append(f"dataset {dataset} is read from files (in memory: {', '.join(IN_MEMORY_DATASETS)})")
    if recipe.aa and (why := unsupported_on_device(recipe)):
        reasons.append(why)
    if recipe.training_interpolation not in MEMORY_GRID_MODES:
        modes = ", ".join(MEMORY_GRID_MODES)
        reasons.append(f"interpolation {recipe.training_interpolation!r} (in memory: {modes})")
    return reasons


# ---- decoding training JPEGs on the device ---------------------------------------------------------------------------


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def wants_cuda() -> bool:
    """Whether this process trains on CUDA: CUDA is there and not turned off (ACCELERATE_USE_CPU)."""
    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    return torch.cuda.is_available() and not forced_cpu


def planned_device() -> torch.device:
    """The device this process will train on, known before the Accelerator exists (harness.accelerator.make_accelerator
    decides by `wants_cuda` too): its local GPU, else the CPU."""
    if wants_cuda():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


@functools.cache
def _nvjpeg_failure(device: str) -> str | None:
    """None where torchvision's decode_jpeg decodes a small JPEG on this CUDA device (nvJPEG there and working),
    else its error. The device is made current first: torchvision makes its one decoder for the device current at
    its first call and orders its writes against that device's current stream."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 100, 50)).save(buffer, "JPEG")
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    try:
        with torch.cuda.device(torch.device(device)):
            decoded = decode_jpeg([data], mode=ImageReadMode.RGB, device=device)[0]
    except (RuntimeError, ValueError, AssertionError) as error:  # no nvJPEG in this build, or the device refuses
        return f"{type(error).__name__}: {first_line(error)}"
    return None if decoded.shape == (3, 16, 16) else f"a 16x16 JPEG came back {tuple(decoded.shape)}"


def why_no_nvjpeg(device: torch.device) -> str | None:
    """Why torchvision cannot decode JPEGs on this CUDA device (None: it can)."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _nvjpeg_failure(str(torch.device("cuda", index)))


def device_decodes_jpeg(device: torch.device | None) -> bool:
    return device is not None and device.type == "cuda" and why_no_nvjpeg(device) is None


def decode_reason(path: str, augment_on: str | None, recipe: Recipe, from_files: bool, channels: int) -> str | None:
    """Why training images on this path cannot be decoded on the device, whatever the device (None: they can)."""
    if path == "memory":
        return "the in-memory path holds decoded images, there are no JPEGs to decode (--loader memory)"
    if not from_files:
        return f"{recipe.dataset} is not read from image files"
    if channels != 3:
        return "its images are made grey in the workers"
    if not resizes_tensors(recipe, augment_on == "workers"):
        return "the workers run PIL augmentations on each decoded image (a policy there, colour jitter or rotation)"
    return None
