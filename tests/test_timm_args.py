"""timm's train.py args.yaml both ways, and train.py's LR scaling rule.

The args files here are made from the harness's own table of train.py's defaults (`TRAIN_PY_DEFAULTS`) plus the
flags a test changes, as train.py writes them (yaml.safe_dump of every flag); tests/data/timm_args.yaml is one that
timm's train.py itself wrote (a 2-epoch run on a tiny image folder:
`train.py --data-dir folder --model resnet18 --epochs 2 --warmup-epochs 1 --device cpu --batch-size 8 --img-size 32
--workers 1 --output out3 --experiment resnet18_a3_tiny --num-classes 2 --opt lamb --lr-base 0.002 --sched cosine
--mixup 0.1 --cutmix 1.0 --bce-loss --bce-target-thresh 0.2 --aa rand-m6-mstd0.5-inc1 --train-interpolation bicubic
--interpolation bicubic --crop-pct 0.95 --weight-decay 0.02 --smoothing 0.0 --min-lr 1e-6 --warmup-lr 1e-6
--drop-path 0.05 --reprob 0.25 --remode const --model-ema --model-ema-decay 0.999 --seed 0`)."""

import dataclasses
import math

import pytest
import torch
import yaml
from timm.optim import list_optimizers

from harness.build import build_optimizer, build_train_loss, scaled_lr
from harness.config import ConfigError
from harness.data.route import choose_route
from harness.recipe_files import resolve
from harness.run import main, parse_args, plan_run
from harness.timm_args import (
    ACTS_ONLY_WITH,
    HARNESS_KEY,
    IGNORED,
    KNOWN_DEFAULTS,
    MAPPED,
    NOT_IMPLEMENTED,
    TRAIN_PY_DEFAULTS,
    export_notices,
    is_timm_args,
    recipe_from_timm_args,
    timm_args_from_recipe,
    train_py_command,
)
from recipes import get_recipe, list_recipes, setting_fields
from tests.conftest import ROOT

REAL_ARGS = ROOT / "tests" / "data" / "timm_args.yaml"
# train.py's default train_interpolation (random) differs from every model's evaluation one; runs that set both
# alike, as the A3 procedure does, are what the harness can train.
ALIKE = {"train_interpolation": "bicubic", "interpolation": "bicubic"}


def args_yaml(**changes) -> dict:
    """An args.yaml as train.py writes it: every flag at its default but `changes`, through YAML."""
    return yaml.safe_load(yaml.safe_dump({**TRAIN_PY_DEFAULTS, **ALIKE, **changes}, default_flow_style=False))


def write_args(folder, **changes):
    path = folder / "args.yaml"
    path.write_text(yaml.safe_dump(args_yaml(**changes), default_flow_style=False))
    return path


def settings(recipe) -> dict:
    return {f: getattr(recipe, f) for f in setting_fields()}


def test_every_train_py_flag_is_mapped_ignored_or_refused_and_only_one_of_them():
    assert MAPPED | IGNORED | NOT_IMPLEMENTED == set(KNOWN_DEFAULTS)
    assert not (MAPPED & IGNORED) and not (MAPPED & NOT_IMPLEMENTED) and not (IGNORED & NOT_IMPLEMENTED)
    assert set(ACTS_ONLY_WITH) <= NOT_IMPLEMENTED
    assert {"layer_decay", "vflip", "drop_block", "jsd_loss", "mixup_mode", "lr_noise", "sync_bn"} <= NOT_IMPLEMENTED


