"""The same images as class folders, WebDataset shards, parquet files and a hub-cache snapshot: evaluated alike on
one process and on 2 processes x 2 workers, each shard sample trained once an epoch, an exact mid-epoch resume on
shards, undecodable members and rows skipped and named, and malformed sources refused in one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.checkpoint import PROGRESS, complete_checkpoints
from harness.data import catalog
from harness.data.catalog import DataError
from harness.run import main
from tests.conftest import ROOT, launch_script, only_summary
from tests.scripts.sources_data import (
    CLASSES,
    make_samples,
    write_folder,
    write_hub_cache,
    write_parquet,
    write_shards,
)

SMOKE = ["--recipe", "cnn_fmnist", "--budget", "smoke", "--workers", "0"]
EVAL_KEYS = ("eval_top1", "eval_top5", "eval_samples", "confusion_matrix")


@dataclass(frozen=True)
class Store:
    root: Path
    samples: dict
    folder: Path
    shards: Path  # no _info.json: split by file name, sizes counted and cached
    shards_info: Path  # timm's _info.json with class names
    parquet: Path
    hub: Path  # a Hugging Face hub cache holding toy/shapes, ILSVRC/imagenet-1k and timm/imagenet-1k-wds

    @property
    def locations(self) -> dict[str, tuple[str, Path | None]]:
        return {
            "folder": ("folder", self.folder),
            "wds": ("wds", self.shards),
            "hfds": ("hfds", self.parquet),
            "hub": ("hfds/toy/shapes", None),
            "imagenet": ("imagenet", self.shards_info),
            "imagenet-hub": ("hfds/timm/imagenet-1k-wds", None),
        }


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("sources")
    samples = make_samples()
    hub = write_hub_cache(root / "hub", "toy/shapes", lambda folder: write_parquet(folder, samples))
    write_hub_cache(hub, "ILSVRC/imagenet-1k", lambda folder: write_parquet(folder, samples))
    write_hub_cache(hub, "timm/imagenet-1k-wds", lambda folder: write_shards(folder, samples, prefix="imagenet1k"))
    return Store(
        root,
        samples,
        write_folder(root / "folder", samples),
        write_shards(root / "shards", samples),
        write_shards(root / "shards-info", samples, info=True),
        write_parquet(root / "parquet", samples),
        hub,
    )


def cache_env(store: Store) -> dict[str, str]:
    """Every cache under the test's folder: the shard indexes, datasets' Arrow files, the hub snapshots."""
    return {
        "XDG_CACHE_HOME": str(store.root / "xdg"),
        "HF_DATASETS_CACHE": str(store.root / "hf-datasets"),
        "HF_HUB_CACHE": str(store.hub),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(autouse=True)
def caches(store, monkeypatch):
    import datasets
    from huggingface_hub import constants

    env = cache_env(store)
    monkeypatch.setattr(catalog, "CACHE_DIR", Path(env["XDG_CACHE_HOME"]) / "recipe-harness")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", env["HF_DATASETS_CACHE"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])


def where(store: Store, name: str) -> list[str]:
    dataset, data_dir = store.locations[name]
    return ["--dataset", dataset] + (["--data-dir", str(data_dir)] if data_dir else [])


@pytest.fixture(scope="module")
def weights(store) -> Path:
    path = store.root / "cnn.safetensors"
    out = store.root / "weights-run"
    assert (
        main([*SMOKE, *where(store, "folder"), "--epochs", "3", "--save-weights", str(path), "--output", str(out)]) == 0
    )
    return path


def evaluate_alone(store: Store, name: str, weights: Path, out: Path) -> dict:
    args = [*SMOKE, *where(store, name), "--eval-only", "--pretrained-file", str(weights), "--output", str(out)]
    assert main(args) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return {**only_summary(out), "_run_dir": run.name}


@pytest.fixture(scope="module")
def one_process(store, weights, tmp_path_factory) -> dict[str, dict]:
    with pytest.MonkeyPatch.context() as patch:
        import datasets
        from huggingface_hub import constants

        patch.setattr(catalog, "CACHE_DIR", store.root / "xdg" / "recipe-harness")
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(store.root / "hf-datasets"))
        patch.setattr(constants, "HF_HUB_CACHE", str(store.hub))
        return {
            name: evaluate_alone(store, name, weights, tmp_path_factory.mktemp(f"eval-{name}"))
            for name in store.locations
        }


@pytest.mark.slow
def test_the_same_images_evaluate_alike_from_every_layout(one_process, store):
    folder = one_process["folder"]
    assert folder["eval_samples"] == len(store.samples["val"]) == 24
    assert 0 < folder["eval_top1"] < 100  # the weights tell some classes apart: pixels matter
    for name, summary in one_process.items():
        for key in EVAL_KEYS:
            assert summary[key] == folder[key], (name, key)
        assert summary["eval_loss"] == pytest.approx(folder["eval_loss"], rel=1e-6), name
        assert summary["data_path"] == "workers" and summary["worker_output"] == "uint8"
    assert one_process["hub"]["dataset"] == "hfds/toy/shapes"
    assert one_process["imagenet"]["dataset"] == one_process["imagenet-hub"]["dataset"] == "imagenet"
    assert one_process["hub"]["_run_dir"].startswith("cnn_fmnist-eval-hfds--toy--shapes-smoke-seed0-")
    assert folder["class_names"] == one_process["hfds"]["class_names"] == one_process["imagenet"]["class_names"]
    assert folder["class_names"] == list(CLASSES) and one_process["wds"]["class_names"] == ["0", "1", "2"]


def split_folders(store: Store, root: Path) -> Path:
    """The shards again as `train/000000.tar`, `val/000000.tar`: split by folder, not by name."""
    for shard in sorted(store.shards.glob("*.tar")):
        split = "train" if "-train-" in shard.name else "val"
        (root / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(shard, root / split / f"{len(list((root / split).iterdir())):06d}.tar")
    return root


@pytest.mark.slow
def test_shards_in_split_folders_or_with_timms_other_info_names_evaluate_alike(one_process, store, weights, tmp_path):
    import yaml

    from harness.data.layouts import find_layout

    by_folder = split_folders(store, tmp_path / "by-folder")
    layout = find_layout("wds", by_folder)
    assert (layout.train, layout.eval, layout.eval_split) == (
        ("train/000000.tar", "train/000001.tar"),
        ("val/000000.tar",),
        "validation",
    )
    with_yaml = shutil.copytree(store.shards_info, tmp_path / "yaml")
    info = json.loads((with_yaml / "_info.json").read_text())
    (with_yaml / "_info.json").unlink()
    info["class_names"] = ["a", "b", "c"]
    (with_yaml / "info.yaml").write_text(yaml.safe_dump(info))
    assert find_layout("wds", with_yaml).info["class_names"] == ["a", "b", "c"]
    for data_dir in (by_folder, with_yaml):
        out = tmp_path / f"eval-{data_dir.name}"
        args = [*SMOKE, "--dataset", "wds", "--data-dir", str(data_dir), "--eval-only", "--pretrained-file"]
        assert main([*args, str(weights), "--output", str(out)]) == 0
        summary = only_summary(out)
        for key in EVAL_KEYS:
            assert summary[key] == one_process["folder"][key], (data_dir.name, key)
    (with_yaml / "info.yaml").write_text("splits: [unclosed\n")
    with pytest.raises(DataError, match=r"info.yaml is not valid YAML"):
        find_layout("wds", with_yaml)


@pytest.mark.slow
def test_the_record_names_the_source_and_its_files(one_process, store):
    sizes = {"train": 72, "eval": 24}
    assert one_process["wds"]["source"] == {
        "format": "wds",
        "root": str(store.shards),
        "files": {"train": ["toy-train-0000.tar", "toy-train-0001.tar"], "eval": ["toy-validation-0000.tar"]},
        "eval_split": "validation",
        "samples": sizes,
    }
    parquet = one_process["hfds"]["source"]
    assert parquet["format"] == "parquet" and parquet["samples"] == sizes
    assert parquet["files"]["train"] == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    hub = one_process["hub"]["source"]
    assert hub["hub"] == "toy/shapes" and hub["root"].startswith(str(store.hub / "datasets--toy--shapes"))
    shards = one_process["imagenet-hub"]["source"]
    assert shards["format"] == "wds" and shards["hub"] == "timm/imagenet-1k-wds"
    assert shards["files"]["eval"] == ["imagenet1k-validation-0000.tar"]
    assert one_process["folder"]["source"]["files"] == {"train": ["train"], "eval": ["val"]}


@pytest.fixture(scope="module")
def two_by_two(store, weights) -> dict:
    """One launch of 2 processes x 2 workers: a training epoch on the shards (every sample served recorded), then
    --eval-only of the same weights on the folder, the shards and the parquet files."""
    out, keys = store.root / "launch", store.root / "served"
    keys.mkdir()
    common = ["--recipe", "cnn_fmnist", "--budget", "smoke", "--workers", "2"]
    trained = store.root / "trained-2x2.safetensors"
    runs = [[*where(store, "wds"), "--save-weights", str(trained), "--output", str(out / "train")]]
    for name in ("folder", "wds", "hfds"):
        runs.append(
            [*where(store, name), "--eval-only", "--pretrained-file", str(weights), "--output", str(out / name)]
        )
    argv = [arg for run in runs for arg in ["--then", *common, *run]][1:]
    result = launch_script(2, "tests/scripts/run_many.py", *argv, env={**cache_env(store), "RECORD_SAMPLES": str(keys)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    served = [line.split("\t") for f in keys.iterdir() for line in f.read_text().splitlines()]
    summaries = {name: only_summary(out / name) for name in ("train", "folder", "wds", "hfds")}
    return {"summaries": summaries, "served": served, "trained": trained}


@pytest.mark.slow
def test_two_processes_two_workers_evaluate_each_image_once_as_one_process_does(two_by_two, one_process):
    for name in ("folder", "wds", "hfds"):
        summary = two_by_two["summaries"][name]
        assert summary["world_size"] == 2 and summary["eval_only"] is True
        assert sum(map(sum, summary["confusion_matrix"])) == 24
        for key in EVAL_KEYS:
            assert summary[key] == one_process[name][key], (name, key)
        assert summary["eval_loss"] == pytest.approx(one_process[name]["eval_loss"], rel=1e-6)


@pytest.mark.slow
def test_two_processes_two_workers_train_each_shard_sample_once_an_epoch(two_by_two, store, tmp_path):
    trained = [key for split, key in two_by_two["served"] if split == "train"]
    smoke_train = [s.key for s in store.samples["train"][:64]]  # the smoke budget: the first 64 in shard order
    assert sorted(trained) == sorted(smoke_train)  # each once: none repeated, none left out
    run = two_by_two["summaries"]["train"]
    assert run["world_size"] == 2 and run["train_samples"] == 64 and run["source"]["format"] == "wds"
    alone = evaluate_alone(store, "wds", two_by_two["trained"], tmp_path)
    for key in EVAL_KEYS:
        assert alone[key] == run[key], key
    assert alone["eval_loss"] == pytest.approx(run["eval_loss"], rel=1e-6)


def losses(run: Path) -> list[tuple[str, ...]]:
    rows = csv.DictReader((run / "metrics.csv").open())
    return [(r["train_loss"], r["eval_loss"], r["eval_top1"], r["eval_top5"]) for r in rows]


@pytest.mark.slow
def test_a_mid_epoch_resume_on_shards_ends_as_the_uninterrupted_run(store, tmp_path):
    """The same batches in the same order: the shards are read by index, so accelerate's seedable sampler and
    batch skipping resume them as they resume a folder. Two workers: the recipe's dropout draws stay on the main
    process, whose random state the checkpoint restores."""
    args = ["--recipe", "cnn_fmnist", "--budget", "smoke", "--workers", "2", *where(store, "wds"), "--epochs", "2",
            "--save-every", "1", "--keep", "10", "--seed", "3"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path)]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    uninterrupted = losses(run)
    saved = complete_checkpoints(run)
    progress = [json.loads((c / PROGRESS).read_text()) for c in saved]
    cut = next(i for i, p in enumerate(progress) if (p["epoch"], p["step_in_epoch"]) == (1, 2))
    for later in saved[cut + 1 :]:  # as if killed half-way through the second epoch
        shutil.rmtree(later)
    (run / "summary.json").unlink()
    (run / "metrics.csv").unlink()  # rewritten from the checkpoint's history
    assert main(["--resume", str(run)]) == 0
    assert json.loads((complete_checkpoints(run)[-1] / PROGRESS).read_text())["num_updates"] == 8
    assert losses(run) == uninterrupted and len(uninterrupted) == 2


def test_shards_are_indexed_once_and_again_when_one_changes(store, tmp_path, monkeypatch):
    from harness.data import check_available
    from harness.data.readers import shards

    copy = shutil.copytree(store.shards, tmp_path / "shards")
    real, indexed = shards.index_shard, []
    monkeypatch.setattr(shards, "index_shard", lambda path: indexed.append(path.name) or real(path))
    check_available("wds", copy, download=False)
    check_available("wds", copy, download=False)
    assert sorted(indexed) == ["toy-train-0000.tar", "toy-train-0001.tar", "toy-validation-0000.tar"]
    os.utime(copy / "toy-train-0001.tar", ns=(1, 1))
    check_available("wds", copy, download=False)
    assert indexed[3:] == ["toy-train-0001.tar"]


def test_imagenet_in_any_layout_or_from_its_hub_repository_is_imagenet(store):
    from harness.config import fidelity
    from harness.run import parse_args, plan_run

    layouts = [("imagenet", store.parquet), ("imagenet", store.shards), ("imagenet", store.folder)]
    for dataset, data_dir in [*layouts, ("hfds/ILSVRC/imagenet-1k", None), ("hfds/timm/imagenet-1k-wds", None)]:
        argv = ["--recipe", "rsb_a3", "--dataset", dataset] + (["--data-dir", str(data_dir)] if data_dir else [])
        plan = plan_run(parse_args(argv))
        assert plan.dataset == "imagenet" and plan.budget == "full"
        assert plan.source == (None if data_dir else dataset)
        assert not [line for line in fidelity(plan.published, plan.recipe, []) if line.startswith("dataset")]
    plan = plan_run(parse_args(["--recipe", "rsb_a3", "--dataset", "hfds/toy/shapes"]))
    assert plan.dataset == "hfds/toy/shapes" and "dataset: imagenet -> hfds/toy/shapes" in fidelity(
        plan.published, plan.recipe, []
    )


def truncate_member(shard: Path, key: str) -> None:
    """Rewrite a shard with the image of sample `key` cut in half (the tar itself stays well-formed)."""
    import io

    members = []
    with tarfile.open(shard) as tar:
        for info in tar:
            data = tar.extractfile(info).read()
            if info.name == f"{key}.jpg":
                data = data[: len(data) // 2]
            members.append((info.name, data))
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.slow
def test_an_undecodable_tar_member_is_skipped_and_named_as_a_folder_image_is(store, tmp_path, monkeypatch):
    from harness.data import unreadable

    shards = shutil.copytree(store.shards, tmp_path / "shards")
    truncate_member(shards / "toy-train-0000.tar", "china_train005")
    monkeypatch.setattr(unreadable, "UNREADABLE_LIMIT", 0.05)  # 1 of the 64 smoke images is 1.6%
    assert main([*SMOKE, "--dataset", "wds", "--data-dir", str(shards), "--output", str(tmp_path / "runs")]) == 0
    summary = only_summary(tmp_path / "runs")
    assert summary["skipped_images"] == {"train": ["toy-train-0000.tar:china_train005"]}
    assert summary["eval_samples"] == 24


def test_an_undecodable_parquet_row_is_skipped_and_named(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.data import build_datasets, log_unreadable_to

    parquet = shutil.copytree(store.parquet, tmp_path / "parquet")
    path = parquet / "data" / "train-00001-of-00002.parquet"
    table = pq.read_table(path)
    images = table.column("image").to_pylist()
    images[3] = {"bytes": images[3]["bytes"][:100], "path": images[3]["path"]}
    pq.write_table(table.set_column(0, "image", pa.array(images, table.schema.field("image").type)), path)
    train, _, _ = build_datasets("hfds", parquet, False, None, None)
    log_unreadable_to([train], tmp_path / "unreadable.txt")
    assert train[40 + 3] is None and train[40 + 4] is not None
    assert (tmp_path / "unreadable.txt").read_text() == "train\tdata/train-00001-of-00002.parquet:3\n"


def refused(args: list[str], out: Path, capsys) -> str:
    capsys.readouterr()  # what writing the test's files printed
    assert main([*SMOKE, *args, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists()
    return err[0]


def rewrite_parquet(store: Store, root: Path, edit) -> Path:
    """A copy of the parquet layout with each file's table passed through `edit(table, split)`."""
    import pyarrow.parquet as pq

    copy = shutil.copytree(store.parquet, root)
    for path in (copy / "data").glob("*.parquet"):
        pq.write_table(edit(pq.read_table(path), path.name.split("-")[0]), path)
    return copy


