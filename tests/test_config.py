"""Budgets, --set overrides, LR rescale and the fidelity list."""

import dataclasses

import pytest
import torch

from harness.batching import BatchSplit
from harness.config import (
    ConfigError,
    apply_budget,
    apply_overrides,
    fidelity,
    parse_overrides,
    rescale_lr,
    step_differences,
)
from harness.data import dataset_info
from recipes import get_recipe

DIGITS = dataset_info("digits")


def test_overrides_parse_python_literals_and_plain_strings():
    parsed = parse_overrides(["lr=1e-3", "opt=lamb", "aa=None", "scale=(0.5, 1.0)", "pretrained=True"])
    assert parsed == {"lr": 1e-3, "opt": "lamb", "aa": None, "scale": (0.5, 1.0), "pretrained": True}


def test_overrides_are_type_checked_against_the_field():
    recipe = get_recipe("rsb_a3")
    assert apply_overrides(recipe, {"lr": 1}).lr == 1.0  # int widens to float
    with pytest.raises(ConfigError, match="epochs=1.5: input should be a valid integer"):
        apply_overrides(recipe, parse_overrides(["epochs=1.5"]))
    with pytest.raises(ConfigError, match="bce_loss=1: input should be a valid boolean"):
        apply_overrides(recipe, parse_overrides(["bce_loss=1"]))
    with pytest.raises(ConfigError, match="scale"):
        apply_overrides(recipe, parse_overrides(["scale=0.5"]))