def test_an_args_yaml_train_py_wrote_reads_as_the_run_it_trained():
    args = yaml.safe_load(REAL_ARGS.read_text())
    assert list(args) == sorted(TRAIN_PY_DEFAULTS)  # the flags of today's train.py, as it sorts them
    recipe, notices = recipe_from_timm_args(args, str(REAL_ARGS))
    expected = {
        **dict(model="resnet18", drop_path=0.05, img_size=32, test_img_size=32, crop_pct=0.95),
        **dict(interpolation="bicubic", aa="rand-m6-mstd0.5-inc1", reprob=0.25, color_jitter=0.4, hflip=0.5),
        **dict(mixup=0.1, cutmix=1.0, bce_loss=True, bce_target_thresh=0.2, smoothing=0.0, opt="lamb"),
        **dict(weight_decay=0.02, batch_size=8, sched="cosine", epochs=2, warmup_epochs=1, warmup_lr=1e-6),
        **dict(min_lr=1e-6, model_ema=True, model_ema_decay=0.999, amp=False, dataset="folder"),
    }
    assert {k: getattr(recipe, k) for k in expected} == expected
    # train.py logged "Learning rate (0.0003535533905932738) calculated from base learning rate (0.002) and
    # effective global batch size (8) with sqrt scaling" for this run
    assert recipe.lr == pytest.approx(0.002 * math.sqrt(8 / 256), rel=1e-12)
    assert recipe.name == "resnet18_a3_tiny" and recipe.reference.top1 is None
    assert "timm train.py args.yaml" in recipe.reference.source
    (ignored,) = [n for n in notices if n.startswith("ignored")]
    assert all(f in ignored for f in ("data_dir=folder", "workers=1", "seed=0", "device=cpu", "output=out3"))
    assert any(n.startswith("batch_size 8 per process") for n in notices)


def test_flags_that_cannot_change_training_are_ignored_and_listed_in_one_notice():
    logistics = dict(data_dir="/data/imagenet", output="/runs", workers=16, pin_mem=True, channels_last=True)
    logistics |= dict(torchcompile="inductor", checkpoint_hist=3, val_interval=2, log_wandb=True, no_prefetcher=True)
    plain, _ = recipe_from_timm_args(args_yaml(), "ARGS")
    recipe, notices = recipe_from_timm_args(args_yaml(**logistics), "ARGS")
    assert settings(recipe) == settings(plain)
    (ignored,) = [n for n in notices if "ignored" in n]
    assert all(f"{flag}=" in ignored for flag in logistics)
    assert "more at train.py's defaults" in ignored


def test_unimplemented_flags_are_refused_in_one_short_line_and_nothing_is_written(tmp_path, capsys):
    path = write_args(tmp_path, layer_decay=0.65, vflip=0.5, drop_block=0.1, jsd_loss=True, bn_momentum=0.01)
    out = tmp_path / "runs"
    assert main(["--recipe", str(path), "--dataset", "digits", "--budget", "smoke", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {path}: train.py flags the harness does not implement: layer_decay=0.65, vflip=0.5, "
        "jsd_loss=true and 2 more\n"  # in train.py's order of its flags
    )
    assert not out.exists()
    dump = tmp_path / "dump.yaml"
    assert main(["--recipe", str(path), "--dump-recipe", str(dump), "--format", "timm"]) == 2 and not dump.exists()


def test_unknown_flags_are_ignored_when_off_and_refused_otherwise():
    recipe, notices = recipe_from_timm_args(args_yaml(future_switch=False, future_path=None), "ARGS")
    (ignored,) = [n for n in notices if "ignored" in n]
    assert "future_switch=false (unknown, off)" in ignored and "future_path=None (unknown, off)" in ignored
    with pytest.raises(ConfigError, match=r"future_knob=0.3 \(unknown to the harness\)"):
        recipe_from_timm_args(args_yaml(future_knob=0.3), "ARGS")


def test_a_flag_of_the_wrong_type_is_one_line():
    with pytest.raises(ConfigError, match=r"^ARGS: a train.py flag has a value of the wrong type"):
        recipe_from_timm_args(args_yaml(reprob="high"), "ARGS")


def test_a_flag_that_acts_only_with_another_is_ignored_while_that_one_is_off():
    recipe, _ = recipe_from_timm_args(args_yaml(lr_noise_pct=0.3, lr_cycle_decay=0.9, patience_epochs=4), "ARGS")
    assert recipe.sched == "cosine"
    with pytest.raises(ConfigError, match=r"lr_noise=\[0.5\], lr_noise_pct=0.3"):
        recipe_from_timm_args(args_yaml(lr_noise=[0.5], lr_noise_pct=0.3), "ARGS")
    with pytest.raises(ConfigError, match="patience_epochs=4"):
        recipe_from_timm_args(args_yaml(sched="plateau", patience_epochs=4), "ARGS")


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"reprob": 0.25}, "remode=pixel (the harness erases with zeros: remode const)"),
        ({"reprob": 0.25, "remode": "const", "recount": 2}, "recount=2"),
        ({"sched": "multistep", "decay_milestones": [30, 60], "epochs": 90}, "decay_milestones=[30, 60]"),
        ({"mixup": 0.2, "mixup_mode": "elem"}, "mixup_mode=elem"),
        ({"opt_kwargs": {"foreach": False}}, "opt_kwargs="),
        ({"clip_grad": 1.0, "clip_mode": "agc"}, "clip_mode=agc"),
        ({"sched": "onecycle"}, "sched=onecycle"),
        ({"dataset": "tfds/imagenet2012"}, "dataset=tfds/imagenet2012"),
        (
            {"no_prefetcher": True, "reprob": 0.25, "remode": "const", "mixup": 0.2},
            "no_prefetcher=true (train.py without its prefetcher erases before Mixup/CutMix; the harness erases after",
        ),
    ],
)
def test_values_the_harness_would_train_differently_are_refused(changes, refused):
    with pytest.raises(ConfigError) as error:
        recipe_from_timm_args(args_yaml(**changes), "ARGS")
    assert refused in str(error.value)


