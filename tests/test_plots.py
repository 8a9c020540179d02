"""Run figures: written whole as readable PNGs, nothing left behind, and the unfreeze marker at the switch."""

import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from PIL import Image

from harness.plots import unfreeze_epochs, write_plots

HISTORY = [
    {"epoch": 1, "train_loss": 1.2, "eval_loss": 1.0, "eval_top1": 60.0, "train_top1": 55.0, "trainable_params": 10},
    {"epoch": 2, "train_loss": 0.8, "eval_loss": 0.7, "eval_top1": 75.0, "train_top1": 72.0, "trainable_params": 10},
    {"epoch": 3, "train_loss": 0.5, "eval_loss": 0.6, "eval_top1": 80.0, "train_top1": 83.0, "trainable_params": 99},
]
CONFUSION = [[5, 1, 0], [2, 7, 1], [0, 0, 9]]


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 0 and image.height > 0
        assert image.mode in {"RGB", "RGBA"}
        image.load()  # decodes the whole stream: a truncated file raises here


def test_curves_and_confusion_are_complete_pngs(tmp_path):
    written = write_plots(tmp_path, HISTORY, CONFUSION, ["cat", "dog", "bird"])
    assert written == {"curves": "curves.png", "confusion": "confusion.png"}
    for name in written.values():
        assert_png(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]  # no temporary files


def test_old_records_without_train_top1_or_counts_and_no_class_names(tmp_path):
    history = [{k: v for k, v in row.items() if k not in {"train_top1", "trainable_params"}} for row in HISTORY]
    history[1]["train_top1"] = None
    written = write_plots(str(tmp_path), history, [[3, 0], [1, 4]])
    assert written == {"curves": "curves.png", "confusion": "confusion.png"}
    assert_png(tmp_path / "curves.png")
    assert_png(tmp_path / "confusion.png")


def test_rewriting_replaces_files_in_place(tmp_path):
    write_plots(tmp_path, HISTORY[:1], [[1]])
    write_plots(tmp_path, HISTORY, CONFUSION)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]
    assert_png(tmp_path / "curves.png")


@pytest.mark.parametrize(
    ("history", "confusion", "expected"),
    [
        ([], [], {}),
        ([], [[]], {}),
        (HISTORY, [], {"curves": "curves.png"}),
        ([], CONFUSION, {"confusion": "confusion.png"}),
    ],
)
def test_empty_inputs_write_nothing_for_that_figure(tmp_path, history, confusion, expected):
    assert write_plots(tmp_path, history, confusion) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected.values())


def test_failed_render_keeps_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    write_plots(tmp_path, HISTORY, [])
    before = (tmp_path / "curves.png").read_bytes()

    def half_written(canvas, handle, *args, **kwargs):
        handle.write(b"\x89PNG\r\n")
        raise KeyboardInterrupt

    monkeypatch.setattr("matplotlib.backends.backend_agg.FigureCanvasAgg.print_png", half_written)
    with pytest.raises(KeyboardInterrupt):
        write_plots(tmp_path, HISTORY, [])
    assert (tmp_path / "curves.png").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_figures_are_cleared_after_saving(tmp_path, monkeypatch):
    figures = []
    original = Figure.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        figures.append(self)

    monkeypatch.setattr(Figure, "__init__", recording_init)
    write_plots(tmp_path, HISTORY, CONFUSION)
    assert len(figures) == 2
    assert all(not figure.axes for figure in figures)


@pytest.mark.slow
def test_pyplot_is_never_imported():
    code = (
        "import sys, tempfile, pathlib; from harness.plots import write_plots; "
        "d = pathlib.Path(tempfile.mkdtemp()); "
        "write_plots(d, [{'epoch': 1, 'train_loss': 1.0, 'eval_loss': 1.0, 'eval_top1': 50.0}], [[1, 0], [0, 1]]); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_unfreeze_marker_is_the_epoch_whose_trainable_count_changed():
    assert unfreeze_epochs(HISTORY) == [3]
    assert unfreeze_epochs([{k: v for k, v in row.items() if k != "trainable_params"} for row in HISTORY]) == []
    assert unfreeze_epochs([]) == []
    assert unfreeze_epochs(HISTORY[:1]) == []


def test_unfreeze_marker_handles_gaps_and_several_switches():
    counts = [5, 5, None, 8, 8, 20, 20]
    history = [{"epoch": i + 1, "trainable_params": n} for i, n in enumerate(counts)]
    assert unfreeze_epochs(history) == [6]  # the 5 -> 8 step straddles a row without a count
    history[2]["trainable_params"] = 5
    assert unfreeze_epochs(history) == [4, 6]
