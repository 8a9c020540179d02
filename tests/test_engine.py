"""evaluate(): counts and metrics from gathered predictions."""

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from harness.engine import evaluate


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