def test_train_py_schedules_read_as_the_harness_ones_that_equal_them():
    def read(**changes):
        return recipe_from_timm_args(args_yaml(**changes), "ARGS")[0]

    assert read(sched="step", decay_rate=1.0).sched == "constant"
    one = read(sched="multistep", epochs=100)  # train.py's milestones 90, 180, 270: only 90 acts in 100 epochs
    assert (one.sched, one.decay_epochs, one.decay_rate) == ("multistep", 90, 0.1)
    # timm decays once t + 1 reaches a milestone: milestones 3..8 of 8 epochs stepped per epoch decay from the third
    every = read(sched="multistep", epochs=8, decay_milestones=[3, 4, 5, 6, 7, 8], decay_rate=0.9)
    assert (every.sched, every.decay_epochs, every.decay_rate) == ("constant_exp", 2, 0.9)
    assert read(sched="multistep", decay_milestones=[]).sched == "constant"
    assert read(sched_on_updates=True, cooldown_epochs=10, warmup_prefix=True).cooldown_epochs == 10
    older = read(apex_amp=False, native_amp=True, amp=False)  # train.py before 0.9 spelled AMP so
    assert older.amp


def test_without_a_process_count_the_batch_is_one_process_and_set_batch_size_settles_it(tmp_path):
    path = write_args(tmp_path, batch_size=128, grad_accum_steps=2, lr_base=0.1, opt="sgd")
    common = ["--recipe", str(path), "--dataset", "digits", "--seed", "0"]
    guessed = plan_run(parse_args(common))
    (notice,) = [n for n in guessed.notices if n.startswith("batch_size")]
    assert notice == (
        f"batch_size 128 per process x grad_accum_steps 2 in {path} taken as the global batch 256 (1 process); "
        "if it ran on N processes pass --set batch_size=256*N"
    )
    assert guessed.published.batch_size == 256 and guessed.published.lr == pytest.approx(0.1)
    settled = plan_run(parse_args([*common, "--set", "batch_size=1024"]))
    assert not [n for n in settled.notices if n.startswith("batch_size")]
    assert settled.published.batch_size == settled.recipe.batch_size == 1024
    assert settled.recipe.lr == pytest.approx(0.4) and settled.lr_rescale is None  # lr_base x 1024 / 256
    smaller = plan_run(parse_args([*common, "--batch-size", "64"]))  # a run at another batch: rescaled from it
    assert smaller.published.batch_size == 256 and smaller.lr_rescale["rule"] == "linear"


