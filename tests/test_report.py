"""The report is rendered from run records alone: grouping over seeds, verdicts, ladder, data output, Markdown.

`python -m tests.test_report` rewrites tests/golden/report.md from the renderer; check the diff by eye.
"""

import csv
import io
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from harness.report import (
    comparison_frame,
    ladder_frames,
    load_records,
    main,
    render_markdown,
    rich_table,
    table_frame,
)

GOLDEN = Path(__file__).parent / "golden" / "report.md"


def record(recipe, top1, reported=None, fidelity=(), dataset="digits", budget="proxy", seed=0, **extra):
    return {
        "recipe": recipe,
        "model": "resnet50",
        "dataset": dataset,
        "budget": budget,
        "seed": seed,
        "eval_top1": top1,
        "tolerance": 0.5,
        "fidelity": list(fidelity),
        "reference": {"top1": reported, "source": f"paper of {recipe}", "unverified": False},
        "train_img_per_s": 123.4,
        "wall_time_s": 125.0,
        "_run_dir": f"{recipe}-{dataset}-{budget}-seed{seed}",
        **extra,
    }


def seeds(recipe, top1s, reported=None, fidelity=(), **kw):
    return [record(recipe, top1, reported, fidelity, seed=i, **kw) for i, top1 in enumerate(top1s)]


def only_row(records):
    frame = comparison_frame(records)
    assert len(frame) == 1
    return frame.iloc[0], table_frame(frame).iloc[0]


@pytest.mark.parametrize(
    ("top1s", "reported", "verdict", "delta"),
    [
        ([78.5], 78.0, "reproduced", "+0.50"),  # exactly at the tolerance
        ([77.5], 78.0, "reproduced", "-0.50"),
        ([78.6], 78.1, "reproduced", "+0.50"),  # 0.49999999999997 in floats
        ([77.6], 78.1, "reproduced", "-0.50"),  # -0.50000000000001 in floats
        ([78.51], 78.0, "above", "+0.51"),  # just over
        ([77.49], 78.0, "below", "-0.51"),
        ([80.0], 78.0, "above", "+2.00"),  # one run has no spread to be within
        ([77.0, 78.0, 79.0], 80.0, "within noise", "-2.00"),  # std 1: |delta| <= 2 std
        ([77.0, 78.0, 79.0], 75.95, "above", "+2.05"),  # just beyond 2 std
    ],
)
def test_verdict_boundaries(top1s, reported, verdict, delta):
    data, shown = only_row(seeds("rsb_a3", top1s, reported))
    assert data["verdict"] == shown["verdict"] == verdict
    assert shown["delta"] == delta
    assert math.isclose(data["delta"], statistics.mean(top1s) - reported)


def test_any_difference_from_the_published_setting_is_not_comparable_and_shows_no_delta():
    data, shown = only_row(seeds("rsb_a3", [78.1, 78.1], 78.1, ["epochs: 100 -> 15"]))
    assert data["verdict"] == "not comparable"
    assert shown["delta"] == "—" and math.isclose(data["delta"], 0.0, abs_tol=1e-9)


def test_without_a_published_figure_the_delta_is_the_gain_over_baseline_on_the_same_data_and_budget():
    runs = [
        *seeds("baseline", [90.0, 91.0], 76.1, ["dataset: imagenet -> digits"]),
        record("cosine", 93.0),
        record("cosine", 50.0, dataset="mnist"),
        record("cosine", 60.0, budget="smoke"),
    ]
    frame = comparison_frame(runs)
    shown = table_frame(frame)
    columns = ["recipe", "dataset", "budget", "delta", "verdict"]
    assert list(shown[columns].itertuples(index=False, name=None)) == [
        ("baseline", "digits", "proxy", "—", "not comparable"),
        ("cosine", "digits", "proxy", "+2.50 vs baseline", "no published figure"),
        ("cosine", "digits", "smoke", "—", "no published figure"),
        ("cosine", "mnist", "proxy", "—", "no published figure"),
    ]
    assert frame["baseline_gain"].iloc[1] == pytest.approx(2.5)
    assert frame["delta"].iloc[1:].isna().all()


