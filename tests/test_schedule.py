"""The LR of each recipe's published schedule at step 0, at the end of warmup and at the last step."""

import math

import pytest
import torch

from harness.build import build_optimizer, build_scheduler
from recipes import get_recipe, list_recipes

UPDATES_PER_EPOCH = 10


def lr_at(recipe, step: int) -> float:
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(recipe, model)
    scheduler = build_scheduler(recipe, optimizer, UPDATES_PER_EPOCH)
    if step:
        scheduler.step_update(num_updates=step)
    return optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("name", list_recipes())
def test_lr_at_start_warmup_end_and_last_step(name):
    recipe = get_recipe(name)
    last = recipe.epochs * UPDATES_PER_EPOCH - 1
    warmup_end = recipe.warmup_epochs * UPDATES_PER_EPOCH
    if recipe.warmup_epochs:
        assert lr_at(recipe, 0) == pytest.approx(recipe.warmup_lr)
        assert lr_at(recipe, warmup_end // 2) == pytest.approx((recipe.warmup_lr + recipe.lr) / 2, rel=0.05)
    else:
        assert lr_at(recipe, 0) == pytest.approx(recipe.lr)
    if recipe.sched == "cosine":
        # timm's default (warmup_prefix=False): the cosine runs from step 0, under the warmup.
        progress = warmup_end / (recipe.epochs * UPDATES_PER_EPOCH)
        peak = recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * progress))
        assert lr_at(recipe, warmup_end) == pytest.approx(peak, rel=1e-3)
        assert lr_at(recipe, warmup_end) > lr_at(recipe, warmup_end + 1)
        total = recipe.epochs * UPDATES_PER_EPOCH
        end = recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * last / total))
        assert lr_at(recipe, last) == pytest.approx(end, rel=1e-3)
        assert end - recipe.min_lr < 0.01 * (recipe.lr - recipe.min_lr)
    else:
        assert lr_at(recipe, warmup_end) == pytest.approx(recipe.lr)
    if recipe.sched == "step":
        decays = math.floor((recipe.epochs - 1) / recipe.decay_epochs)
        assert lr_at(recipe, last) == pytest.approx(recipe.lr * recipe.decay_rate**decays)


def test_step_schedule_drops_tenfold_every_30_epochs():
    baseline = get_recipe("baseline")
    assert lr_at(baseline, 30 * UPDATES_PER_EPOCH - 1) == pytest.approx(0.1)
    assert lr_at(baseline, 30 * UPDATES_PER_EPOCH) == pytest.approx(0.01)
    assert lr_at(baseline, 60 * UPDATES_PER_EPOCH) == pytest.approx(0.001)