@pytest.mark.parametrize(
    ("changes", "lr"),
    [
        ({"opt": "sgd", "lr_base": 0.1, "batch_size": 512}, 0.1 * 512 / 256),
        ({"opt": "adamw", "lr_base": 1e-3, "batch_size": 1024}, 1e-3 * math.sqrt(1024 / 256)),
        ({"opt": "lambc", "lr_base": 5e-3, "lr_base_size": 2048, "batch_size": 512}, 5e-3 * math.sqrt(512 / 2048)),
        ({"opt": "adamw", "lr_base": 1e-3, "lr_base_scale": "linear", "batch_size": 512}, 1e-3 * 2),
        ({"opt": "sgd", "lr_base": 0.1, "batch_size": 64, "grad_accum_steps": 4}, 0.1),
        ({"opt": "sgd", "lr": 0.3, "lr_base": 0.1, "batch_size": 64}, 0.3),
    ],
)
def test_the_lr_is_lr_base_scaled_to_the_global_batch_unless_given(changes, lr):
    recipe, _ = recipe_from_timm_args(args_yaml(**changes), "ARGS")
    assert recipe.lr == pytest.approx(lr, rel=1e-12)


@pytest.mark.parametrize("name", list_recipes())
def test_every_registered_recipe_round_trips_through_timm_args(name):
    recipe = get_recipe(name)
    args = yaml.safe_load(yaml.safe_dump(timm_args_from_recipe(recipe), default_flow_style=False))
    assert set(args) - {HARNESS_KEY} == set(TRAIN_PY_DEFAULTS)
    back, _ = recipe_from_timm_args(args, "ARGS", name=recipe.name)
    assert settings(back) == settings(recipe)
    assert (
        args["dist_bn"] == "reduce"
        and args["remode"] == "const"
        and args["train_interpolation"] == recipe.training_interpolation
    )
    if recipe.batch_size % 4 == 0:  # on 4 processes, read back with the count settled
        four = timm_args_from_recipe(recipe, processes=4)
        assert four["batch_size"] == recipe.batch_size // 4 and four["aug_repeats"] == recipe.aug_repeats
        assert settings(recipe_from_timm_args(four, "ARGS", processes=4)[0]) == settings(recipe)


@pytest.mark.parametrize("per_update", [False, True])
@pytest.mark.parametrize("decay_epochs", [1, 2, 3.4, 5, 6, 9])
def test_constant_exp_schedules_round_trip_through_train_py_milestones(decay_epochs, per_update):
    recipe = dataclasses.replace(
        get_recipe("resnet50_cifar10_transfer"), decay_epochs=decay_epochs, sched_on_updates=per_update, epochs=6
    )
    args = timm_args_from_recipe(recipe)
    assert args["sched"] == "multistep"
    assert settings(recipe_from_timm_args(args, "ARGS")[0]) == settings(recipe)
    if decay_epochs == 2:  # a milestone at every later epoch: no harness key needed to read it back
        assert HARNESS_KEY not in args and args["decay_milestones"] == ([2, 3, 4, 5, 6] if per_update else [3, 4, 5, 6])


