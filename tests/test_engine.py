"""evaluate(): counts and metrics from gathered predictions; fit(): what it hands the schedule."""

import torch
from accelerate import Accelerator
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, TensorDataset

import harness.engine
from harness.engine import Trainer, evaluate, fit
from harness.results import tracked_top1


class FixedLogits(torch.nn.Module):
    """Returns the logits stored for each input index, so the expected metrics are known exactly."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index]


def test_top5_is_not_merged_with_top1_when_the_first_batch_is_all_correct():
    targets = torch.arange(40) % 10
    logits = torch.zeros(40, 10)
    logits[torch.arange(40), targets] = 5.0  # first batch all right...
    wrong = torch.arange(20, 40)
    logits[wrong, targets[wrong]] = 0.0
    logits[wrong, (targets[wrong] + 1) % 10] = 5.0  # ...later ones top-1 wrong, top-2 right
    logits[wrong, targets[wrong]] = 4.0
    loader = DataLoader(TensorDataset(torch.arange(40), targets), batch_size=20)
    accelerator = Accelerator(cpu=True)
    result = evaluate(accelerator, FixedLogits(logits), loader, num_classes=10)
    assert result["eval_samples"] == 40
    assert result["eval_top1"] == 50.0
    assert result["eval_top5"] == 100.0
    assert sum(map(sum, result["confusion_matrix"])) == 40
    assert result["per_class_accuracy"] == [50.0] * 10


class ScaledLogits(FixedLogits):
    """FixedLogits with a parameter, as timm's EMA needs one."""

    def __init__(self, logits: torch.Tensor):
        super().__init__(logits)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index] * self.scale


class StepRecorder:
    """A schedule that records what fit() hands it at each epoch's end."""

    def __init__(self):
        self.steps: list[tuple[int, float]] = []

    def step(self, epoch: int, metric: float | None = None) -> None:
        self.steps.append((epoch, metric))


def test_the_plateau_metric_and_the_best_are_the_emas_when_the_ema_is_evaluated(monkeypatch):
    targets = torch.arange(20) % 10
    right = torch.nn.functional.one_hot(targets, 10).float()
    half_right = right.clone()
    half_right[:10] = right[:10].roll(1, dims=1)  # the model gets half wrong, its EMA none
    model, ema = ScaledLogits(half_right), ModelEmaV3(ScaledLogits(right))
    loader = DataLoader(TensorDataset(torch.arange(20), targets), batch_size=10)
    t = Trainer(accelerator=Accelerator(cpu=True), model=model, optimizer=None, scheduler=StepRecorder(),
                train_loss=None, train_loader=None, eval_loader=loader, num_classes=10, global_batch_size=10,
                ema=ema)  # fmt: skip
    monkeypatch.setattr(harness.engine, "train_one_epoch", lambda *args: {"train_loss": 1.0, "train_img_per_s": 1.0})
    fit(t, 1, lambda row, _eval: None)
    assert t.history[0]["eval_top1"] == 50.0 and t.history[0]["eval_top1_ema"] == 100.0
    assert t.scheduler.steps == [(1, 100.0)]  # as train.py: eval_metrics = ema_eval_metrics
    assert tracked_top1(t.history[0]) == 100.0
