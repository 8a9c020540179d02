"""Gradient accumulation keeps the global batch; the training step reads the device only at log intervals."""

import dataclasses
import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin
from rich.progress import Progress
from safetensors.torch import load_file

from harness.build import build_model, build_optimizer, build_scheduler, build_train_loss
from harness.data.memory import BatchAugment, BatchEvalTransform, MemoryLoader
from harness.engine import NonFiniteLoss, Trainer, train_one_epoch
from harness.run import main
from recipes import get_recipe
from tests.conftest import accelerate_launch, only_summary

# LeNet-5 has neither BatchNorm nor dropout, and lenet_mnist augments nothing: the three splits of the global
# batch of 64 (its published batch) see the same images per update and must train the same weights.
EQUIVALENCE = ["--recipe", "lenet_mnist", "--dataset", "digits", "--budget", "proxy", "--epochs", "1",
               "--batch-size", "64", "--seed", "5", "--deterministic"]  # fmt: skip


def _run(tmp_path, name: str, *extra: str) -> tuple[dict, dict]:
    weights = tmp_path / f"{name}.safetensors"
    args = [*EQUIVALENCE, *extra, "--save-weights", str(weights), "--output", str(tmp_path / name)]
    assert main([*args, "--workers", "0"]) == 0
    return only_summary(tmp_path / name), load_file(str(weights))


