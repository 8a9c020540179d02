"""`--eval-only`: evaluate weights with the recipe's evaluation settings and write the same record as a run.

The weights come from `--pretrained-file` (the classifier included) or from the hub (`--set pretrained=True`).
Evaluation is the training run's own: the recipe's test size, crop_pct, interpolation and mean/std, the eval
split under the budget's sample limit, the same loaders and `engine.evaluate`, on any number of processes.
Only the differences in those settings are listed, so a row that evaluates released weights as published can
earn a verdict against the reported number, as timm's validate.py and sotabench compare weights with a paper.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from accelerate import Accelerator
from timm.models import split_model_name_tag

from harness.accelerator import start_accelerator
from harness.assemble import settle_route
from harness.batching import split_batch
from harness.config import budget_limits, fidelity
from harness.data import build_datasets, dataset_info, dataset_source, first
from harness.data.loader import build_eval_loader, worker_transforms
from harness.engine import evaluate
from harness.plan import RunSpec
from harness.publish import publish_record
from harness.report import wide_console
from harness.results import eval_record, now_iso
from harness.run_dir import shared_run_dir
from harness.weights import model_with_weights
from recipes import Recipe

# The recipe fields that change what an evaluation measures; differences in training settings do not.
EVAL_FIELDS = ("model", "dataset", "test_img_size", "crop_pct", "interpolation", "mean", "std")


def evaluation_differences(published: Recipe, recipe: Recipe, extra: list[str]) -> list[str]:
    """The fidelity lines of the evaluation settings only. A pretrained tag (`resnet50.a3_in1k`) names weights of
    the published architecture, not another model."""
    same_arch = split_model_name_tag(published.model)[0] == split_model_name_tag(recipe.model)[0]
    fields = [f for f in EVAL_FIELDS if not (f == "model" and same_arch)]
    lines = fidelity(published, recipe, [])
    return [line for line in lines if line.split(":", 1)[0] in fields] + extra


def _eval_loader(spec: RunSpec, recipe: Recipe, accelerator: Accelerator, per_device: int):
    """(eval loader prepared for the processes, eval images, images before the budget's limit, classes, names)."""
    info, options = dataset_info(spec.dataset), spec.options
    route = settle_route(spec, recipe, accelerator, training=False)
    eval_tf = worker_transforms(recipe, info.channels, route)[1]
    source = spec.source or spec.dataset
    train_set, eval_set, num_classes = build_datasets(source, options.data_dir, options.download, None, eval_tf)
    full_eval = len(eval_set)
    eval_set = first(eval_set, budget_limits(spec.budget).max_eval_samples)
    class_names = [str(c) for c in getattr(train_set, "classes", [])] or None
    loader = build_eval_loader(accelerator, recipe, eval_set, route, per_device, options.workers, options.seed)
    return loader, route.path, eval_set, full_eval, num_classes, class_names


def evaluate_weights(spec: RunSpec) -> int:
    """Evaluate the spec's weights on every process and write the record (main process)."""
    wall_start = time.perf_counter()
    started = now_iso()
    accelerator, cpu_threads = start_accelerator(spec, trackers=False)
    recipe = dataclasses.replace(spec.recipe, amp=accelerator.mixed_precision != "no")
    world = accelerator.num_processes
    per_device = split_batch(recipe.batch_size, world, None).per_process
    loader, data_path, eval_set, full_eval, num_classes, class_names = _eval_loader(
        spec, recipe, accelerator, per_device
    )
    eval_images = len(eval_set)
    model, weights = model_with_weights(recipe, num_classes, spec.options.pretrained_file, keep_head=True)
    model = accelerator.prepare(model.to(memory_format=torch.channels_last))
    extra = [f"eval images: first {eval_images} of {full_eval}"] if eval_images < full_eval else []
    differences = evaluation_differences(spec.published, recipe, extra)

    console = wide_console()
    run_dir = shared_run_dir(accelerator, spec, recipe, label=f"{recipe.name}-eval")
    if accelerator.is_main_process:
        for notice in spec.notices:
            console.print(f"[yellow]note:[/] {notice}")
        console.print(f"run directory: {run_dir} (evaluation only)")
    final = evaluate(accelerator, model, loader, num_classes)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return 0
    summary = eval_record(
        spec,
        recipe,
        final,
        source=dataset_source(eval_set),
        class_names=class_names,
        wall_time_s=time.perf_counter() - wall_start,
        accelerator=accelerator,
        per_device=per_device,
        data_path=data_path,
        cpu_threads=cpu_threads,
        seed=spec.options.seed,
        fidelity=differences,
        weights=weights,
        started_at=started,
    )
    publish_record(run_dir, summary, [], class_names)
    return 0