def test_malformed_parquet_is_refused_in_one_line(store, tmp_path, capsys):
    import pyarrow as pa

    no_label = rewrite_parquet(store, tmp_path / "a", lambda t, split: t.drop_columns(["label"]))
    message = refused(["--dataset", "hfds", "--data-dir", str(no_label)], tmp_path / "out", capsys)
    assert message.endswith(
        "has no label column (it has image); expected image (image bytes or a path) and label (a class index)"
    )
    renamed = rewrite_parquet(store, tmp_path / "b", lambda t, split: t.rename_columns(["img", "label"]))
    assert "has no image column (it has img, label)" in refused(
        ["--dataset", "imagenet", "--data-dir", str(renamed)], tmp_path / "out", capsys
    )

    def label_five(table, split):
        labels = table.column("label").to_pylist()
        return table.set_column(1, table.schema.field("label"), pa.array([5] + labels[1:], pa.int64()))

    outside = rewrite_parquet(store, tmp_path / "c", label_five)
    assert "row 0 has label 5, outside the 3 classes 0..2 of its ClassLabel" in refused(
        ["--dataset", "hfds", "--data-dir", str(outside)], tmp_path / "out", capsys
    )
    damaged = shutil.copytree(store.parquet, tmp_path / "damaged")
    (damaged / "data" / "validation-00000-of-00001.parquet").write_bytes(b"not parquet")
    assert "validation-00000-of-00001.parquet is not a readable parquet file" in refused(
        ["--dataset", "hfds", "--data-dir", str(damaged)], tmp_path / "out", capsys
    )
    four = tmp_path / "d"
    write_parquet(four, store.samples, names=CLASSES)
    write_parquet(tmp_path / "e", store.samples, names=(*CLASSES, "extra"))
    shutil.copy(tmp_path / "e" / "data" / "validation-00000-of-00001.parquet", four / "data")
    assert refused(["--dataset", "hfds", "--data-dir", str(four)], tmp_path / "out", capsys).endswith(
        "the train files have 3 classes, the validation files 4; both splits must share one class list"
    )


