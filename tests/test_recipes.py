"""Schema tests over every registered recipe: evidence present, fields valid, model builds."""

import dataclasses

import pytest
import timm

from harness.build import build_model
from recipes import Recipe, Reference, get_recipe, list_recipes, register

ALL = list_recipes()


def test_the_issue_recipes_are_registered():
    assert {"baseline", "cosine", "mixup_cutmix", "rsb_a1", "rsb_a2", "rsb_a3"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_recipe_carries_its_evidence(name):
    recipe = get_recipe(name)
    ref = recipe.reference
    assert recipe.name == name and recipe.summary
    assert isinstance(ref, Reference) and ref.source.strip() and ref.dataset
    if ref.top1 is None:
        assert "no verified published figure" in ref.note, "a recipe without a number must say why"
    else:
        assert 0 < ref.top1 <= 100
    assert recipe.tolerance > 0


@pytest.mark.parametrize("name", ALL)
def test_recipe_fields_are_valid_and_the_model_builds(name):
    recipe = get_recipe(name)
    assert dataclasses.replace(recipe) == recipe  # every field passes the declared constraints
    model = build_model(dataclasses.replace(recipe, pretrained=False), num_classes=10)
    assert model.num_classes == 10
    assert timm.is_model(recipe.model)


def test_registry_rejects_duplicates_and_names_valid_recipes():
    with pytest.raises(ValueError, match="registered twice"):
        register(get_recipe("rsb_a3"))
    with pytest.raises(KeyError, match="valid recipes: .*rsb_a3"):
        get_recipe("vit_b16")
    with pytest.raises(KeyError, match="unknown recipe 'rsb_a4'; did you mean rsb_a3, rsb_a2 or rsb_a1"):
        get_recipe("rsb_a4")
    assert get_recipe("rsb-a3") is get_recipe("rsb_a3")


def test_recipes_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_recipe("rsb_a3").lr = 1.0


# The RSB table in the shared references, column by column.
# fmt: off
RSB_TABLE = {
    "rsb_a1": dict(epochs=600, img_size=224, test_img_size=224, lr=5e-3, weight_decay=0.01, smoothing=0.1,
                   mixup=0.2, cutmix=1.0, aa="rand-m7-mstd0.5-inc1", aug_repeats=3, drop_path=0.05),
    "rsb_a2": dict(epochs=300, img_size=224, test_img_size=224, lr=5e-3, weight_decay=0.02, smoothing=0.0,
                   mixup=0.1, cutmix=1.0, aa="rand-m7-mstd0.5-inc1", aug_repeats=3, drop_path=0.05),
    "rsb_a3": dict(epochs=100, img_size=160, test_img_size=224, lr=8e-3, weight_decay=0.02, smoothing=0.0,
                   mixup=0.1, cutmix=1.0, aa="rand-m6-mstd0.5-inc1", aug_repeats=0, drop_path=0.0),
}
RSB_SHARED = dict(opt="lamb", batch_size=2048, sched="cosine", warmup_epochs=5, bce_loss=True,
                  bce_target_thresh=0.2, crop_pct=0.95, interpolation="bicubic", filter_bias_and_bn=True,
                  reprob=0.0, model_ema=False, amp=True, model="resnet50")
# fmt: on


@pytest.mark.parametrize("name", sorted(RSB_TABLE))
def test_rsb_hyper_parameters_match_the_published_table(name):
    recipe = get_recipe(name)
    for key, value in {**RSB_SHARED, **RSB_TABLE[name]}.items():
        assert getattr(recipe, key) == value, key
    assert recipe.reference.top1 == {"rsb_a1": 80.4, "rsb_a2": 79.8, "rsb_a3": 78.1}[name]


def test_baseline_is_the_old_torchvision_recipe():
    r = get_recipe("baseline")
    assert (r.opt, r.lr, r.momentum, r.weight_decay, r.batch_size) == ("momentum", 0.1, 0.9, 1e-4, 256)
    assert (r.sched, r.epochs, r.decay_epochs, r.decay_rate) == ("step", 90, 30, 0.1)
    assert r.reference.top1 == 76.1 and r.mixup == 0 and r.aa is None


def test_ablation_steps_change_only_what_their_step_names():
    base, cos, mix = (get_recipe(n) for n in ("baseline", "cosine", "mixup_cutmix"))
    changed = {f.name for f in dataclasses.fields(Recipe) if getattr(base, f.name) != getattr(cos, f.name)}
    assert changed == {"name", "summary", "reference", "sched", "warmup_epochs", "warmup_lr", "notes"}
    changed = {f.name for f in dataclasses.fields(Recipe) if getattr(cos, f.name) != getattr(mix, f.name)}
    assert changed == {"name", "summary", "mixup", "cutmix", "notes"}
    assert cos.reference.top1 is None and mix.reference.top1 is None


@pytest.mark.parametrize("name", ALL)
def test_every_budget_on_every_dataset_still_satisfies_the_constraints(name):
    from harness.config import adapt_to_dataset, apply_budget, override
    from harness.data import DATASETS, dataset_info

    for dataset in DATASETS:
        info = dataset_info(dataset)
        adapted = adapt_to_dataset(override(get_recipe(name), "--dataset", dataset=dataset), info)
        for budget in ("full", "proxy", "smoke"):
            resolved = apply_budget(adapted, budget, info)  # re-validated by dataclasses.replace, or ConfigError
            assert resolved.warmup_epochs < resolved.epochs or resolved.warmup_epochs == 0
