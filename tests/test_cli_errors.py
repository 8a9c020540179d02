"""Every bad value is refused before anything is written: one line on stderr naming it and what is valid, exit 2.

One case per recipe constraint (through --set, so through the same pydantic model a recipe file uses), per
numeric option and per recipe-file failure; in-process through `harness.run.main` for speed."""

import pytest

from harness.run import main

SET = {
    # field=value                      what the one line must say
    "drop_rate=1.0": "drop_rate=1.0: input should be less than 1",
    "drop_path=1.5": "drop_path=1.5: input should be less than 1",
    "img_size=0": "img_size=0: input should be greater than 0",
    "test_img_size=-32": "test_img_size=-32: input should be greater than 0",
    "crop_pct=1.5": "crop_pct=1.5: input should be less than or equal to 1",
    "interpolation='cubic'": "interpolation='cubic': input should be 'bilinear', 'bicubic', 'nearest' or 'random'",
    "mean=(0.5, 0.5)": "mean=(0.5, 0.5): expected 3 values (one per RGB channel), got 2",
    "std=(0.2, 0.0, 0.2)": "std[1]=0.0: input should be greater than 0",
    "scale=(1.0, 0.08)": "scale=(1.0, 0.08): must be an ordered pair (low, high)",
    "scale=(0.5, 1.5)": "scale=(0.5, 1.5): crop area fractions must lie in (0, 1]",
    "scale=0.5": "scale=0.5: input should be a valid tuple",
    "ratio=(1.33, 0.75)": "ratio=(1.33, 0.75): must be an ordered pair (low, high)",
    "hflip=3": "hflip=3: input should be less than or equal to 1",
    "rotate=-10": "rotate=-10: input should be greater than or equal to 0",
    "color_jitter=-0.1": "color_jitter=-0.1: input should be greater than or equal to 0",
    "aa='rnd-m9'": "aa='rnd-m9': timm cannot parse it (Unknown AutoAugment config section); examples: rand-m9",
    "aa='rand-x9'": "aa='rand-x9': timm cannot parse it (Unknown RandAugment config section)",
    "aa='rand-m9-mstd0.5-incx'": "aa='rand-m9-mstd0.5-incx': timm would silently ignore 'incx'",
    "reprob=1.5": "reprob=1.5: input should be less than or equal to 1",
    "aug_repeats=-1": "aug_repeats=-1: input should be greater than or equal to 0",
    "mixup=-0.2": "mixup=-0.2: input should be greater than or equal to 0",
    "cutmix=-1": "cutmix=-1: input should be greater than or equal to 0",
    "mixup_prob=2": "mixup_prob=2: input should be less than or equal to 1",
    "mixup_switch_prob=-0.1": "mixup_switch_prob=-0.1: input should be greater than or equal to 0",
    "smoothing=1.0": "smoothing=1.0: input should be less than 1",
    "bce_target_thresh=1.5": "bce_target_thresh=1.5: input should be less than 1",
    "opt='lambada'": "opt='lambada': not a timm optimizer; did you mean lambcd, lamb or lambw?",
    "opt='zzz'": "opt='zzz': not a timm optimizer; valid: adabelief",
    "lr=0": "lr=0: input should be greater than 0",
    "momentum=1.0": "momentum=1.0: input should be less than 1",
    "weight_decay=-1e-4": "weight_decay=-0.0001: input should be greater than or equal to 0",
    "clip_grad=0": "clip_grad=0: input should be greater than 0",
    "batch_size=0": "batch_size=0: input should be greater than 0",
    "sched='linear'": "sched='linear': input should be 'cosine', 'step'",
    "epochs=0": "epochs=0: input should be greater than 0",
    "warmup_epochs=-1": "warmup_epochs=-1: input should be greater than or equal to 0",
    "warmup_epochs=1": "warmup_epochs (1) must be fewer than epochs (1)",
    "warmup_lr=-1": "warmup_lr=-1: input should be greater than or equal to 0",
    "min_lr=-1": "min_lr=-1: input should be greater than or equal to 0",
    "decay_epochs=0": "decay_epochs=0: input should be greater than 0",
    "decay_rate=0": "decay_rate=0: input should be greater than 0",
    "freeze_epochs=-1": "freeze_epochs=-1: input should be greater than or equal to 0",
    "freeze_epochs=1": "freeze_epochs is set but freeze names nothing",
    "early_stop_patience=-1": "early_stop_patience=-1: input should be greater than or equal to 0",
    "early_stop_min_delta=-1": "early_stop_min_delta=-1: input should be greater than or equal to 0",
    "model_ema_decay=1.0": "model_ema_decay=1.0: input should be less than 1",
    "model='resnet5000'": "model='resnet5000': not a timm model; did you mean resnet50, resnet50t or resnet50s? see "
    "timm.list_models()",
    "model='zzz'": "model='zzz': not a timm model; see timm.list_models()",
    "pretrained=1": "pretrained=1: input should be a valid boolean",
    "epochs=1.5": "epochs=1.5: input should be a valid integer",
    "batch_size=4096": "global batch 4096 is larger than the 64 training images; pass --batch-size 64 or less",
}

