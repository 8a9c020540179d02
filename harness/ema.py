"""The model's exponential moving average (timm's ModelEmaV3) and the bare model inside accelerate's wrappers."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import DynamoBackend
from timm.utils import ModelEmaV3

from recipes import Recipe


def bare_model(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The model inside the compiled and DDP wrappers, leaving the prepared model as it is: accelerate's default
    `keep_torch_compile=True` would set the compiled module's `_orig_mod` to the bare model, dropping DDP (and with
    it `no_sync`) from the model that trains."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def build_ema(accelerator: Accelerator, model: torch.nn.Module, recipe: Recipe) -> ModelEmaV3 | None:
    """timm's ModelEmaV3 of the bare model, so its state dict has the model's keys with or without --compile and
    on any number of processes. Built after `prepare`, from the weights DDP gave every process (rank 0's): timm
    builds it before DDP, where each process's EMA starts from its own initialisation (seed + rank)."""
    if not recipe.model_ema:
        return None
    return ModelEmaV3(bare_model(accelerator, model), decay=recipe.model_ema_decay)


def ema_for_evaluation(accelerator: Accelerator, ema: ModelEmaV3 | None) -> torch.nn.Module | None:
    """With --compile, the EMA evaluated through torch.compile as the model is (timm's train.py compiles both). The
    compiled module shares the EMA's parameters and buffers; the EMA keeps its bare module, and with it its keys."""
    plugin = accelerator.state.dynamo_plugin
    if ema is None or plugin.backend == DynamoBackend.NO:
        return None
    return torch.compile(ema.module, **plugin.to_kwargs())
