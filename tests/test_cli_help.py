"""The command line as a new user meets it: data the user named is never replaced by the stand-in (the bare demo
keeps it, and says so in every mode), the first timm flags and typos are answered with the right name in one line,
--list and --show print whole names, and the three tools run under their console-script names.

In process through `harness.run.main` where possible; one subprocess per entry point (marked slow)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.arguments import build_parser
from harness.run import main, parse_args, plan_run
from recipes import list_recipes

ROOT = Path(__file__).resolve().parents[1]
ABSENT = "/nonexistent/imagenett"


def _refused(argv, capsys, tmp_path) -> str:
    out = tmp_path / "runs"
    assert main([*argv, "--output", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert not out.exists() and not list(tmp_path.glob("*.yaml"))  # nothing written
    return lines[0]


# ---- no silent stand-in for data the user named ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [[], ["--dump-recipe", "x.yaml"], ["--dump-recipe", "x.yaml", "--format", "timm"]])
def test_a_missing_data_dir_is_refused_naming_where_it_looked(mode, capsys, tmp_path):
    argv = ["--recipe", "rsb_a3", "--data-dir", ABSENT, *[str(tmp_path / a) if a == "x.yaml" else a for a in mode]]
    line = _refused(argv, capsys, tmp_path)
    assert line.startswith(f"error: --data-dir {ABSENT} does not exist; pass --data-dir DIR holding train/ and val/")


def test_the_full_budget_without_the_data_is_refused(capsys, tmp_path):
    line = _refused(
        ["--recipe", "rsb_a3", "--budget", "full", "--dump-recipe", str(tmp_path / "x.yaml")], capsys, tmp_path
    )
    assert line.startswith("error: imagenet needs --data-dir: pass --data-dir DIR")
    assert line.endswith(
        "(--budget full trains on the recipe's own data; without --budget, --recipe alone runs the "
        "demo on the bundled stand-in)"
    )


def test_a_named_dataset_missing_from_its_folder_is_refused(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    line = _refused(["--recipe", "lenet_mnist", "--data-dir", str(tmp_path / "empty")], capsys, tmp_path)
    assert line.startswith(f"error: mnist not found; looked in {tmp_path / 'empty'}/MNIST/raw")


def test_the_bare_demo_plans_the_stand_in_and_says_so_when_dumping(capsys, tmp_path):
    plan = plan_run(parse_args(["--recipe", "rsb_a3"]))
    assert (plan.dataset, plan.budget, plan.recipe.dataset) == ("digits", "proxy", "digits")
    notice = "imagenet not available (imagenet needs --data-dir: pass --data-dir DIR"
    assert plan.notices[0].startswith(notice) and plan.notices[0].endswith(
        "running on digits at the proxy budget instead"
    )
    dumped = tmp_path / "demo.yaml"
    assert main(["--recipe", "rsb_a3", "--dump-recipe", str(dumped)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote {dumped}" and out[1] == f"note: {plan.notices[0]}"
    assert yaml.safe_load(dumped.read_text())["dataset"] == "digits"


def test_an_error_quoting_the_stand_ins_batch_says_whose_batch_it_is(capsys, tmp_path):
    line = _refused(["--recipe", "rsb_a3", "--micro-batch", "100"], capsys, tmp_path)
    assert "does not divide the global batch 64 over 1 process(es)" in line
    assert line.endswith(
        "(this plan runs on the digits stand-in at the proxy budget, as imagenet is not available; "
        "rsb_a3 as published trains 100 epochs at global batch 2048)"
    )
    line = _refused(
        ["--recipe", "rsb_a3", "--processes", "3", "--dump-recipe", str(tmp_path / "a.yaml"), "--format", "timm"],
        capsys,
        tmp_path,
    )
    assert "--processes 3 does not divide the global batch 64" in line and "digits stand-in" in line


def test_dump_recipe_to_stdout_is_the_recipe_file_and_the_notices_go_to_stderr(capsys):
    assert main(["--recipe", "rsb-a3", "--budget", "smoke", "--dump-recipe", "-"]) == 0
    captured = capsys.readouterr()
    dumped = yaml.safe_load(captured.out)
    assert (dumped["name"], dumped["base"], dumped["dataset"], dumped["epochs"]) == ("rsb_a3", "rsb_a3", "digits", 1)
    assert "running on digits at the smoke budget instead" in captured.err


# ---- suggestions and the harness's way for timm's flags --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--recipe", "rsb_a4"], "error: unknown recipe 'rsb_a4'; did you mean rsb_a3, rsb_a2 or rsb_a1?"),
        (
            ["--recipe", "rsb_a3", "--set", "learning_rate=0.1"],
            "error: unknown --set key 'learning_rate'; did you mean lr?",
        ),
        (
            ["--recipe", "rsb_a3", "--set", "weight_decya=0.1"],
            "error: unknown --set key 'weight_decya'; did you mean weight_decay?",
        ),
        (
            ["--recipe", "rsb_a3", "--dataset", "cifar"],
            "error: unknown dataset 'cifar'; did you mean cifar10 or cifar100?",
        ),
        (
            ["--recipe", "rsb_a3", "--set", "opt=adamw2"],
            "error: --set: opt='adamw2': not a timm optimizer; did you mean adamw, radamw or nadamw?",
        ),
        (["--recipe", "rsb_a3", "--epoch", "5"], "error: unrecognized arguments: --epoch 5; did you mean --epochs?"),
    ],
)
def test_a_near_miss_is_answered_with_the_close_names(argv, message, capsys, tmp_path):
    assert _refused(argv, capsys, tmp_path) == message


TIMM_FLAGS = {
    "--model resnet18": "error: --model is a recipe field here: use --set model=resnet18",
    "--lr 0.1": "error: --lr is a recipe field here: use --set lr=0.1",
    "--weight-decay=0.05": "error: --weight-decay is a recipe field here: use --set weight_decay=0.05",
    "--amp": "error: --amp is a recipe field here: use --set amp=True",
    "--model-ema": "error: --model-ema is a recipe field here: use --set model_ema=True",
    "--label-smoothing 0.1": "error: --label-smoothing is a recipe field here: use --set smoothing=0.1",
    "-b 256": "error: -b is timm's per-process batch; here --batch-size N is the global batch (over all processes), "
    "or --set batch_size=N",
    "--data-path /data": "error: --data-path: use --data-dir DIR",
    "--test-only": "error: --test-only: use --eval-only with --pretrained-file FILE",
    "--grad-accum-steps 4": "error: --grad-accum-steps: --micro-batch N is a size here, not a count",
    "--initial-checkpoint w.pth": "error: --initial-checkpoint: use --pretrained-file FILE",
    "--pretrained": "error: --pretrained: use --set pretrained=True (timm's hub weights) or --pretrained-file FILE",
    "-j 8": "error: -j: use --workers N",
}


@pytest.mark.parametrize("flags", sorted(TIMM_FLAGS))
def test_a_timm_flag_is_answered_with_the_harness_way_in_one_line(flags, capsys, tmp_path):
    line = _refused(["--recipe", "rsb_a3", *flags.split()], capsys, tmp_path)
    assert line.startswith(TIMM_FLAGS[flags])


def test_an_unknown_flag_with_nothing_close_keeps_argparse_s_line(capsys, tmp_path):
    assert _refused(["--recipe", "rsb_a3", "--bogus", "1"], capsys, tmp_path) == (
        "error: unrecognized arguments: --bogus 1; see --help"
    )


# ---- help, --list, --show ---------------------------------------------------------------------------------------


def test_every_option_has_help_in_its_group():
    parser = build_parser()
    groups = [g.title for g in parser._action_groups if g._group_actions]
    assert groups[-7:] == [
        "recipe",
        "data",
        "weights",
        "checkpoints and resume",
        "logging and output",
        "speed and reproducibility",
        "inspect and exit (nothing is trained)",
    ]
    assert all(action.help and action.help.strip() for action in parser._actions)
    assert parser.prog == "recipe-harness" and "accelerate launch -m harness.run" in parser.epilog


def _listed_at_80_columns(in_process: bool, monkeypatch, capsys) -> str:
    """What --list prints through a pipe with COLUMNS=80: from harness.run.main, or harness/run.py's own process."""
    if in_process:
        monkeypatch.setenv("COLUMNS", "80")
        assert main(["--list"]) == 0
        return capsys.readouterr().out
    result = subprocess.run(
        [sys.executable, "harness/run.py", "--list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "80"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("in_process", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_list_through_a_pipe_at_80_columns_prints_every_name_whole_in_two_sections(in_process, monkeypatch, capsys):
    stdout = _listed_at_80_columns(in_process, monkeypatch, capsys)
    lines = stdout.splitlines()
    first_words = [line.split()[0] for line in lines if line.strip()]
    published, experiments = (
        lines.index("published recipes"),
        next(i for i, line in enumerate(lines) if line.startswith("seed-report experiments")),
    )
    assert published < experiments
    for name in list_recipes():
        assert first_words.count(name) == 1, name
        row = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
        from_report = name not in ("baseline", "cosine", "mixup_cutmix", "rsb_a1", "rsb_a2", "rsb_a3")
        assert (row > experiments) == from_report, name
    assert "…" not in stdout


def test_show_prints_the_published_recipe_its_source_notes_and_unverified_settings(capsys):
    assert main(["--show", "rsb_a3"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[:3] == [
        "rsb_a3: RSB A3: 100 epochs at 160 px (tested at 224), LAMB, BCE, Mixup/CutMix, RandAugment",
        "reported: top-1 78.1, top-5 93.78 on imagenet",
        "source: Wightman et al., ResNet strikes back (arXiv:2110.00476), Table 1; timm measures the released "
        "weights at 78.052 / 93.780",
    ]
    unverified = lines[lines.index("UNVERIFIED:") + 1 : lines.index("fields:")]
    assert len(unverified) == 5 and all("UNVERIFIED" in line for line in unverified)
    notes = lines[lines.index("notes:") + 1 : lines.index("UNVERIFIED:")]
    assert "  - timm's Lamb clips the gradient norm at 1.0 internally" in notes
    fields = yaml.safe_load("\n".join(line[2:] for line in lines[lines.index("fields:") + 1 :]))
    assert (fields["lr"], fields["batch_size"], fields["img_size"], fields["dataset"]) == (0.008, 2048, 160, "imagenet")


# ---- entry points -----------------------------------------------------------------------------------------------


def _console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts] (name = "module:function" lines; tomllib is Python 3.11+)."""
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    pairs = [line.split("=", 1) for line in section.splitlines() if "=" in line]
    return {name.strip(): target.strip().strip('"') for name, target in pairs}


SCRIPTS = _console_scripts()


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_console_script_runs_its_main_under_its_name(script):
    """What the installed script runs (`sys.exit(main())`), with the usage line and exit status it gives."""
    module, function = SCRIPTS[script].split(":")
    runner = f"import sys; sys.argv[0] = {script!r}; from {module} import {function}; sys.exit({function}())"
    shown = subprocess.run([sys.executable, "-c", runner, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert shown.returncode == 0 and shown.stdout.startswith(f"usage: {script} "), shown.stderr
    refused = subprocess.run([sys.executable, "-c", runner, "--bogus"], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: ")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("entry", "prog"),
    [
        (["-m", "harness.run"], "recipe-harness"),
        (["harness/run.py"], "recipe-harness"),
        (["-m", "harness.report"], "recipe-harness-report"),
        (["-m", "harness.campaign"], "recipe-harness-campaign"),
    ],
)
def test_module_and_path_entries_share_the_program_name(entry, prog):
    result = subprocess.run([sys.executable, *entry, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith(f"usage: {prog} "), result.stderr
