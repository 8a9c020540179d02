"""Every recipe's LR, epoch by epoch, as timm's train.py drives timm's scheduler, and the proxy budget's choice."""

import argparse
import dataclasses

import pytest
import torch
from timm.scheduler import create_scheduler_v2, scheduler_kwargs

from harness.build import build_optimizer, build_scheduler, scheduled_epochs
from harness.config import apply_budget, fidelity
from harness.data import dataset_info
from harness.engine import current_lr, end_epoch_schedule
from recipes import get_recipe, list_recipes

UPDATES_PER_EPOCH = 7


def harness_epoch_lrs(recipe) -> list[float]:
    """The LR metrics.csv records per epoch: the engine's calls (step_update per update, then the epoch's end)."""
    optimizer = build_optimizer(recipe, torch.nn.Linear(2, 2))
    scheduler, epochs = build_scheduler(recipe, optimizer, UPDATES_PER_EPOCH)
    lrs, updates = [], 0
    for epoch in range(epochs):
        for _ in range(UPDATES_PER_EPOCH):
            updates += 1
            scheduler.step_update(num_updates=updates)
        lrs.append(current_lr(optimizer))
        end_epoch_schedule(scheduler, epoch + 1, 50.0)
    return lrs


def timm_args(recipe) -> argparse.Namespace:
    """train.py's flags for the recipe's schedule. timm has no 'constant_exp': the recipe's Keras schedule is timm's
    multistep with a milestone at each epoch after the hold (train.py's --decay-milestones)."""
    sched, milestones, decay_epochs, decay_rate = recipe.sched, [recipe.decay_epochs], recipe.decay_epochs, None
    if sched == "constant_exp":
        first = round(recipe.decay_epochs) + (0 if recipe.sched_on_updates else 1)  # milestone m decays at t + 1 = m
        sched, milestones = "multistep", list(range(first, recipe.epochs + 1))
    if sched == "constant":  # timm releases before 'constant': a step schedule that never decays
        sched, decay_epochs, decay_rate = "step", recipe.epochs, 1.0
    return argparse.Namespace(
        sched=sched, epochs=recipe.epochs, decay_epochs=decay_epochs, decay_milestones=milestones,
        warmup_epochs=recipe.warmup_epochs, cooldown_epochs=recipe.cooldown_epochs, decay_rate=decay_rate or
        recipe.decay_rate, min_lr=recipe.min_lr, warmup_lr=recipe.warmup_lr, warmup_prefix=recipe.warmup_prefix,
        sched_on_updates=recipe.sched_on_updates, seed=42, eval_metric="top1",
    )  # fmt: skip


def timm_epoch_lrs(recipe) -> list[float]:
    """train.py's loop: the LR summary.csv records after each epoch's updates, then `step(epoch + 1, metric)`."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    scheduler, epochs = create_scheduler_v2(
        optimizer, **scheduler_kwargs(timm_args(recipe), decreasing_metric=False), updates_per_epoch=UPDATES_PER_EPOCH
    )
    lrs, updates = [], 0
    for epoch in range(epochs):
        for _ in range(UPDATES_PER_EPOCH):
            updates += 1
            scheduler.step_update(num_updates=updates, metric=1.0)
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(epoch + 1, 50.0)
    return lrs


@pytest.mark.parametrize("name", list_recipes())
def test_every_epoch_lr_of_every_published_recipe_is_timms_train_py(name):
    recipe = get_recipe(name)
    assert not recipe.sched_on_updates  # every published schedule changes the LR at the epoch boundary
    theirs = timm_epoch_lrs(recipe)
    assert harness_epoch_lrs(recipe) == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert len(theirs) == scheduled_epochs(recipe) == recipe.epochs + recipe.cooldown_epochs


def test_rsb_a3_lr_holds_for_each_epoch_and_starts_at_the_warmup_lr():
    lrs = harness_epoch_lrs(get_recipe("rsb_a3"))
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[5] == pytest.approx(1e-6 + 0.5 * (8e-3 - 1e-6) * (1 + torch.cos(torch.tensor(torch.pi * 0.05)).item()))
    assert lrs[1] == pytest.approx(1e-6 + (8e-3 - 1e-6) / 5)


@pytest.mark.parametrize("sched", ["cosine", "step", "constant", "constant_exp"])
def test_per_update_and_cooldown_schedules_match_timms_train_py_too(sched):
    recipe = dataclasses.replace(
        get_recipe("rsb_a3"), sched=sched, epochs=12, warmup_epochs=2, decay_epochs=4, sched_on_updates=True,
        cooldown_epochs=3,
    )  # fmt: skip
    ours, theirs = harness_epoch_lrs(recipe), timm_epoch_lrs(recipe)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert len(ours) == (15 if sched == "cosine" else 12)  # timm adds the cooldown to cycle schedules only


def test_warmup_prefix_adds_the_warmup_before_the_epochs():
    recipe = dataclasses.replace(get_recipe("rsb_a3"), epochs=10, warmup_epochs=3, warmup_prefix=True)
    assert harness_epoch_lrs(recipe) == pytest.approx(timm_epoch_lrs(recipe))
    assert scheduled_epochs(recipe) == 13


@pytest.mark.parametrize("budget", ["proxy", "smoke"])
def test_the_shortened_budgets_change_the_lr_every_update_and_say_so(budget):
    published = get_recipe("rsb_a3")
    shortened = apply_budget(published, budget, dataset_info("digits"))
    assert shortened.sched_on_updates
    assert "sched_on_updates: False -> True" in fidelity(published, shortened, [])


def test_step_schedule_drops_tenfold_every_30_epochs():
    lrs = harness_epoch_lrs(get_recipe("baseline"))
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01) and lrs[60] == pytest.approx(0.001)