def test_a_baseline_without_a_published_figure_has_no_gain_over_itself():
    data, shown = only_row([record("baseline", 90.0)])
    assert shown["delta"] == "—" and data["verdict"] == "no published figure" and pd.isna(data["baseline_gain"])


def test_runs_of_one_setting_group_into_mean_and_sample_std_over_seeds():
    top1s = [97.1, 96.8, 97.45]
    runs = [*seeds("rsb_a3", top1s, 78.1, ["x"]), record("rsb_a3", 90.0, 78.1, ["x", "y"], seed=7)]
    frame = comparison_frame(runs)
    assert list(frame["n"]) == [3, 1]
    assert frame["mean"].iloc[0] == pytest.approx(statistics.mean(top1s))
    assert frame["std"].iloc[0] == pytest.approx(statistics.stdev(top1s))  # sample, not population
    assert pd.isna(frame["std"].iloc[1])
    assert frame["run_dirs"].iloc[0] == [f"rsb_a3-digits-proxy-seed{i}" for i in range(3)]
    assert list(table_frame(frame)["measured top-1"]) == ["97.12 ± 0.33 (3)", "90.00 (1)"]


def test_sources_are_numbered_footnotes_flagged_when_unverified():
    runs = [record("rsb_a3", 78.0, 78.1), record("rsb_a1", 80.0, 80.4), record("rsb_a2", 79.0, 79.8)]
    runs[2]["reference"]["unverified"] = True
    runs[2]["reference"]["source"] = runs[0]["reference"]["source"]
    shown = table_frame(comparison_frame(runs))
    assert list(shown["reported top-1 (source)"]) == ["80.40 [1]", "79.80 [2] UNVERIFIED", "78.10 [2]"]
    text = render_markdown(runs)
    assert "1. paper of rsb_a1\n2. paper of rsb_a3\n" in text


def test_ladder_gains_are_over_the_previous_step_present():
    runs = [
        *seeds("baseline", [90.0, 92.0]),
        record("cosine", 93.5),
        *seeds("rsb_a3", [95.0, 96.0], 78.1, ["x"]),
        record("rsb_a1", 99.0),
        record("mixup_cutmix", 80.0, dataset="mnist"),  # alone on its dataset: no ladder
    ]
    ladders = ladder_frames(runs)
    assert list(ladders) == [("digits", "proxy")]
    steps = ladders[("digits", "proxy")]
    assert list(steps["step"]) == [1, 2, 4]
    assert list(steps["recipe"]) == ["baseline", "cosine", "rsb_a3"]
    assert list(steps["mean"]) == pytest.approx([91.0, 93.5, 95.5])
    assert pd.isna(steps["gain"].iloc[0]) and list(steps["gain"].iloc[1:]) == pytest.approx([2.5, 2.0])
    text = render_markdown(runs)
    assert "### Ablation ladder" in text and "| 4      | rsb_a3   | 95.50                 | +2.00" in text


def test_the_ladder_is_left_out_without_two_steps_on_one_dataset_and_budget():
    runs = [record("baseline", 90.0), record("cosine", 91.0, dataset="mnist"), record("rsb_a1", 80.0)]
    assert ladder_frames(runs) == {}
    assert "Ablation ladder" not in render_markdown(runs)


def test_one_old_record_without_optional_keys_renders():
    old = record("rsb_a3", 96.9, 78.1, ["dataset: imagenet -> digits"])
    del old["_run_dir"], old["tolerance"], old["seed"], old["train_img_per_s"]
    text = render_markdown([old])
    assert "| rsb_a3   | resnet50 | digits    | proxy    | 78.10 [1]" in text
    assert "96.90 (1)" in text and "not comparable" in text
    assert "- rsb_a3 · digits · proxy (`.`): dataset: imagenet -> digits" in text
    assert "Per-recipe detail" not in text


