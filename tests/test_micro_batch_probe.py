"""The micro-batch probe (the largest micro-batch that fits, on a GPU without --micro-batch) trains nothing."""

import dataclasses

import torch

from harness.accelerator import largest_fitting_micro_batch, make_accelerator
from harness.batching import BatchSplit
from recipes import get_recipe


class OutOfMemoryAbove(torch.nn.Module):
    """Raises CUDA's out-of-memory error for batches larger than `limit`, after the layers before it have run."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x


def test_the_probe_leaves_the_model_and_the_generators_as_they_were():
    """The probe runs forward and backward on random images in train mode: BatchNorm's statistics, the gradients and
    the random generators must come out as they went in, after out-of-memory retries too."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        OutOfMemoryAbove(4),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    ).train()
    accelerator = make_accelerator(amp=False)
    model.to(accelerator.device)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    cuda = accelerator.device.type == "cuda"
    generators = torch.get_rng_state(), torch.cuda.get_rng_state(accelerator.device) if cuda else None
    recipe = dataclasses.replace(get_recipe("lenet_mnist"), img_size=8)
    split = largest_fitting_micro_batch(accelerator, recipe, model, BatchSplit(16, 1, 16))
    assert split.micro_batch == 4  # 16 and 8 ran out of memory after BatchNorm had seen them
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name  # running_mean, running_var, num_batches_tracked, weights
    assert all(p.grad is None for p in model.parameters()) and model.training
    assert torch.equal(torch.get_rng_state(), generators[0])
    if cuda:
        assert torch.equal(torch.cuda.get_rng_state(accelerator.device), generators[1])
