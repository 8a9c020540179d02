"""The typed run records: every committed record reads back, JSON round trips, old names, schemas, builders."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from harness.records import Estimate, EvalRecord, RunRecord, main, read_summary, record_schemas
from harness.report import load_records, render_markdown
from harness.results import summary_record
from recipes import Reference, get_recipe
from tests.conftest import ROOT

SUMMARIES = sorted((ROOT / "benchmarks").rglob("summary.json"))
ESTIMATES = sorted((ROOT / "benchmarks").rglob("estimate.json"))


def test_the_benchmarks_hold_records_of_each_kind():
    assert len(SUMMARIES) >= 30 and len(ESTIMATES) >= 5


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_summary_reads_and_writes_back_the_same_json(path):
    raw = json.loads(path.read_text())
    record = read_summary(path.read_text())
    assert isinstance(record, EvalRecord if raw.get("eval_only") else RunRecord)
    assert type(record).from_json(raw) == record
    assert record.to_dict() == raw  # the same keys and values, none added


@pytest.mark.parametrize("path", ESTIMATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_estimate_reads_with_its_differences_as_fidelity(path):
    raw = json.loads(path.read_text())
    estimate = Estimate.from_json(path.read_text())
    assert estimate.fidelity == raw["differences"] and estimate.notices == raw["notices"]
    written = estimate.to_dict()
    assert "differences" not in written
    assert written == {("fidelity" if k == "differences" else k): v for k, v in raw.items()}


def minimal(**extra) -> dict:
    return {
        "recipe": "rsb_a3",
        "model": "resnet50",
        "dataset": "digits",
        "budget": "proxy",
        "eval_top1": 90.0,
        "reference": {"top1": 78.1, "source": "a paper"},
        **extra,
    }


def test_to_json_and_from_json_round_trip_and_keep_absent_fields_absent():
    record = RunRecord.from_json(minimal(fidelity=["epochs: 100 -> 2"], eval_loss=float("nan"), seed=3))
    text = record.to_json()
    assert text.endswith("}\n") and '"eval_loss": NaN' in text
    again = RunRecord.from_json(text)
    assert again.to_json() == text and again.seed == 3
    assert "world_size" not in json.loads(text) and again.world_size is None  # absent stays absent
    assert RunRecord.from_json(text.encode()).fidelity == ["epochs: 100 -> 2"]


def test_old_names_read_as_the_one_name():
    record = RunRecord.from_json(minimal(differences=["a"], notes=["b"]))
    assert (record.fidelity, record.notices) == (["a"], ["b"])
    assert {"fidelity", "notices"} <= record.to_dict().keys()
    assert not {"differences", "notes"} & record.to_dict().keys()


def test_a_summary_is_a_run_or_an_evaluation_by_eval_only_and_unknown_fields_are_refused():
    assert isinstance(read_summary(minimal()), RunRecord)
    evaluation = read_summary(json.dumps(minimal(eval_only=True)))
    assert isinstance(evaluation, EvalRecord) and evaluation.to_dict()["eval_only"] is True
    with pytest.raises(ValueError, match="typo"):
        read_summary(minimal(typo=1))
    with pytest.raises(ValueError, match="epochs_run"):
        read_summary(minimal(eval_only=True, epochs_run=2))  # a training field in an evaluation record


def _properties(schema: dict):
    yield schema["title"], schema["properties"]
    for name, sub in schema.get("$defs", {}).items():
        yield name, sub["properties"]


def test_every_field_of_every_schema_has_a_description():
    for kind, schema in record_schemas().items():
        for title, properties in _properties(schema):
            undescribed = [name for name, prop in properties.items() if not prop.get("description")]
            assert not undescribed, f"{kind}: {title} fields without a description: {undescribed}"


def test_the_schemas_list_every_key_of_the_committed_records():
    schemas = record_schemas()
    for path in SUMMARIES:
        keys = json.loads(path.read_text()).keys()
        assert keys <= schemas["run"]["properties"].keys(), path
    for path in ESTIMATES:
        keys = set(json.loads(path.read_text())) - {"differences"}
        assert keys <= schemas["estimate"]["properties"].keys(), path


def test_the_schema_command_prints_a_records_schema(capsys):
    assert main(["--schema", "estimate"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Estimate" and "fidelity" in schema["properties"]


def test_the_records_reference_has_the_recipes_reference_fields():
    from harness.records import Reference as RecordReference

    assert list(RecordReference.model_fields) == [f.name for f in dataclasses.fields(Reference)]


def _fake_run():
    recipe = get_recipe("cnn_fmnist")
    batches = SimpleNamespace(per_process=64, micro_batch=32, accum_steps=2, global_batch=64)
    spec = SimpleNamespace(
        dataset="digits",
        budget="smoke",
        published=recipe,
        lr_rescale={"rule": "sqrt", "published_lr": 0.1, "published_batch_size": 128, "lr": 0.07, "batch_size": 64},
        notices=("a notice",),
        resume_dir=None,
        options=SimpleNamespace(compile=False, seed=0, pretrained_file=None),
    )
    eval_set = SimpleNamespace(source={"format": "bundled", "samples": {"train": 10, "eval": 5}})
    return SimpleNamespace(
        recipe=recipe,
        spec=spec,
        datasets=(None, eval_set),
        class_names=["0", "1"],
        train_samples=10,
        world=1,
        batches=batches,
        accelerator=SimpleNamespace(mixed_precision="no", device="cpu"),
        data_path="memory",
        augment_on=None,
        decode_on=None,
        decode_fallbacks=None,
        cpu_threads=1,
        differences=["dataset: fashion_mnist -> digits"],
        notes=[],
        weights=None,
        started_at="2026-01-01T00:00:00+00:00",
    )


def test_the_builder_writes_the_keys_it_wrote_as_a_dict():
    final = {
        "eval_top1": 50.0,
        "eval_top5": 100.0,
        "eval_loss": 0.7,
        "eval_samples": 5,
        "eval_precision": 50.0,
        "eval_recall": 50.0,
        "eval_f1": 50.0,
        "per_class_accuracy": [100.0, 0.0],
        "confusion_matrix": [[3, 0], [2, 0]],
    }
    history = [{"epoch": 1, "train_img_per_s": 10.0, "train_top1": 40.0, "train_loss": 0.9, "eval_top1": 50.0}]
    trainer = SimpleNamespace(history=history, stopped_early_at_epoch=None)
    record = summary_record(_fake_run(), trainer, final, 12.5)
    finished = record.with_fields(skipped_images={}, nodes=1, world_sizes=[1], attempts=[], plots={})
    keys = list(finished.to_dict())
    newest = json.loads(sorted(SUMMARIES, key=lambda p: json.loads(p.read_text())["finished_at"])[-1].read_text())
    assert set(newest) - {"saved_weights"} <= set(keys)
    assert set(keys) - set(newest) == {"best_of"}  # newer than the committed records
    assert finished.lr_rescale.rule == "sqrt" and finished.source.format == "bundled"
    assert RunRecord.from_json(finished.to_json()) == finished


def test_the_report_reads_old_records_and_typed_records_alike(tmp_path):
    old = minimal(differences=["epochs: 100 -> 2"], seed=0)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(old))
    (loaded,) = load_records(tmp_path)
    assert loaded.run_dir == "run" and loaded.fidelity == ["epochs: 100 -> 2"]
    assert render_markdown([loaded]) == render_markdown([{**old, "_run_dir": "run"}])
    assert "not comparable" in render_markdown([loaded])