def test_unknown_or_malformed_keys_are_rejected_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown --set key 'lrr'; did you mean lr\b"):
        parse_overrides(["lrr=0.1"])
    with pytest.raises(ConfigError, match=r"unknown --set key 'zzz'; valid keys: .*\blr\b"):
        parse_overrides(["zzz=0.1"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ConfigError, match="unknown --set key 'name'"):
        parse_overrides(["name=other"])


def test_bad_values_name_the_supported_ones():
    recipe = get_recipe("baseline")
    with pytest.raises(ConfigError, match="sched='linear': input should be 'cosine', 'step'"):
        apply_overrides(recipe, {"sched": "linear"})
    with pytest.raises(ConfigError, match="opt='lambada': not a timm optimizer; did you mean .*lamb"):
        apply_overrides(recipe, {"opt": "lambada"})
    with pytest.raises(ConfigError, match="opt='zzz': not a timm optimizer; valid: .*lamb"):
        apply_overrides(recipe, {"opt": "zzz"})
    with pytest.raises(ConfigError, match="model='resnet5000': not a timm model"):
        apply_overrides(recipe, {"model": "resnet5000"})
    with pytest.raises(ConfigError, match="epochs=0: input should be greater than 0"):
        apply_overrides(recipe, {"epochs": 0})


def test_proxy_budget_shortens_the_schedule_and_keeps_the_procedure():
    a3 = get_recipe("rsb_a3")
    proxy = apply_budget(a3, "proxy", DIGITS)
    assert (proxy.img_size, proxy.test_img_size) == (24, 24)  # digits: 8x8 sources, 3x upscale
    assert proxy.epochs == a3.proxy_epochs and proxy.batch_size == 64
    assert proxy.warmup_epochs == 1 and proxy.opt == a3.opt and proxy.aa == a3.aa
    smoke = apply_budget(a3, "smoke", DIGITS)
    assert smoke.epochs == 1 and smoke.warmup_epochs == 0 and smoke.batch_size == 16
    assert apply_budget(a3, "full", DIGITS) is a3


def test_step_schedule_is_scaled_with_the_epochs():
    proxy = apply_budget(get_recipe("baseline"), "proxy", DIGITS)
    assert proxy.decay_epochs == round(30 * proxy.epochs / 90)


def test_lr_rescale_uses_sqrt_for_lamb_and_linear_for_sgd():
    a3 = get_recipe("rsb_a3")
    scaled, record = rescale_lr(a3, apply_overrides(a3, {"batch_size": 512}), lr_overridden=False)
    assert scaled.lr == pytest.approx(8e-3 * 0.5) and record["rule"] == "sqrt"
    base = get_recipe("baseline")
    scaled, record = rescale_lr(base, apply_overrides(base, {"batch_size": 64}), lr_overridden=False)
    assert scaled.lr == pytest.approx(0.025) and record["rule"] == "linear"
    same, record = rescale_lr(base, apply_overrides(base, {"batch_size": 64, "lr": 0.3}), lr_overridden=True)
    assert same.lr == 0.3 and record is None


def test_fidelity_lists_every_changed_setting_and_nothing_else():
    a3 = get_recipe("rsb_a3")
    assert fidelity(a3, a3, []) == []
    ran = apply_overrides(a3, {"epochs": 30, "dataset": "digits"})
    lines = fidelity(a3, ran, ["train images: first 64 of 1437"])
    assert lines == ["dataset: imagenet -> digits", "epochs: 100 -> 30", "train images: first 64 of 1437"]


def test_budget_leaves_fields_the_schedule_does_not_use():
    a3 = get_recipe("rsb_a3")
    assert apply_budget(a3, "proxy", DIGITS).decay_epochs == a3.decay_epochs


def _plan(*argv: str):
    from harness.arguments import build_parser
    from harness.run import plan_run

    return plan_run(build_parser().parse_args(["--dataset", "digits", *argv]))


@pytest.mark.parametrize(
    ("argv", "warmup", "option"),
    [
        (["--recipe", "rsb_a3", "--epochs", "1"], 0, "--epochs 1"),  # 100 epochs, 5 of warmup
        (["--recipe", "rsb_a3", "--epochs", "5"], 1, "--epochs 5"),
        (["--recipe", "rsb_a3", "--set", "epochs=3"], 1, "--set epochs=3"),
        (["--recipe", "rsb_a3", "--budget", "proxy", "--epochs", "1"], 0, "--epochs 1"),  # proxy: 1 of 15
    ],
)
def test_epochs_at_or_below_the_warmup_shorten_it_in_proportion_and_say_so(argv, warmup, option):
    plan = _plan(*argv)
    assert plan.recipe.warmup_epochs == warmup
    (notice,) = [n for n in plan.notices if "warmup" in n]
    assert notice.startswith(f"{option} is not above the warmup: warmup_epochs ")
    assert notice.endswith(
        f"-> {warmup}, shortened in proportion to epochs {'15' if 'proxy' in argv else '100'} -> {plan.recipe.epochs}"
    )
    assert f"warmup_epochs: 5 -> {warmup}" in fidelity(plan.published, plan.recipe, [])


def test_epochs_above_the_warmup_and_a_warmup_set_by_hand_are_kept():
    assert _plan("--recipe", "rsb_a3", "--epochs", "6").recipe.warmup_epochs == 5
    assert _plan("--recipe", "rsb_a3", "--epochs", "3", "--set", "warmup_epochs=2").recipe.warmup_epochs == 2
    with pytest.raises(ConfigError, match=r"^--set and --epochs: warmup_epochs \(5\) must be fewer than epochs \(3\)$"):
        _plan("--recipe", "rsb_a3", "--epochs", "3", "--set", "warmup_epochs=5")
    with pytest.raises(ConfigError, match=r"^--set: warmup_epochs \(5\) must be fewer than epochs \(3\)$"):
        _plan("--recipe", "rsb_a3", "--set", "epochs=3", "--set", "warmup_epochs=5")


def _published(grad_accum_steps: int):
    recipe = get_recipe("baseline")
    return dataclasses.replace(
        recipe, reference=dataclasses.replace(recipe.reference, grad_accum_steps=grad_accum_steps)
    )


UNTRAINED = (
    "last 1 of each epoch's 4 micro-batches per process not trained (timm's train.py trains them as one shorter update)"
)


def test_untrained_micro_batches_differ_only_from_a_publication_that_accumulated():
    # 4 micro-batches of 16 an epoch, updates of 3: one left. timm's train.py trains it as a shorter update only when
    # it accumulates; at the full batch (no accumulation) its drop_last leaves those images untrained too.
    model, split, loader = torch.nn.Linear(2, 2), BatchSplit(48, 1, 16), range(4)
    assert step_differences(_published(2), model, split, loader) == [UNTRAINED]
    assert step_differences(_published(1), model, split, loader) == []
    assert step_differences(_published(2), model, BatchSplit(64, 1, 16), loader) == []  # whole updates: none left
