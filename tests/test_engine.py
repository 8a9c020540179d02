"""evaluate(): counts and metrics from gathered predictions; fit(): what it hands the schedule; the training
step's order of Mixup/CutMix and random erasing."""

import random

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from accelerate import Accelerator
from timm.data import FastCollateMixup
from timm.data.random_erasing import RandomErasing
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, TensorDataset

import harness.engine
from harness.assemble import build_run
from harness.engine import DeviceTally, Trainer, evaluate, fit, train_micro_step
from harness.fitting import make_trainer
from harness.results import tracked_top1
from harness.run import parse_args, plan_run

CPU = torch.device("cpu")


class FixedLogits(torch.nn.Module):
    """Returns the logits stored for each input index, so the expected metrics are known exactly."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index]


def test_top5_is_not_merged_with_top1_when_the_first_batch_is_all_correct():
    targets = torch.arange(40) % 10
    logits = torch.zeros(40, 10)
    logits[torch.arange(40), targets] = 5.0  # first batch all right...
    wrong = torch.arange(20, 40)
    logits[wrong, targets[wrong]] = 0.0
    logits[wrong, (targets[wrong] + 1) % 10] = 5.0  # ...later ones top-1 wrong, top-2 right
    logits[wrong, targets[wrong]] = 4.0
    loader = DataLoader(TensorDataset(torch.arange(40), targets), batch_size=20)
    accelerator = Accelerator(cpu=True)
    result = evaluate(accelerator, FixedLogits(logits), loader, num_classes=10)
    assert result["eval_samples"] == 40
    assert result["eval_top1"] == 50.0
    assert result["eval_top5"] == 100.0
    assert sum(map(sum, result["confusion_matrix"])) == 40
    assert result["per_class_accuracy"] == [50.0] * 10


# ---- the order of Mixup/CutMix and random erasing ------------------------------------------------------------


def timm_prefetcher_batch(recipe, uint8_images: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """What timm's train.py feeds the model with its prefetcher: FastCollateMixup mixes the uint8 images in the
    collate, PrefetchLoader normalises them and erases the mixed batch with RandomErasing."""
    collate = FastCollateMixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
                               switch_prob=recipe.mixup_switch_prob, label_smoothing=recipe.smoothing,
                               num_classes=num_classes)  # fmt: skip
    mixed, targets = collate([(image.numpy(), int(label)) for image, label in zip(uint8_images, labels, strict=True)])
    floats = TF.grayscale_to_rgb(mixed.float() / 255) if mixed.shape[1] == 1 else mixed.float() / 255
    normalised = TF.normalize(floats, list(recipe.mean), list(recipe.std))
    return RandomErasing(recipe.reprob, mode="const", max_count=1, device="cpu")(normalised), targets


@pytest.mark.parametrize("mix", ["cutmix", "mixup"])
def test_random_erasing_follows_mixup_and_cutmix_as_in_timms_prefetcher(mix):
    """Erasing before mixing (the order of train.py without its prefetcher) would blend or paste the partner's
    pixels over the erased boxes. Here the model gets timm's prefetcher batch for the same draws: exactly for
    CutMix, within FastCollateMixup's rounding to whole levels for Mixup."""
    alphas = {"cutmix": ["cutmix=1.0", "mixup=0.0"], "mixup": ["mixup=1.0", "cutmix=0.0"]}[mix]
    options = ["--recipe", "lenet_mnist", "--dataset", "digits", "--budget", "smoke", "--loader", "workers",
               "--workers", "0", "--batch-size", "16", "--output", "unused"]  # fmt: skip
    for setting in [*alphas, "reprob=1.0", "mixup_prob=1.0", "smoothing=0.1"]:
        options += ["--set", setting]
    args = parse_args(options)
    run = build_run(plan_run(args))
    trainer = make_trainer(run)
    uint8_images, labels = next(iter(run.train_loader.loader))  # as the workers hand them over
    seen = []
    run.model.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0].detach().clone()))
    random.seed(3), np.random.seed(3)  # timm's Mixup draws from numpy, its RandomErasing from random
    train_micro_step(trainer, run.train_loader.stage(uint8_images), labels, DeviceTally(CPU))
    random.seed(3), np.random.seed(3)
    expected, _ = timm_prefetcher_batch(run.recipe, uint8_images, labels, run.num_classes)
    level = 0.5 / 255 / min(run.recipe.std) + 1e-6  # half a level of 255, normalised
    assert (seen[0] - expected).abs().max() <= (0.0 if mix == "cutmix" else level)
    assert seen[0].dtype == torch.float32 and seen[0].is_contiguous(memory_format=torch.channels_last)
    erased = (expected == 0).all(dim=1).float().mean(dim=(1, 2))
    assert (erased > 0.01).float().mean() > 0.9  # the boxes are there to be compared


class ScaledLogits(FixedLogits):
    """FixedLogits with a parameter, as timm's EMA needs one."""

    def __init__(self, logits: torch.Tensor):
        super().__init__(logits)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index] * self.scale


class StepRecorder:
    """A schedule that records what fit() hands it at each epoch's end."""

    def __init__(self):
        self.steps: list[tuple[int, float]] = []

    def step(self, epoch: int, metric: float | None = None) -> None:
        self.steps.append((epoch, metric))


def test_the_plateau_metric_and_the_best_are_the_emas_when_the_ema_is_evaluated(monkeypatch):
    targets = torch.arange(20) % 10
    right = torch.nn.functional.one_hot(targets, 10).float()
    half_right = right.clone()
    half_right[:10] = right[:10].roll(1, dims=1)  # the model gets half wrong, its EMA none
    model, ema = ScaledLogits(half_right), ModelEmaV3(ScaledLogits(right))
    loader = DataLoader(TensorDataset(torch.arange(20), targets), batch_size=10)
    t = Trainer(accelerator=Accelerator(cpu=True), model=model, optimizer=None, scheduler=StepRecorder(),
                train_loss=None, train_loader=None, eval_loader=loader, num_classes=10, global_batch_size=10,
                ema=ema)  # fmt: skip
    monkeypatch.setattr(harness.engine, "train_one_epoch", lambda *args: {"train_loss": 1.0, "train_img_per_s": 1.0})
    fit(t, 1, lambda row, _eval: None)
    assert t.history[0]["eval_top1"] == 50.0 and t.history[0]["eval_top1_ema"] == 100.0
    assert t.scheduler.steps == [(1, 100.0)]  # as train.py: eval_metrics = ema_eval_metrics
    assert tracked_top1(t.history[0]) == 100.0
