"""Transfer learning offline: freezing, fresh heads, the seeds' schedules, early stopping and weights refusals."""

import csv
import dataclasses

import pytest
import timm
import torch
from safetensors.torch import load_file

from harness.build import build_model, build_scheduler, frozen_parameters
from harness.checkpoint import complete_checkpoints
from harness.config import apply_budget, apply_overrides
from harness.data import DEBIAN_FASHION_MNIST, dataset_info
from harness.engine import should_stop_early
from harness.run import main
from harness.weights import model_with_weights
from recipes import get_recipe
from tests.conftest import only_summary, run_cli


def _changed(before: dict, after: dict, keys) -> set[str]:
    return {k for k in keys if not torch.equal(before[k], after[k])}


@pytest.mark.slow
def test_upstream_weights_fine_tune_with_the_backbone_frozen_then_released(tmp_path):
    """Train upstream on one real dataset, save, fine-tune on digits: epoch 1 moves only the head, epoch 2 all."""
    upstream = "fashion_mnist" if DEBIAN_FASHION_MNIST.is_dir() else "digits"
    weights = tmp_path / "upstream.safetensors"
    common = ["--recipe", "resnet18_fmnist_transfer", "--budget", "smoke", "--workers", "0"]
    assert main([*common, "--dataset", upstream, "--output", str(tmp_path / "up"), "--save-weights", str(weights)]) == 0
    assert main([*common, "--dataset", "digits", "--epochs", "2", "--set", "freeze_epochs=1", "--keep", "2",
                 "--pretrained-file", str(weights), "--output", str(tmp_path / "down")]) == 0  # fmt: skip

    start = load_file(str(weights))
    run_dir = next((tmp_path / "down").iterdir())
    after_frozen, after_released = (load_file(str(c / "model.safetensors")) for c in complete_checkpoints(run_dir))
    parameters = {name for name, _ in timm.create_model("resnet18", num_classes=10).named_parameters()}
    head = {"fc.weight", "fc.bias"}
    # The frozen epoch trains only the head; the backbone parameters are exactly the upstream ones.
    assert _changed(start, after_frozen, parameters - head) == set()
    assert _changed(start, after_frozen, head) == head
    # The released epoch updates everything (the optimizer held the backbone from the start).
    assert _changed(after_frozen, after_released, parameters) == parameters

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    everything = sum(p.numel() for p in timm.create_model("resnet18", num_classes=10).parameters())
    assert [int(r["trainable_params"]) for r in rows] == [512 * 10 + 10, everything]
    summary = only_summary(tmp_path / "down")
    assert f"weights: initialised from {weights}" in summary["fidelity"]
    assert "freeze_epochs: 5 -> 1" in summary["fidelity"]
    assert summary["train_top1"] is not None and set(summary["plots"]) == {"curves", "confusion"}
    assert all((run_dir / name).is_file() for name in summary["plots"].values())


def test_a_pretrained_file_never_brings_its_head(tmp_path):
    recipe = dataclasses.replace(get_recipe("resnet18_fmnist_transfer"), pretrained=False)
    source = build_model(recipe, 10)
    path = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded, _ = model_with_weights(recipe, 10, path, keep_head=False)
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    assert not torch.equal(loaded.fc.weight, source.fc.weight)


def test_freeze_names_the_backbone_or_parameter_prefixes():
    resnet = timm.create_model("resnet18", num_classes=10)
    backbone = frozen_parameters(resnet, "backbone")
    assert len(backbone) == len(list(resnet.parameters())) - 2
    assert all(p is not resnet.fc.weight for p in backbone)
    assert frozen_parameters(resnet, "conv1, layer1.0") == [resnet.conv1.weight, *resnet.layer1[0].parameters()]
    assert frozen_parameters(resnet, "") == []
    with pytest.raises(ValueError, match="freeze='layer9' names no parameter; top-level parts: bn1, conv1, fc"):
        frozen_parameters(resnet, "layer9")


def test_budgets_keep_a_whole_run_freeze_whole_and_drop_hub_weights_only_at_smoke():
    info = dataset_info("digits")
    frozen_throughout = apply_budget(get_recipe("vgg16_mnist_frozen"), "proxy", info)
    assert frozen_throughout.freeze_epochs == frozen_throughout.epochs == 10
    assert apply_budget(get_recipe("resnet18_fmnist_transfer"), "proxy", info).freeze_epochs == 2
    assert apply_budget(get_recipe("resnet18_fmnist_transfer"), "proxy", info).pretrained
    assert not apply_budget(get_recipe("resnet18_fmnist_transfer"), "smoke", info).pretrained
    # A model that takes one input size keeps it at the proxy budget.
    assert apply_budget(get_recipe("cnn_cifar10_scratch"), "proxy", info).img_size == 32


def test_freeze_epochs_without_anything_to_freeze_is_refused():
    from harness.config import ConfigError

    with pytest.raises(ConfigError, match="freeze_epochs is set but freeze names nothing"):
        apply_overrides(get_recipe("cnn_fmnist"), {"freeze_epochs": 2})


def test_constant_then_exponential_decay_is_timms_multistep_schedule():
    recipe = dataclasses.replace(get_recipe("resnet50_cifar10_transfer"), epochs=6, decay_epochs=2)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    scheduler, _ = build_scheduler(recipe, optimizer, updates_per_epoch=10)
    lr_at = {epoch: scheduler._get_lr(epoch)[0] for epoch in range(6)}
    rate = recipe.decay_rate
    assert lr_at == pytest.approx({0: 0.01, 1: 0.01, 2: 0.01 * rate, 3: 0.01 * rate**2, 4: 0.01 * rate**3,
                                   5: 0.01 * rate**4})  # fmt: skip
    # The published 6 epochs with Keras' 10-epoch hold never decay, as the report says.
    published, _ = build_scheduler(get_recipe("resnet50_cifar10_transfer"), optimizer, updates_per_epoch=10)
    assert {published._get_lr(t)[0] for t in range(6)} == {0.01}


@pytest.mark.parametrize(
    ("losses", "patience", "stop"),
    [
        ([1.0, 0.9, 0.95, 0.96], 2, True),
        ([1.0, 0.9, 0.95, 0.89], 2, False),
        ([1.0, 0.9, 0.95], 2, False),
        ([1.0, 1.1, 1.2, 1.3], 0, False),
    ],
)
def test_early_stopping_watches_eval_loss_with_patience(losses, patience, stop):
    assert should_stop_early([{"eval_loss": v} for v in losses], patience, 0.0) is stop


@pytest.mark.slow
def test_early_stopping_is_recorded_in_the_summary(tmp_path):
    # No epoch can improve eval loss by 100, so patience 1 stops the run after its second epoch.
    assert main(["--recipe", "cnn_cifar10_scratch", "--budget", "smoke", "--epochs", "5", "--workers", "0",
                 "--set", "early_stop_patience=1", "--set", "early_stop_min_delta=100.0",
                 "--output", str(tmp_path)]) == 0  # fmt: skip
    summary = only_summary(tmp_path)
    assert summary["epochs_run"] == 2 and summary["stopped_early_at_epoch"] == 2


@pytest.mark.slow
def test_a_pretrained_recipe_without_weights_stops_and_says_how_to_provide_them(tmp_path):
    result = run_cli(
        "--recipe", "resnet18_fmnist_transfer", "--dataset", "digits", "--budget", "proxy", "--output", str(tmp_path),
        env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "pass --pretrained-file PATH, or --set pretrained=False" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("summary.json"))