OPTIONS = {
    "--budget huge": "error: argument --budget: invalid choice 'huge' (choose from full, proxy, smoke); see --help",
    "--loader fast": "error: argument --loader: invalid choice 'fast' (choose from auto, memory, workers); see --help",
    "--threads 0": "error: argument --threads: 0 is out of range; expected an integer >= 1; see --help",
    "--workers -1": "error: argument --workers: -1 is out of range; expected an integer >= 0; see --help",
    "--keep 0": "error: argument --keep: 0 is out of range; expected an integer >= 1; see --help",
    "--save-every -5": "error: argument --save-every: -5 is out of range; expected an integer >= 0; see --help",
    "--seed -1": "error: argument --seed: -1 is out of range; expected an integer in 0..4294967295; see --help",
    "--seeds 0,-1": "error: --seeds 0,-1: seed -1 is out of range; expected an integer in 0..4294967295",
    "--epochs 0": "error: argument --epochs: 0 is out of range; expected an integer >= 1; see --help",
    "--epochs ten": "error: argument --epochs: expected an integer, got 'ten'; see --help",
    "--batch-size 0": "error: argument --batch-size: 0 is out of range; expected an integer >= 1; see --help",
    "--micro-batch 0": "error: argument --micro-batch: 0 is out of range; expected an integer >= 1; see --help",
    "--micro-batch 3": "error: --micro-batch 3 does not divide the global batch 16 over 1 process(es)",
    "--log-every 0": "error: argument --log-every: 0 is out of range; expected an integer >= 1; see --help",
    "--log-with foo": "error: --log-with: unknown tracker 'foo'; valid: all, aim, clearml, comet_ml",
    "--log-with wandb": "error: --log-with wandb: the wandb package is not installed; pip install wandb",
    "--bogus 1": "error: unrecognized arguments: --bogus 1; see --help",
    # A refusal names the options the user gave, not only --set.
    "--set warmup_epochs=3 --epochs 3": "error: --set and --epochs: warmup_epochs (3) must be fewer than epochs (3)",
    "--batch-size 4096": "error: --batch-size: global batch 4096 is larger than the 64 training images; pass "
    "--batch-size 64 or less",
}

FILES = {
    "unknown field": ("name: x\nbase: rsb_a3\nlrr: 0.1\n", "unknown field 'lrr'; valid fields: base, name"),
    "missing base": ("name: x\nbase: rsb_a9\n", "base 'rsb_a9' is neither a registered recipe nor a file"),
    "missing base file": ("name: x\nbase: ../absent.yaml\n", "base ../absent.yaml not found"),
    "not YAML": ("name: x\nbase: [rsb_a3\n", "is not valid YAML (line 3: expected ',' or ']'"),
    "not a mapping": ("- rsb_a3\n", "must hold a mapping of recipe fields (name: ..., base: ...), got list"),
    "no name": ("base: rsb_a3\n", "a recipe file needs a name"),
    "bad value": ("name: x\nbase: rsb_a3\nscale: [1.0, 0.08]\n", "scale=[1.0, 0.08]: must be an ordered pair"),
    "bad reference": (
        "name: x\nbase: rsb_a3\nreference: {source: s, dataset: imagenet, top1: 780}\n",
        "reference.top1=780: input should be less than or equal to 100",
    ),
    "no base and no reference": ("name: x\nsummary: s\n", "reference is required"),
    "own base": ("name: x\nbase: ./self.yaml\n", "is its own base"),
}


def _refused(argv, capsys, tmp_path) -> str:
    out = tmp_path / "runs"
    assert main([*argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not out.exists()  # not even the output directory
    return lines[0]


@pytest.mark.parametrize("item", sorted(SET))
def test_every_constraint_refuses_a_bad_set_value(item, capsys, tmp_path):
    line = _refused(["--recipe", "cnn_fmnist", "--budget", "smoke", "--set", item], capsys, tmp_path)
    assert line.startswith("error: --set: ") and SET[item] in line


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_numeric_option_and_choice_is_checked(option, capsys, tmp_path):
    line = _refused(["--recipe", "cnn_fmnist", "--budget", "smoke", *option.split()], capsys, tmp_path)
    assert line.startswith(OPTIONS[option])


@pytest.mark.parametrize("case", sorted(FILES))
def test_recipe_file_errors_are_one_line(case, capsys, tmp_path):
    text, message = FILES[case]
    path = tmp_path / "recipes" / "self.yaml"
    path.parent.mkdir()
    path.write_text(text)
    line = _refused(["--recipe", str(path), "--budget", "smoke"], capsys, tmp_path)
    assert message in line


def test_a_missing_recipe_file_is_refused(capsys, tmp_path):
    line = _refused(["--recipe", str(tmp_path / "absent.yaml")], capsys, tmp_path)
    assert line == f"error: recipe file {tmp_path / 'absent.yaml'} does not exist"