def test_detail_shows_macro_metrics_per_class_means_early_stop_and_plots():
    plots = {"curves": "curves.png", "confusion": "confusion.png"}
    runs = [
        record(
            "rsb_a3",
            90.0,
            eval_precision=80.0,
            eval_recall=70.0,
            eval_f1=60.0,
            per_class_accuracy=[100.0, 50.0],
            plots=plots,
            stopped_early_at_epoch=None,
        ),
        record(
            "rsb_a3",
            92.0,
            seed=1,
            eval_precision=82.0,
            eval_recall=72.0,
            eval_f1=62.0,
            per_class_accuracy=[90.0, 60.0],
            plots=plots,
            stopped_early_at_epoch=12,
        ),
    ]
    text = render_markdown(runs)
    assert "#### rsb_a3 · resnet50 · digits · proxy (2 runs)" in text
    assert "Macro precision 81.00, recall 71.00, F1 61.00" in text
    assert "| accuracy | 95.00 | 55.00 |" in text
    assert "- `rsb_a3-digits-proxy-seed0` (seed 0): ![curves](rsb_a3-digits-proxy-seed0/curves.png)" in text
    assert "- `rsb_a3-digits-proxy-seed1` (seed 1; stopped early at epoch 12): ![curves]" in text
    # A run's own report.md sits inside its directory, one level below the runs root.
    assert "![confusion](../rsb_a3-digits-proxy-seed1/confusion.png)" in render_markdown(runs, link_base="..")


def test_many_classes_show_only_the_weakest():
    accuracies = [float(100 - (i % 37)) for i in range(100)]
    text = render_markdown([record("rsb_a3", 90.0, per_class_accuracy=accuracies)])
    assert "Mean weakest 10 of 100 classes over 1 run:" in text
    assert "| class    | 36    | 73    | 35    |" in text


def test_detail_says_where_the_runs_trained():
    where = {
        "device": "cpu",
        "world_size": 2,
        "cpu_threads_per_process": 1,
        "data_path": "memory",
        "mixed_precision": "no",
        "per_class_accuracy": [90.0, 80.0],
    }
    text = render_markdown([record("cnn_fmnist", 85.0, **where)])
    assert "Trained on: cpu x 2 process(es), 1 CPU threads each, memory data path, mixed precision no." in text


