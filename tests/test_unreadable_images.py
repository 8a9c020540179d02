"""Folder datasets with images that cannot be decoded: skipped and named, or the run stops past 0.1% of a split."""

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import SkippingImageFolder, collate_readable, unreadable
from harness.run import main
from tests.conftest import only_summary


@pytest.fixture
def folder_with_a_truncated_jpeg(tmp_path):
    """Two classes of 16x16 JPEGs; the 21st of 40 'dog' training images is cut in half."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split, n in (("train", 40), ("val", 10)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.jpg")
    bad = root / "train" / "dog" / "020.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return root, bad


def _run(root, out, workers):
    return main(
        [
            "--recipe",
            "cnn_fmnist",
            "--dataset",
            "folder",
            "--data-dir",
            str(root),
            "--budget",
            "smoke",
            "--workers",
            str(workers),
            "--output",
            str(out),
        ]
    )


@pytest.mark.slow
def test_a_bad_image_is_skipped_and_named_in_the_summary(folder_with_a_truncated_jpeg, tmp_path, monkeypatch):
    root, bad = folder_with_a_truncated_jpeg
    monkeypatch.setattr(unreadable, "UNREADABLE_LIMIT", 0.05)  # 1 of the 64 smoke images is 1.6%
    assert _run(root, tmp_path / "runs", workers=2) == 0
    summary = only_summary(tmp_path / "runs")
    assert summary["skipped_images"] == {"train": [str(bad)]}
    assert summary["eval_samples"] == 20


@pytest.mark.slow
def test_too_many_bad_images_stop_the_run_naming_them_and_keep_the_checkpoint(
    folder_with_a_truncated_jpeg, tmp_path, capsys
):
    root, bad = folder_with_a_truncated_jpeg
    assert _run(root, tmp_path / "runs", workers=0) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: 1 of 64 train images cannot be decoded (more than 0.1%): {bad}; ")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert err[0].endswith(f"the last checkpoint is kept under {run_dir / 'checkpoints'}")
    assert list((run_dir / "checkpoints").iterdir()) and not (run_dir / "summary.json").exists()


def test_collate_keeps_the_batch_size_around_a_gap(folder_with_a_truncated_jpeg):
    root, bad = folder_with_a_truncated_jpeg
    from torchvision.transforms import v2

    dataset = SkippingImageFolder(root / "train", v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]))
    index = next(i for i, (path, _) in enumerate(dataset.samples) if path == str(bad))
    batch = [dataset[index - 1], dataset[index], dataset[index + 1]]
    assert batch[1] is None
    images, labels = collate_readable(batch, train=True)
    assert images.shape == (3, 3, 16, 16) and torch.equal(images[2], batch[0][0]) and labels.tolist() == [1, 1, 1]
    images, labels = collate_readable(batch, train=False)
    assert labels.tolist() == [1, 1, -1] and not images[2].any()