def test_settings_train_py_has_no_flag_for_ride_under_the_harness_key():
    recipe = get_recipe("resnet18_fmnist_transfer")
    args = timm_args_from_recipe(recipe)
    assert args[HARNESS_KEY] == {"rotate": 10.0, "freeze": "backbone", "freeze_epochs": 5}
    a3 = timm_args_from_recipe(get_recipe("rsb_a3"))
    assert a3[HARNESS_KEY] == {"dataset": "imagenet", "test_img_size": 224}  # train.py validates at img_size
    constant = timm_args_from_recipe(get_recipe("lenet_mnist"))
    assert (constant["sched"], constant["decay_rate"], constant["dataset"]) == ("step", 1.0, "torch/mnist")
    assert HARNESS_KEY not in constant
    folder = dataclasses.replace(get_recipe("rsb_a3"), dataset="folder")
    assert any("add --num-classes N" in n for n in export_notices(folder, timm_args_from_recipe(folder)))
    assert timm_args_from_recipe(folder, num_classes=37)["num_classes"] == 37
    frozen_bn = dataclasses.replace(get_recipe("baseline"), filter_bias_and_bn=True)
    assert timm_args_from_recipe(get_recipe("baseline"))["opt_kwargs"] == {"filter_bias_and_bn": False}
    assert timm_args_from_recipe(frozen_bn)["opt_kwargs"] == {}


def test_harness_settings_that_change_what_train_py_flags_say_are_refused():
    args = timm_args_from_recipe(get_recipe("resnet18_fmnist_transfer"))
    args[HARNESS_KEY]["lr"] = 0.5
    with pytest.raises(ConfigError, match=r"harness settings change what train.py's flags say \(lr\)"):
        recipe_from_timm_args(args, "ARGS")
    args[HARNESS_KEY] = {"lr_base": 0.5}
    with pytest.raises(ConfigError, match="unknown: lr_base"):
        recipe_from_timm_args(args, "ARGS")


def test_dump_recipe_format_timm_writes_train_py_args_and_prints_the_command(tmp_path, capsys):
    dump = tmp_path / "cnn.yaml"
    common = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke"]
    planned = plan_run(parse_args(common)).recipe
    argv = [*common, "--dump-recipe", str(dump), "--format", "timm", "--processes", "2", "--data-dir", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"train it with timm's train.py: torchrun --nproc_per_node 2 train.py -c {dump} --data-dir {tmp_path}" in out
    assert "train.py leaves them out" in out
    args = yaml.safe_load(dump.read_text())
    assert set(args) == {*TRAIN_PY_DEFAULTS, HARNESS_KEY} and args[HARNESS_KEY] == {"dataset": "digits"}
    assert args["num_classes"] == 10  # train.py would give the model its default head otherwise
    assert args["batch_size"] == planned.batch_size // 2  # per process
    assert (args["model"], args["opt"], args["lr"]) == (planned.model, planned.opt, planned.lr)
    back = plan_run(parse_args(["--recipe", str(dump), "--set", f"batch_size={planned.batch_size}"]))
    assert settings(back.recipe) == settings(planned)
    assert train_py_command("a b.yaml") == "python train.py -c 'a b.yaml' --data-dir DATA_DIR"


def test_a_dump_for_an_image_folder_counts_its_classes_for_train_py(tmp_path, capsys):
    from PIL import Image

    for split, label in [(s, c) for s in ("train", "val") for c in ("cat", "dog", "emu")]:
        (tmp_path / split / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), (40, 90, 160)).save(tmp_path / split / label / "0.png")
    dump = tmp_path / "a3.yaml"
    argv = ["--recipe", "rsb_a3", "--dataset", "folder", "--data-dir", str(tmp_path), "--budget", "smoke"]
    assert main([*argv, "--dump-recipe", str(dump), "--format", "timm"]) == 0
    args = yaml.safe_load(dump.read_text())
    assert args["num_classes"] == 3 and args["dataset"] == "" and args["amp_dtype"] == "float16"
    assert "--num-classes" not in capsys.readouterr().out


