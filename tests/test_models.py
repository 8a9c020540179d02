"""harness.models: every registered architecture builds through timm, runs, and swaps its classifier."""

import pytest
import timm
import torch
import torchvision
from timm.data import resolve_model_data_config

import harness.models  # noqa: F401  (registers the models with timm)

NAMES = ("seed_cnn_cifar10", "seed_cnn_fmnist", "lenet5", "mini_googlenet", "googlenet_tv", "resnet50_mlp_head")
NO_WEIGHTS = ("seed_cnn_cifar10", "seed_cnn_fmnist", "lenet5", "mini_googlenet", "googlenet_tv")
SIZES = {
    "seed_cnn_cifar10": (32,),
    "seed_cnn_fmnist": (28, 32),
    "lenet5": (28, 32),
    "mini_googlenet": (32,),
    "googlenet_tv": (64,),
    "resnet50_mlp_head": (64,),
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(model: torch.nn.Module, size: int, chans: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.randn(2, chans, size, size))


@pytest.mark.parametrize("name", NAMES)
def test_builds_runs_and_resets_classifier(name):
    assert timm.is_model(name)
    model = timm.create_model(name, num_classes=7)
    assert model.num_classes == 7
    assert isinstance(model.get_classifier(), torch.nn.Module)
    for size in SIZES[name]:
        assert run(model, size).shape == (2, 7)
    model.reset_classifier(3)
    assert model.num_classes == 3
    for size in SIZES[name]:
        assert run(model, size).shape == (2, 3)
    model.reset_classifier(0)
    assert run(model, SIZES[name][0]).shape == (2, model.head_hidden_size)


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_cfg_follows_timm_conventions(name):
    model = timm.create_model(name, num_classes=7)
    assert model.default_cfg is model.pretrained_cfg
    assert model.pretrained_cfg["architecture"] == name
    assert len(model.pretrained_cfg["input_size"]) == 3
    assert isinstance(model.pretrained_cfg["num_classes"], int)
    assert resolve_model_data_config(model)["input_size"] == model.pretrained_cfg["input_size"]


@pytest.mark.parametrize("name", NAMES)
def test_harmless_timm_kwargs_are_accepted(name):
    # what harness.build.build_model passes for a recipe with default drop settings
    model = timm.create_model(name, num_classes=7, drop_rate=0.0, drop_path_rate=None)
    assert run(model, SIZES[name][0]).shape == (2, 7)
    model = timm.create_model(name, num_classes=7, drop_rate=0.1, drop_path_rate=0.1, pretrained_cfg_overlay={})
    assert run(model, SIZES[name][0]).shape == (2, 7)


@pytest.mark.parametrize("name", NO_WEIGHTS)
def test_pretrained_is_refused_without_published_weights(name):
    with pytest.raises(ValueError, match="no published weights"):
        timm.create_model(name, pretrained=True, num_classes=7)
    assert not timm.is_model_pretrained(name)


@pytest.mark.parametrize("name", ["seed_cnn_fmnist", "lenet5", "mini_googlenet", "googlenet_tv"])
def test_one_input_channel(name):
    model = timm.create_model(name, num_classes=7, in_chans=1)
    for size in SIZES[name]:
        assert run(model, size, chans=1).shape == (2, 7)


def test_seed_cnn_cifar10_matches_report_003():
    model = timm.create_model("seed_cnn_cifar10", num_classes=10, in_chans=3)
    assert n_params(model) == 1_250_858
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.25, 0.25, 0.5]


def test_seed_cnn_cifar10_input_is_fixed_at_32():
    model = timm.create_model("seed_cnn_cifar10", num_classes=10)
    assert model.pretrained_cfg["fixed_input_size"]
    with pytest.raises(ValueError, match="32x32"):
        run(model, 28)
    with pytest.raises(ValueError, match="32x32"):
        timm.create_model("seed_cnn_cifar10", img_size=28)


def test_seed_cnn_fmnist_size():
    assert 200_000 <= n_params(timm.create_model("seed_cnn_fmnist", num_classes=10)) <= 1_500_000


def test_lenet5_parameter_count():
    # the classic 61,706 for one input channel and 10 classes
    assert n_params(timm.create_model("lenet5", num_classes=10, in_chans=1)) == 61_706
    assert n_params(timm.create_model("lenet5", num_classes=10)) == 62_006


def test_lenet5_pads_28_to_32():
    model = timm.create_model("lenet5", num_classes=10).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model(torch.nn.functional.pad(x, (2, 2, 2, 2))))
    with pytest.raises(ValueError, match="32x32"):
        run(model, 36)


def test_mini_googlenet_matches_keras_trainable_count():
    # Keras summary of MiniGoogLeNet on CIFAR-10: 1,652,826 trainable (BatchNorm running stats are buffers here)
    model = timm.create_model("mini_googlenet", num_classes=10)
    assert n_params(model) == 1_652_826
    assert model.head_hidden_size == 336


def test_googlenet_tv_is_torchvision_googlenet():
    model = timm.create_model("googlenet_tv", num_classes=7)
    reference = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=7)
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert ours == theirs
    assert model.get_classifier() is model.fc
    assert n_params(timm.create_model("googlenet_tv", num_classes=10)) == 5_610_154


def test_resnet50_mlp_head_matches_report_003():
    model = timm.create_model("resnet50_mlp_head", num_classes=10)
    head = model.get_classifier()
    assert [n_params(layer) for layer in head if isinstance(layer, torch.nn.Linear)] == [2_098_176, 524_800, 5_130]
    assert n_params(model.backbone) == 23_508_032
    hidden = [head[0].weight, head[2].weight]
    model.reset_classifier(3)
    assert model.get_classifier()[0].weight is hidden[0] and model.get_classifier()[2].weight is hidden[1]
    assert model.get_classifier()[-1].out_features == 3
