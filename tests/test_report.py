"""The comparison table is rendered from records alone."""

from harness.report import comparison_frame, render_markdown


def record(recipe, top1, reported=None, fidelity=(), dataset="digits", budget="proxy"):
    return {
        "recipe": recipe, "model": "resnet50", "dataset": dataset, "budget": budget, "eval_top1": top1,
        "reference": {"top1": reported, "source": f"paper of {recipe}", "unverified": False},
        "fidelity": list(fidelity), "train_img_per_s": 123.4, "wall_time_s": 125.0, "_run_dir": recipe,
    }


def test_delta_only_for_runs_as_published():
    runs = [record("rsb_a3", 78.6, 78.1), record("rsb_a1", 60.0, 80.4, ["epochs: 600 -> 15"])]
    frame, sources = comparison_frame(runs)
    assert list(frame["delta"]) == ["+0.50", "not comparable"]
    assert list(frame["fidelity"]) == ["as published", "1 differences"]
    assert list(frame["reported top-1 (source)"]) == ["78.10 [1]", "80.40 [2]"]
    assert sources == ["paper of rsb_a3", "paper of rsb_a1"]
    assert list(frame["wall time"]) == ["2m 05s", "2m 05s"]


def test_steps_without_a_figure_are_deltas_against_baseline_on_the_same_data_and_budget():
    runs = [record("baseline", 90.0, 76.1, ["x"]), record("cosine", 92.5), record("cosine", 50.0, dataset="mnist")]
    frame, _ = comparison_frame(runs)
    assert list(frame["delta"]) == ["not comparable", "+2.50 vs baseline", "no published figure"]


def test_markdown_lists_sources_and_every_difference():
    text = render_markdown([record("rsb_a1", 60.0, 80.4, ["epochs: 600 -> 15", "dataset: imagenet -> digits"])])
    assert "1. paper of rsb_a1" in text
    assert "- `rsb_a1`: epochs: 600 -> 15; dataset: imagenet -> digits" in text