@pytest.mark.slow
def test_one_by_64_four_by_16_and_two_processes_by_two_by_16_train_the_same_model(tmp_path):
    whole, whole_weights = _run(tmp_path, "whole")
    accumulated, accumulated_weights = _run(tmp_path, "accumulated", "--micro-batch", "16")
    weights = tmp_path / "two.safetensors"
    launched = accelerate_launch(2, *EQUIVALENCE, "--micro-batch", "16", "--save-weights", str(weights),
                                 "--output", str(tmp_path / "two"))  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    two, two_weights = only_summary(tmp_path / "two"), load_file(str(weights))

    assert (whole["grad_accum_steps"], accumulated["grad_accum_steps"], two["grad_accum_steps"]) == (1, 4, 2)
    assert accumulated["micro_batch_size"] == 16 and accumulated["global_batch_size"] == 64
    for summary in (whole, accumulated, two):
        assert summary["lr_rescale"] is None
        assert not any(line.startswith(("batch_size", "lr:")) for line in summary["fidelity"])
        assert not any("BatchNorm" in note for note in summary["notices"])  # LeNet has none
    assert whole_weights.keys() == accumulated_weights.keys() == two_weights.keys()
    for name, tensor in whole_weights.items():
        torch.testing.assert_close(accumulated_weights[name], tensor, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(two_weights[name], tensor, rtol=1e-4, atol=1e-5)
    assert accumulated["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-4)
    assert two["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-4)
    assert accumulated["confusion_matrix"] == whole["confusion_matrix"] == two["confusion_matrix"]


def test_a_micro_batch_that_does_not_divide_is_refused_in_one_line(tmp_path, capsys):
    args = ["--recipe", "lenet_mnist", "--dataset", "digits", "--budget", "smoke", "--output", str(tmp_path)]
    assert main([*args, "--micro-batch", "6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --micro-batch 6 does not divide the global batch 16 over 1 process(es)")
    assert err.rstrip().endswith("1, 2, 4, 8, 16") and len(err.strip().splitlines()) == 1
    assert main([*args, "--recipe", "mixup_cutmix", "--micro-batch", "1"]) == 2  # Mixup pairs need even ones
    assert "an even divisor of 16: 2, 4, 8, 16" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_the_batchnorm_note_is_a_note_not_a_difference(tmp_path):
    args = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--micro-batch", "8"]
    assert main([*args, "--workers", "0", "--output", str(tmp_path)]) == 0
    summary = only_summary(tmp_path)
    assert summary["grad_accum_steps"] == 2 and summary["micro_batch_size"] == 8
    assert any(note.startswith("BatchNorm statistics are computed over each micro-batch of 8") for note in
               summary["notices"])  # fmt: skip
    assert not any("BatchNorm" in line for line in summary["fidelity"])


# ---- the engine on its own: what counts updates, and how often the device is read ----------------------------

MICRO, ACCUM = 4, 2


@pytest.fixture
def one_thread():
    """Tiny ops gain nothing from a second thread, and spin-waiting for it on a busy machine costs 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(images: int, log_every: int = 50, lr: float | None = None) -> Trainer:
    # In-memory augmentation on (crop, flip, rotation, colour jitter): the loader is on the step's path too.
    recipe = dataclasses.replace(get_recipe("lenet_mnist"), img_size=16, test_img_size=16, epochs=2,
                                 warmup_epochs=1, warmup_lr=1e-4, sched="cosine", lr=lr or 0.01, sched_on_updates=True,
                                 model_ema=True, model_ema_decay=0.9, scale=(0.5, 1.0), hflip=0.5, rotate=10.0,
                                 color_jitter=0.2)  # fmt: skip
    accelerator = Accelerator(cpu=True, gradient_accumulation_plugin=GradientAccumulationPlugin(
        num_steps=ACCUM, sync_with_dataloader=False))  # fmt: skip
    accelerator.gradient_accumulation_steps = ACCUM
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (images, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (images,), generator=generator)
    loader = MemoryLoader(data, labels, MICRO, BatchAugment(recipe, accelerator.device), True, seed=0)
    eval_loader = MemoryLoader(data[:8], labels[:8], MICRO, BatchEvalTransform(recipe, accelerator.device), False, 0)
    model = build_model(recipe, 10)
    optimizer = build_optimizer(recipe, model)
    model, optimizer = accelerator.prepare(model, optimizer)
    from timm.utils import ModelEmaV3

    return Trainer(
        accelerator=accelerator, model=model, optimizer=optimizer,
        scheduler=build_scheduler(recipe, optimizer, len(loader) // ACCUM)[0],
        train_loss=build_train_loss(recipe, False), train_loader=loader, eval_loader=eval_loader, num_classes=10,
        global_batch_size=MICRO * ACCUM, ema=ModelEmaV3(model, decay=0.9), accum_steps=ACCUM, log_every=log_every,
    )  # fmt: skip


def test_schedule_and_ema_count_optimizer_updates_not_micro_steps(monkeypatch, one_thread):
    t = _trainer(images=10 * MICRO * ACCUM)  # 10 updates of 2 micro-steps an epoch
    ema_steps, optimizer_steps = [], []
    real_ema_update, real_step = t.ema.update, t.optimizer.optimizer.step
    monkeypatch.setattr(t.ema, "update", lambda model, step: (ema_steps.append(step), real_ema_update(model, step)))
    monkeypatch.setattr(t.optimizer.optimizer, "step", lambda *a, **k: (optimizer_steps.append(1), real_step())[1])
    with Progress(disable=True) as progress:
        train_one_epoch(t, 0, progress)
    assert t.num_updates == 10 and ema_steps == list(range(1, 11)) and len(optimizer_steps) == 10
    # warmup is one epoch = 10 updates: after 10 updates the schedule is at its peak, not 20 updates along
    reference = build_scheduler(dataclasses.replace(get_recipe("lenet_mnist"), epochs=2, warmup_epochs=1,
                                                    warmup_lr=1e-4, sched="cosine", lr=0.01, sched_on_updates=True),
                                torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01), 10)[0]  # fmt: skip
    reference.step_update(num_updates=20)
    lr_after_20 = reference.optimizer.param_groups[0]["lr"]
    reference.step_update(num_updates=10)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(reference.optimizer.param_groups[0]["lr"])
    assert t.optimizer.param_groups[0]["lr"] != pytest.approx(lr_after_20)


HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__")


def _count_host_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            reads.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def test_the_step_reads_the_device_once_per_log_interval_and_at_the_epoch_end(monkeypatch, one_thread):
    t = _trainer(images=150 * MICRO * ACCUM, log_every=40)  # 300 micro-steps, 150 updates
    logged = []
    t.on_log = lambda updates, values: logged.append((updates, values))
    reads = _count_host_reads(monkeypatch)
    with Progress(disable=True) as progress:
        row = train_one_epoch(t, 0, progress)
    monkeypatch.undo()
    assert t.num_updates == 150
    assert reads == ["tolist"] * 4, reads  # updates 40, 80, 120 and the epoch's end at 150
    assert [u for u, _ in logged] == [40, 80, 120, 150]
    assert set(logged[0][1]) == {"train/loss", "train/lr", "train/img_per_s"}
    assert all(isinstance(v, float) for _, values in logged for v in values.values())
    assert row["train_loss"] == pytest.approx(
        sum(v["train/loss"] * n for (_, v), n in zip(logged, (40, 40, 40, 30), strict=True)) / 150
    )


class NanAfter(torch.nn.CrossEntropyLoss):
    """Cross-entropy that turns NaN from its `calls`-th call on, without reading the device."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls, self.seen = calls, 0

    def forward(self, logits, targets):
        self.seen += 1
        return super().forward(logits, targets) * (float("nan") if self.seen >= self.calls else 1.0)


def test_a_non_finite_loss_is_caught_at_the_next_read_naming_the_window(one_thread):
    t = _trainer(images=30 * MICRO * ACCUM, log_every=10)
    t.train_loss = NanAfter(calls=2 * 6 + 1)  # the first micro-step of update 7
    with Progress(disable=True) as progress, pytest.raises(NonFiniteLoss) as caught:
        train_one_epoch(t, 0, progress)
    assert str(caught.value) == "training loss became nan at epoch 1, within updates 1-10; stopping"
    assert t.num_updates == 10  # stopped at the first read after it, not at the epoch's end


# ---- --estimate ------------------------------------------------------------------------------------------------

ESTIMATE_KEYS = {"img_per_s", "epoch_s", "total_s", "device_hours", "peak_memory_mb_per_device", "micro_batch_size",
                 "grad_accum_steps", "data_wait_s", "compute_s", "synthetic_data"}  # fmt: skip


def test_estimate_writes_only_estimate_json_on_synthetic_data_when_the_dataset_is_absent(tmp_path, monkeypatch,
                                                                                         capsys):  # fmt: skip
    from harness import estimate

    monkeypatch.setattr(estimate, "TIMED_UPDATES", 2)
    args = ["--recipe", "lenet_mnist", "--budget", "smoke", "--micro-batch", "8", "--workers", "0", "--estimate"]
    assert main([*args, "--data-dir", str(tmp_path / "no-mnist"), "--output", str(tmp_path / "runs")]) == 0
    assert "estimating on synthetic data" in " ".join(capsys.readouterr().out.split())
    (written,) = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert written.name == "estimate.json"
    record = json.loads(written.read_text())
    assert ESTIMATE_KEYS <= set(record) and record["synthetic_data"] is True and record["dataset"] == "mnist"
    assert record["micro_batch_size"] == 8 and record["grad_accum_steps"] == 2 and record["timed_updates"] == 2
    assert record["updates_per_epoch"] == 64 // 16  # the smoke budget's 64 of MNIST's 60,000 images
    assert record["img_per_s"] == pytest.approx(16 / (record["data_wait_s"] + record["compute_s"]))
    assert record["total_s"] == pytest.approx(record["epoch_s"] * record["epochs"])
    assert record["epoch_s"] > record["updates_per_epoch"] * record["compute_s"] > 0
