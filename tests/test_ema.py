"""The EMA as timm's train.py keeps it: a copy of the bare model (so --compile keeps DDP, and its keys are the model's),
its BatchNorm statistics reduced over the processes before it is evaluated, and the EMA saved is the EMA evaluated."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from timm.utils import ModelEmaV3

from harness.checkpoint import EMA_FILE, _bare_keys, complete_checkpoints
from tests.test_process_randomness import launch_two

# cnn_fmnist has BatchNorm; a fast EMA makes each process's BatchNorm statistics show in it after 2 updates.
EMA_RUN = ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "smoke", "--workers", "0"]
EMA_RUN += ["--set", "model_ema=True", "--set", "model_ema_decay=0.5"]


@pytest.mark.slow
def test_compile_keeps_ddp_and_the_ema_has_the_bare_models_keys(tmp_path):
    """accelerate's unwrap_model (keep_torch_compile=True) would set the compiled module's _orig_mod to the bare
    model, so OptimizedModule(DDP(model)) lost DDP and its no_sync, and the EMA copied the compiled wrapper."""
    launch_two(
        "tests/scripts/ema_ranks.py", "prepared", str(tmp_path), *EMA_RUN, "--compile", "--output", str(tmp_path)
    )
    for rank in (0, 1):
        record = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert record["prepared"] == "OptimizedModule"
        assert record["inside_compiled"] == "DistributedDataParallel" and record["has_no_sync"]
        assert record["ema_keys"] == [f"module.{key}" for key in record["bare_keys"]]  # ModelEmaV3 holds `module`
        assert not any("_orig_mod." in key for key in record["ema_keys"])
        assert record["ema_evaluated_compiles_the_ema"]


@pytest.mark.slow
def test_the_emas_batchnorm_statistics_are_reduced_before_it_is_evaluated_and_saved_as_evaluated(tmp_path):
    out = tmp_path / "runs"
    launch_two("tests/scripts/ema_ranks.py", "fit", str(tmp_path), *EMA_RUN, "--output", str(out))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    (trained0,), (trained1,) = (r["trained"] for r in ranks)
    (evaluated0,), (evaluated1,) = (r["evaluated"] for r in ranks)
    assert trained0.keys() == evaluated0.keys() and len(trained0) >= 2
    assert any(not torch.equal(trained0[k], trained1[k]) for k in trained0)  # each process's own statistics
    saved = load_file(str(complete_checkpoints(next(out.iterdir()))[-1] / EMA_FILE))
    for name in trained0:
        torch.testing.assert_close(evaluated0[name], evaluated1[name], rtol=0, atol=0)
        torch.testing.assert_close(evaluated0[name], (trained0[name] + trained1[name]) / 2)  # dist_bn reduce
        torch.testing.assert_close(saved[f"module.{name}"], evaluated0[name], rtol=0, atol=0)


@pytest.mark.slow
def test_an_ema_saved_with_the_compiled_wrappers_keys_loads_into_the_bare_model(tmp_path):
    """Checkpoints written before the EMA copied the bare model hold `_orig_mod.` keys under --compile."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    compiled_ema = ModelEmaV3(torch.compile(model, backend="eager"))
    assert all(key.startswith("module._orig_mod.") for key in compiled_ema.state_dict())
    save_file(compiled_ema.state_dict(), str(tmp_path / EMA_FILE))
    ema = ModelEmaV3(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))
    ema.load_state_dict(_bare_keys(load_file(str(tmp_path / EMA_FILE))))
    for name, tensor in model.state_dict().items():
        assert torch.equal(ema.module.state_dict()[name], tensor)