def test_a_recipe_file_may_take_an_args_yaml_as_its_base_and_cite_a_reference(tmp_path):
    run = tmp_path / "20260101-resnet18-32"
    run.mkdir()
    args = write_args(run, model="resnet18", opt="sgd", lr_base=0.1, batch_size=64)
    assert resolve(str(args)).recipe.name == "20260101-resnet18-32"  # train.py's run folder names it
    paper = tmp_path / "paper.yaml"
    paper.write_text(
        f"name: my_timm_run\nbase: {run.name}/args.yaml\nbatch_size: 512\n"
        "reference: {source: 'Doe et al. 2026, Table 1', dataset: imagenet, top1: 71.5}\n"
    )
    resolved = resolve(str(paper))
    assert resolved.published == resolved.recipe and resolved.recipe.reference.top1 == 71.5
    assert resolved.recipe.lr == pytest.approx(0.1 * 512 / 256)  # the file's batch settles the base's lr_base
    variant = tmp_path / "variant.yaml"
    variant.write_text(f"name: shorter\nbase: {run.name}/args.yaml\nepochs: 30\n")
    shorter = resolve(str(variant))
    assert shorter.published.epochs == 300 and shorter.recipe.epochs == 30
    assert shorter.published.reference.top1 is None and any("per process" in n for n in shorter.notices)


def test_an_args_file_is_recognised_by_its_keys_not_its_name(tmp_path):
    assert is_timm_args(args_yaml())
    assert is_timm_args({"model": "resnet50", "drop": 0.1, "epochs": 100})  # a short train.py -c config
    assert not is_timm_args({"name": "x", "base": "rsb_a3", "drop_path": 0.1})
    assert not is_timm_args({"base": "rsb_a3", "epochs": 3})  # a recipe file that forgot its name
    renamed = tmp_path / "a3_run.yaml"
    renamed.write_text(yaml.safe_dump(args_yaml(model="resnet18")))
    assert resolve(str(renamed)).recipe.model == "resnet18"


def test_lr_rescaling_follows_train_py_for_every_timm_optimizer():
    """train.py: `'sqrt' if any([o in on for o in ('ada', 'lamb')]) else 'linear'` on the lower-cased name."""
    names = list_optimizers()
    assert len(names) > 20
    for name in names:
        lr, rule = scaled_lr(0.1, name, 256, 1024)
        expected = "sqrt" if "ada" in name or "lamb" in name else "linear"
        assert (rule, lr) == (expected, pytest.approx(0.2 if expected == "sqrt" else 0.4)), name
    for name in ("lambc", "nadamw", "adamp", "adafactor", "adamw", "lamb"):
        assert scaled_lr(0.1, name.upper(), 256, 64)[1] == "sqrt"
    for name in ("lars", "sgd", "momentum", "lion", "rmsprop"):
        assert scaled_lr(0.1, name, 256, 64)[1] == "linear"


def test_momentum_reaches_every_optimizer_that_takes_one_as_in_train_py():
    recipe = dataclasses.replace(get_recipe("rsb_a3"), opt="rmsprop", momentum=0.5)
    optimizer = build_optimizer(recipe, torch.nn.Linear(2, 2))
    assert {group["momentum"] for group in optimizer.param_groups} == {0.5}


@pytest.mark.parametrize(
    ("mixup", "smoothing", "loss"),
    [(0.1, 0.0, "BinaryCrossEntropy"), (0.0, 0.1, "BinaryCrossEntropy"), (0.0, 0.0, "CrossEntropyLoss")],
)
def test_bce_loss_is_chosen_as_train_py_chooses_it(mixup, smoothing, loss):
    recipe = dataclasses.replace(get_recipe("rsb_a3"), mixup=mixup, cutmix=0.0, smoothing=smoothing)
    assert type(build_train_loss(recipe, mixup_active=mixup > 0)).__name__ == loss