def test_malformed_shards_are_refused_in_one_line(store, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no WebDataset shards (*-train-NNNN.tar)" in refused(
        ["--dataset", "wds", "--data-dir", str(empty)], tmp_path / "out", capsys
    )
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    shutil.copy(store.shards / "toy-train-0000.tar", unnamed / "shapes.tar")
    assert "holds no training shards (train-*); found splits: none" in refused(
        ["--dataset", "wds", "--data-dir", str(unnamed)], tmp_path / "out", capsys
    )
    import webdataset as wds

    no_cls = shutil.copytree(store.shards, tmp_path / "no-cls")
    with wds.TarWriter(str(no_cls / "toy-validation-0000.tar")) as sink:
        sink.write({"__key__": "lonely", "jpg": store.samples["val"][0].jpeg})
    assert "sample lonely of" in refused(["--dataset", "wds", "--data-dir", str(no_cls)], tmp_path / "out", capsys)
    more = shutil.copytree(store.shards, tmp_path / "more")
    with wds.TarWriter(str(more / "toy-validation-0000.tar")) as sink:
        sink.write({"__key__": "odd", "jpg": store.samples["val"][0].jpeg, "cls": 7})
    assert "validation sample 0 has class 7, outside the 3 classes 0..2 of train" in refused(
        ["--dataset", "wds", "--data-dir", str(more)], tmp_path / "out", capsys
    )
    cut = shutil.copytree(store.shards, tmp_path / "cut")
    shard = cut / "toy-train-0001.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert f"{shard} is not a readable tar shard (ReadError" in refused(
        ["--dataset", "wds", "--data-dir", str(cut)], tmp_path / "out", capsys
    )
    sized = shutil.copytree(store.shards_info, tmp_path / "sized")
    info = json.loads((sized / "_info.json").read_text())
    info["splits"]["train"]["shard_lengths"] = [40, 33]
    (sized / "_info.json").write_text(json.dumps(info))
    assert refused(["--dataset", "wds", "--data-dir", str(sized)], tmp_path / "out", capsys).endswith(
        f"{sized / 'toy-train-0001.tar'} holds 32 samples; _info.json says 33"
    )
    assert "remote shards are not streamed" in refused(
        ["--dataset", "wds", "--data-dir", "pipe:curl -s https://host/shards-train-0000.tar"], tmp_path / "out", capsys
    )


def test_a_hub_dataset_not_in_the_cache_is_refused(tmp_path, capsys):
    message = refused(["--dataset", "hfds/toy/absent"], tmp_path / "out", capsys)
    assert "dataset repository toy/absent is not in the Hugging Face cache" in message
    assert message.endswith("download it first: huggingface-cli download toy/absent --repo-type dataset")


@pytest.mark.slow
def test_a_missing_extra_is_refused_with_the_pip_command(store, tmp_path):
    out = tmp_path / "out"
    argv = [*SMOKE, *where(store, "hfds"), "--output", str(out), "--then", *SMOKE, *where(store, "wds"),
            "--output", str(out)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "tests/scripts/run_many.py", *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, **cache_env(store), "HIDE_MODULES": "datasets,webdataset"},
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout.split() == ["exit", "2", "exit", "2"]
    assert result.stderr.strip().splitlines() == [
        "error: a parquet dataset needs the datasets library: pip install -e '.[hf]'",
        "error: a WebDataset shard needs the webdataset library: pip install -e '.[wds]'",
    ]
    assert not out.exists()