def test_per_class_table_uses_the_recorded_class_names():
    names = ["T-shirt/top", "Trouser", "Pullover"]
    text = render_markdown([record("cnn_fmnist", 90.0, per_class_accuracy=[80.0, 99.0, 91.0], class_names=names)])
    header = next(line for line in text.splitlines() if line.startswith("| class"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["class", *names]


# --------------------------------------------------------------------------- command line


def write_runs(root, records):
    for r in records:
        run_dir = root / r["_run_dir"]
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({k: v for k, v in r.items() if k != "_run_dir"}))
    return root


def test_load_records_keeps_run_directories_relative_to_the_root(tmp_path):
    write_runs(tmp_path, [record("rsb_a3", 90.0, finished_at="2"), record("cosine", 91.0, finished_at="1")])
    assert [r.run_dir for r in load_records(tmp_path)] == ["cosine-digits-proxy-seed0", "rsb_a3-digits-proxy-seed0"]
    assert load_records(tmp_path / "rsb_a3-digits-proxy-seed0")[0].run_dir == "."


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_parse_back_to_the_same_numbers(tmp_path, capsys, fmt):
    records = [*seeds("rsb_a3", [78.3, 77.9, 78.2], 78.1), record("cosine", 93.0), *seeds("baseline", [90.0, 91.0])]
    runs = write_runs(tmp_path / "runs", records)
    out = tmp_path / f"table.{fmt}"
    assert main([str(runs), "--format", fmt, "--out", str(out)]) == 0
    assert capsys.readouterr().out == out.read_text()
    expected = comparison_frame(load_records(runs))
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        number = lambda v: None if v == "" else float(v)  # noqa: E731
        rows = [{**row, "fidelity": row["fidelity"].split("; ") if row["fidelity"] else []} for row in rows]
    else:
        rows = json.loads(out.read_text())
        number = lambda v: v  # noqa: E731
    assert len(rows) == len(expected) == 3
    for row, (_, want) in zip(rows, expected.iterrows(), strict=True):
        for column in (
            "n",
            "mean",
            "std",
            "reported",
            "delta",
            "tolerance",
            "baseline_gain",
            "img_per_s",
            "wall_time_s",
            "source_no",
        ):
            got = number(row[column])
            assert (got is None and pd.isna(want[column])) or got == want[column], column
        assert (row["recipe"], row["verdict"], row["fidelity"]) == (want["recipe"], want["verdict"], want["fidelity"])
    by_recipe = {row["recipe"]: row for row in rows}
    assert number(by_recipe["rsb_a3"]["n"]) == 3 and by_recipe["rsb_a3"]["verdict"] == "reproduced"
    assert number(by_recipe["cosine"]["baseline_gain"]) == pytest.approx(2.5)


def test_markdown_out_and_readme_link_plots_from_where_they_are_written(tmp_path):
    runs = write_runs(tmp_path / "benchmarks" / "results", [record("rsb_a3", 90.0, plots={"curves": "curves.png"})])
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold table\n<!-- results:end -->\noutro\n")
    out = tmp_path / "reports" / "report.md"
    assert main([str(runs), "--out", str(out), "--readme", str(readme)]) == 0
    assert "![curves](../benchmarks/results/rsb_a3-digits-proxy-seed0/curves.png)" in out.read_text()
    text = readme.read_text()
    assert text.startswith(
        "intro\n<!-- results:start -->\n![measured vs reported top-1](benchmarks/results/comparison.png)\n"
    )
    assert (runs / "comparison.png").read_bytes().startswith(b"\x89PNG")
    assert "\n| recipe " in text
    assert text.endswith("<!-- results:end -->\noutro\n")
    assert "old table" not in text
    # The README keeps the chart, the table and a link; the detail, with its plots, is in the results folder.
    assert "[benchmarks/results/README.md](benchmarks/results/README.md)" in text and "![curves]" not in text
    detail = (runs / "README.md").read_text()
    assert "![measured vs reported top-1](comparison.png)" in detail
    assert "![curves](rsb_a3-digits-proxy-seed0/curves.png)" in detail and "\n| recipe " in detail


def test_out_writes_the_chart_beside_its_file_not_into_the_runs_folder(tmp_path, capsys):
    runs = write_runs(tmp_path / "benchmarks", [record("rsb_a3", 90.0)])
    out = tmp_path / "reports" / "report.md"
    assert main([str(runs), "--out", str(out)]) == 0
    assert (out.parent / "comparison.png").read_bytes().startswith(b"\x89PNG")
    assert not (runs / "comparison.png").exists()
    assert f"chart: {out.parent / 'comparison.png'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "is not a directory of runs"),
        ("empty", "no summary.json found"),
        ("bad-json", "is not valid JSON"),
        ("no-markers", "lacks the <!-- results:start --> and <!-- results:end --> markers"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(tmp_path, capsys, setup, message):
    runs = tmp_path / "runs"
    args = [str(runs)]
    if setup != "missing":
        runs.mkdir()
    if setup == "bad-json":
        (runs / "a").mkdir()
        (runs / "a" / "summary.json").write_text("{not json")
    if setup == "no-markers":
        write_runs(runs, [record("rsb_a3", 90.0)])
        (tmp_path / "README.md").write_text("no markers here\n")
        args += ["--readme", str(tmp_path / "README.md")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    if setup == "no-markers":
        assert (tmp_path / "README.md").read_text() == "no markers here\n"


# --------------------------------------------------------------------------- golden file


def golden_records():
    """A fixed mix: seeds, early stop, plots, a ladder, steps without a figure, old records, an unverified source."""
    plots = {"curves": "curves.png", "confusion": "confusion.png"}
    digits = ["dataset: imagenet -> digits", "epochs: 100 -> 15"]
    imagenet = dict(dataset="imagenet", budget="full")
    return [
        *[
            record(
                "rsb_a3",
                top1,
                78.1,
                digits,
                seed=i,
                eval_precision=96.0 + i,
                eval_recall=95.0,
                eval_f1=95.5 + i,
                stopped_early_at_epoch=12 if i == 1 else None,
                per_class_accuracy=[100.0, 95.5 - i, 88.25 + i],
                plots=plots,
            )
            for i, top1 in enumerate([96.94, 97.5, 96.3])
        ],
        *seeds(
            "baseline",
            [90.25, 91.75],
            76.13,
            ["dataset: imagenet -> digits"],
            plots=plots,
            per_class_accuracy=[99.0, 90.0, 80.0],
        ),
        record("cosine", 93.0, plots={"curves": "curves.png"}),
        record("mixup_cutmix", 94.1, dataset="mnist"),
        *seeds("rsb_a1", [80.2, 80.9, 79.6], 80.4, **imagenet),
        record("rsb_a1", 79.0, 80.4, ["epochs: 600 -> 300"], seed=5, **imagenet),
        *seeds("rsb_a2", [78.4, 79.6], 79.8, **imagenet),
        record("deit_s", 77.0, 78.0, **imagenet),
    ]


def test_last_epoch_is_compared_and_the_best_epoch_shown_beside_it():
    runs = [
        record("rsb_a3", 77.0, 78.1, best_eval_top1=77.6),
        record("rsb_a3", 78.0, 78.1, seed=1, best_eval_top1=78.4),
    ]
    row, shown = only_row(runs)
    assert row["mean"] == pytest.approx(77.5) and row["delta"] == pytest.approx(-0.6)  # from the last epochs
    assert shown["best epoch"] == "78.00"
    assert "Measured top-1 is the last epoch's" in render_markdown(runs)


def test_unverified_settings_of_a_recipe_are_listed_once():
    flagged = ["no cooldown epochs; UNVERIFIED", "warmup start LR 1e-6; UNVERIFIED"]
    runs = seeds("rsb_a3", [77.0, 78.0], 78.1, unverified_settings=flagged) + [record("baseline", 70.0)]
    text = render_markdown(runs)
    assert text.count("- rsb_a3: no cooldown epochs; UNVERIFIED; warmup start LR 1e-6; UNVERIFIED") == 1
    assert "- baseline:" not in text


def golden_text():
    records = golden_records()
    records[-2]["reference"]["unverified"] = True
    return render_markdown(records)


def test_markdown_matches_the_golden_file():
    assert golden_text() == GOLDEN.read_text(), "run `python -m tests.test_report` and check the diff by eye"


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(golden_text())
    print(f"wrote {GOLDEN}")


def test_chart_groups_carry_each_groups_mean_spread_and_reported_number():
    from harness.report import chart_groups

    records = [
        record("rsb_a3", 77.0, 78.1),
        record("rsb_a3", 79.0, 78.1, seed=1),
        record("cosine", 80.0, fidelity=["epochs: 100 -> 2"]),
    ]
    groups = chart_groups(comparison_frame(records))
    by_label = {g["label"]: g for g in groups}
    a3 = by_label["rsb_a3 · resnet50 · digits · proxy (n=2)"]
    assert (a3["mean"], a3["reported"]) == (78.0, 78.1) and a3["std"] == pytest.approx(2**0.5)
    # Differences mark a group even where there is no published number to be not comparable with.
    assert math.isnan(by_label["cosine · resnet50 · digits · proxy (n=1) *"]["reported"])


def test_console_table_lists_a_not_comparable_rows_first_differences_and_where_the_rest_are():
    from rich.console import Console

    fidelity = [f"setting_{i}: {i} -> {i + 1}" for i in range(5)]
    console = Console(width=250, record=True)
    console.print(rich_table([record("rsb_a3", 90.0, 78.1, fidelity=fidelity)]))
    lines = console.export_text().splitlines()
    row = next(i for i, line in enumerate(lines) if "not comparable" in line)
    assert [line.split("│")[1].strip() for line in lines[row + 1 : row + 5]] == [
        *fidelity[:3],
        "... 2 more in summary.json (fidelity)",
    ]