def test_train_py_default_random_training_interpolation_is_trained_as_such():
    from harness.data.loader import worker_transforms

    recipe, _ = recipe_from_timm_args(args_yaml(train_interpolation="random", interpolation="bicubic"), "ARGS")
    assert (recipe.interpolation, recipe.train_interpolation, recipe.training_interpolation) == (
        "bicubic", "random", "random",
    )  # fmt: skip
    train, _ = worker_transforms(recipe, 3, choose_route("workers", "workers", "auto", recipe, "folder", 1, None))
    crop = next(t for t in train.transforms if type(t).__name__ == "RandomResizedCropAndInterpolation")
    assert len(crop.interpolation) == 2  # timm draws bilinear or bicubic per image
    assert timm_args_from_recipe(recipe)["train_interpolation"] == "random"


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"no_ddp_bb": True}, "no_ddp_bb=true"),  # DDP without broadcast buffers: other BatchNorm statistics
        ({"model_ema": True, "model_ema_force_cpu": True}, "model_ema_force_cpu=true"),  # no EMA eval nor dist_bn
        ({"sched": "plateau", "val_interval": 2}, "val_interval=2"),  # the plateau gets no metric on skipped epochs
        ({"sched": "plateau", "tta": 2}, "tta=2"),
        ({"dataset": "wds/imagenet", "train_num_samples": 1000}, "train_num_samples=1000"),  # the epoch's length
        ({"dataset": "wds/imagenet", "sched": "plateau", "val_num_samples": 500}, "val_num_samples=500"),
    ],
)
def test_flags_that_act_are_refused_unless_at_their_default(changes, refused):
    with pytest.raises(ConfigError) as error:
        recipe_from_timm_args(args_yaml(**changes), "ARGS")
    assert refused in str(error.value) and "does not implement" in str(error.value)


def test_those_flags_are_ignored_and_listed_where_they_cannot_act():
    plain, _ = recipe_from_timm_args(args_yaml(), "ARGS")
    inert = dict(model_ema_force_cpu=True, val_interval=2, tta=2, train_num_samples=1000, val_num_samples=500)
    recipe, notices = recipe_from_timm_args(args_yaml(**inert), "ARGS")  # no EMA, cosine, an image folder
    assert settings(recipe) == settings(plain)
    (ignored,) = [n for n in notices if "ignored" in n]
    assert all(f"{flag}=" in ignored for flag in inert)


def test_an_args_yaml_reference_keeps_the_batch_batchnorm_saw_and_the_accumulation():
    recipe, _ = recipe_from_timm_args(args_yaml(batch_size=32, grad_accum_steps=4), "ARGS", processes=2)
    assert recipe.batch_size == 256
    assert recipe.reference.per_device_batch == 32 and recipe.reference.grad_accum_steps == 4
    plain, _ = recipe_from_timm_args(args_yaml(batch_size=32), "ARGS")
    assert plain.reference.per_device_batch == 32 and plain.reference.grad_accum_steps == 1


def test_a_run_of_an_args_yaml_at_another_micro_batch_names_the_batchnorm_difference(tmp_path):
    # resnet18 has BatchNorm; train.py normalised over 8 images per process, this run over 4 (2 micro-steps)
    path = write_args(tmp_path, model="resnet18", batch_size=8, grad_accum_steps=2, num_classes=10)
    out = tmp_path / "runs"
    argv = ["--recipe", str(path), "--dataset", "digits", "--budget", "smoke", "--micro-batch", "4"]
    assert main([*argv, "--workers", "0", "--output", str(out)]) == 0
    summary = yaml.safe_load(next(out.rglob("summary.json")).read_text())
    assert "BatchNorm batch per device: 8 -> 4" in summary["fidelity"]


def test_a_head_other_than_the_datasets_classes_is_refused_where_the_count_is_known():
    with pytest.raises(ConfigError, match=r"num_classes=None \(train.py trained a 1000-class head; cifar10 has 10"):
        recipe_from_timm_args(args_yaml(dataset="torch/cifar10"), "ARGS")  # the model's default head
    with pytest.raises(ConfigError, match=r"num_classes=100 \(train.py trained a 100-class head; cifar10 has 10"):
        recipe_from_timm_args(args_yaml(dataset="torch/cifar10", num_classes=100), "ARGS")
    assert recipe_from_timm_args(args_yaml(dataset="torch/cifar10", num_classes=10), "ARGS")[0].dataset == "cifar10"
    assert recipe_from_timm_args(args_yaml(num_classes=7), "ARGS")[0].dataset == "folder"  # counted at run time
