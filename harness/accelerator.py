"""The Accelerator of a run and what it settles: precision, CPU threads, the seeds, and the global batch split
into micro-batches over the processes (with the probe for the largest micro-batch that fits a GPU)."""

from __future__ import annotations

import dataclasses
import os

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    GradientAccumulationPlugin,
    TorchDynamoPlugin,
    set_seed,
)

from harness.batching import BatchSplit, leaves_no_trace, mixes_pairs, probe_micro_batch, split_batch
from harness.config import has_batchnorm
from harness.data.capabilities import wants_cuda
from harness.plan import RunSpec
from recipes import Recipe


def make_accelerator(
    amp: bool,
    freezes: bool = False,
    compile_model: bool = False,
    log_with: list[str] | None = None,
    amp_dtype: str = "float16",
    data_seed: int = 0,
) -> Accelerator:
    """The recipe decides mixed precision: its `amp_dtype` (bfloat16 falls back to float16 on a GPU without it),
    none on CPU.

    A recipe that freezes parameters for a while needs DDP to tolerate parameters without gradients;
    `compile_model` has `prepare` wrap the model in torch.compile (inductor)."""
    precision = "no"
    if amp and wants_cuda():
        precision = "bf16" if amp_dtype == "bfloat16" and torch.cuda.is_bf16_supported() else "fp16"
    # cpu=True also lets several CPU processes form a gloo group (accelerate's MULTI_CPU).
    # A seedable sampler makes each epoch's order a function of (seed, epoch), so a resume repeats it.
    return Accelerator(
        mixed_precision=precision,
        step_scheduler_with_optimizer=False,
        cpu=not wants_cuda(),
        # Pinned batches move to the GPU without blocking the host (the per-image path pins them).
        # data_seed: the same shuffle on every process (else accelerate seeds it from torch's seed, seed + rank).
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True, data_seed=data_seed, non_blocking=wants_cuda()
        ),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)] if freezes else None,
        dynamo_plugin=TorchDynamoPlugin(backend="inductor") if compile_model else None,
        # The number of micro-steps per update is set once the micro-batch is known; every epoch trains whole
        # updates, so accumulation follows the step count and never the end of the loader.
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1, sync_with_dataloader=False),
        # Trackers that need a directory get the run directory once it exists (harness.trackers.start).
        log_with=log_with or None,
        project_dir="." if log_with else None,
    )


def set_cpu_threads(accelerator: Accelerator, requested: int | None) -> int:
    """Threads per process on CPU. `accelerate launch` without a config sets OMP_NUM_THREADS=1, which
    halves a 2-core machine; the harness shares the cores among the processes on this machine instead."""
    if accelerator.device.type != "cpu":
        return torch.get_num_threads()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    threads = requested or max(1, len(os.sched_getaffinity(0)) // local_processes)
    torch.set_num_threads(threads)
    return threads


def start_accelerator(spec: RunSpec, trackers: bool = True) -> tuple[Accelerator, int]:
    """The Accelerator, this process's CPU threads and the seed: the first thing every run does (`trackers`: with
    the spec's experiment trackers)."""
    recipe, options = spec.recipe, spec.options
    accelerator = make_accelerator(
        recipe.amp,
        freezes=bool(recipe.freeze),
        compile_model=options.compile,
        log_with=list(spec.log_with) if trackers else None,
        amp_dtype=recipe.amp_dtype,
        data_seed=options.seed,
    )
    cpu_threads = set_cpu_threads(accelerator, options.threads)
    if accelerator.device.type == "cuda":  # as timm's train.py sets them
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = not options.deterministic
    set_seed(options.seed, device_specific=True)  # seed + rank, as timm's train.py seeds each process
    return accelerator, cpu_threads


def resolve_for_processes(
    recipe: Recipe, accelerator: Accelerator, micro_batch: int | None
) -> tuple[Recipe, BatchSplit]:
    """The recipe as it runs on these processes, and the global batch split into micro-batches."""
    world = accelerator.num_processes
    split = split_batch(recipe.batch_size, world, micro_batch, even=mixes_pairs(recipe))
    precision = accelerator.mixed_precision
    changes = {"amp": precision != "no"}
    if precision in ("fp16", "bf16"):
        changes["amp_dtype"] = "float16" if precision == "fp16" else "bfloat16"
    if world == 1 and recipe.aug_repeats:
        changes["aug_repeats"] = 0  # timm applies repeated augmentation only when distributed
    return dataclasses.replace(recipe, **changes), split


def largest_fitting_micro_batch(
    accelerator: Accelerator, recipe: Recipe, model: torch.nn.Module, split: BatchSplit
) -> BatchSplit:
    """On a GPU without --micro-batch: the largest micro-batch whose forward/backward at the recipe's train size
    fits (optimizer state, allocated at the first update, is not part of the probe). The smallest over processes.
    The probe trains nothing: BatchNorm's statistics, the gradients and the random generators are left as they were
    (`leaves_no_trace`)."""
    model.to(accelerator.device)

    def try_step(micro: int) -> None:
        try:
            images = torch.randn(micro, 3, recipe.img_size, recipe.img_size, device=accelerator.device)
            with accelerator.autocast():
                loss = model(images.contiguous(memory_format=torch.channels_last)).float().mean()
            loss.backward()
        finally:  # after an out-of-memory error too: the next try starts without this one's gradients
            model.zero_grad(set_to_none=True)

    with leaves_no_trace(model, accelerator.device):
        micro = probe_micro_batch(split, try_step, even=mixes_pairs(recipe))
    smallest = int(accelerator.gather(torch.tensor([micro], device=accelerator.device)).min().item())
    return BatchSplit(split.global_batch, split.processes, smallest)


def batchnorm_note(model: torch.nn.Module, split: BatchSplit) -> list[str]:
    """Accumulation keeps the optimizer's batch but not BatchNorm's: a note, not a difference from the paper."""
    if not has_batchnorm(model) or split.accum_steps == 1:
        return []
    return [
        f"BatchNorm statistics are computed over each micro-batch of {split.micro_batch} images per process, "
        f"not over the {split.per_process} images the process contributes to each update"
    ]
