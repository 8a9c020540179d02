"""Checkpoints a resume can trust.

accelerate's `save_state` writes the model (safetensors), optimizer, grad scaler, dataloader sampler
and RNG states; its loader opens them with `weights_only=True`. The timm scheduler and the training
counters go into `progress.json` and the EMA weights into safetensors, because accelerate would pickle
them as custom objects and unpickle them with `weights_only=False`. `progress.json` is written last and
atomically: a checkpoint directory without it is incomplete and never resumed from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from harness.results import atomic_write_json

PROGRESS = "progress.json"
EMA_FILE = "ema.safetensors"


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete, corrupted or not one of ours."""


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / PROGRESS).is_file()), key=lambda p: p.name)


def save_checkpoint(accelerator: Accelerator, run_dir: Path, progress: dict, ema, keep: int) -> Path:
    """Save everything needed to continue at `progress`, then drop all but the newest `keep`."""
    path = checkpoint_root(run_dir) / f"update_{progress['num_updates']:09d}"
    if accelerator.is_main_process and path.exists():
        shutil.rmtree(path)  # an incomplete save of the same step, from a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path), safe_serialization=True)
    if accelerator.is_main_process:
        if ema is not None:
            save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(path / EMA_FILE))
        atomic_write_json(path / PROGRESS, progress)
        for old in complete_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def read_progress(path: Path) -> dict:
    try:
        progress = json.loads((path / PROGRESS).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has no readable {PROGRESS}: {e}") from None
    required = {"epoch", "step_in_epoch", "num_updates", "scheduler", "history"}
    if not isinstance(progress, dict) or not required <= set(progress):
        raise CheckpointError(f"checkpoint {path} is not a harness checkpoint ({PROGRESS} lacks {sorted(required)})")
    return progress


COMPILED_EMA_PREFIX = "module._orig_mod."  # what ModelEmaV3's keys were when it copied a compiled model


def _bare_keys(state: dict) -> dict:
    """An EMA saved when it copied the compiled wrapper (before it copied the bare model) loads into the bare one."""
    return {
        "module." + k[len(COMPILED_EMA_PREFIX) :] if k.startswith(COMPILED_EMA_PREFIX) else k: v
        for k, v in state.items()
    }


def load_checkpoint(accelerator: Accelerator, path: Path, scheduler, ema) -> dict:
    """Restore model, optimizer, RNG, scheduler and EMA from `path`; return its progress record."""
    progress = read_progress(path)
    try:
        accelerator.load_state(str(path))
        if ema is not None:
            ema.load_state_dict(_bare_keys(load_file(str(path / EMA_FILE))))
    except Exception as e:  # safetensors, torch and accelerate each raise their own types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: {reason[:200]})") from None
    scheduler.load_state_dict(progress["scheduler"])
    return progress
