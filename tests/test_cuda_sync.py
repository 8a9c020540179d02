"""On a GPU the training step never waits on the host: torch's sync debug mode set to "error" around steady-state
training steps (after a warm-up of two updates, which allocates, tunes cuDNN and builds optimizer state), on every
data path: the split in memory on the device, DataLoader workers, and JPEGs decoded on the device by the decode
thread. The mode is process-wide, so the decode thread is held to it too. The only host waits allowed are those made
on purpose: the device values read every --log-every updates and at the epoch's end (`engine._Window.read`); in
float16, GradScaler's check for infinite gradients before the optimizer steps (torch's GradScaler makes it on every
update, as under timm's train.py); and in the decode thread alone, a wait for its own stream before a decode, where
the decoder orders nvJPEG's writes after the stream's earlier work that way (harness.data.decode).

Limits: the mode is switched off for the whole process while an allowed read runs, so the decode thread goes
unchecked for that moment; and the test proves the training thread makes no synchronising CUDA call, not that it
never waits for the decode thread's batch (that wait is on a future, outside CUDA)."""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from PIL import Image
from rich.progress import Progress
from sklearn.datasets import load_sample_images

from harness import engine
from harness.accelerator import make_accelerator
from harness.assemble import build_run
from harness.build import build_scheduler
from harness.checkpoint import load_checkpoint, save_checkpoint
from harness.data.capabilities import device_decodes_jpeg
from harness.fitting import make_trainer
from harness.run import parse_args, plan_run
from recipes import get_recipe

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

WARMUP_UPDATES = 2
# RSB A3 (RandAugment on the device, Mixup/CutMix, BCE, LAMB) with the rest of what a step can run: random erasing,
# the EMA, gradient clipping. 64 training images in updates of 8, each accumulated over 2 micro-batches of 4.
RECIPE = ["--recipe", "rsb_a3", "--budget", "smoke", "--batch-size", "8", "--micro-batch", "4", "--log-every", "3",
          "--set", "reprob=0.25", "--set", "model_ema=True", "--set", "clip_grad=1.0"]  # fmt: skip
UPDATES = 8
PATHS = {  # options, and the route they must take: (data path, where training images are decoded)
    "memory": (["--dataset", "digits", "--loader", "memory"], ("memory", None)),
    "workers": (["--loader", "workers", "--decode-on", "workers", "--workers", "2"], ("workers", "workers")),
    "decode": (["--loader", "workers", "--decode-on", "device", "--workers", "2"], ("workers", "device")),
}


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> Path:
    """train/ and val/ class folders of JPEGs cut from scikit-learn's two photographs (quality 90)."""
    root = tmp_path_factory.mktemp("jpegs")
    photos = [Image.fromarray(p) for p in load_sample_images().images]
    for split, count in (("train", 96), ("val", 16)):
        for i in range(count):
            folder = root / split / f"c{i % 4}"
            folder.mkdir(parents=True, exist_ok=True)
            crop = photos[i % 2].crop((4 * i, 3 * i, 4 * i + 160, 3 * i + 120))
            buffer = io.BytesIO()
            crop.save(buffer, "JPEG", quality=90)
            (folder / f"{i:03d}.jpg").write_bytes(buffer.getvalue())
    return root


@contextmanager
def host_reads_allowed() -> Iterator[None]:
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(mode)


def _allowed(read):
    def wrapped(*args, **kwargs):
        with host_reads_allowed():
            return read(*args, **kwargs)

    return wrapped


def _step_unless_infinite(self, optimizer, optimizer_state, *args, **kwargs):
    """torch's `GradScaler._maybe_opt_step`, its one read of the device (any infinite gradient?) allowed, the
    optimizer's step not."""
    with host_reads_allowed():
        found_inf = sum(v.item() for v in optimizer_state["found_inf_per_device"].values())
    return None if found_inf else optimizer.step(*args, **kwargs)


def _stream_wait_allowed_in_the_decode_thread(synchronize):
    """`torch.cuda.Stream.synchronize`, which the debug mode counts; in the decode thread the same wait by an event
    (recorded on the stream, waited for on the host), which it does not."""

    def wrapped(stream):
        if not threading.current_thread().name.startswith("decode"):
            return synchronize(stream)
        queued = torch.cuda.Event()
        queued.record(stream)
        queued.synchronize()

    return wrapped


@contextmanager
def host_waits_are_errors(warmup: int, steady: list[int]) -> Iterator[None]:
    """From the end of update `warmup` on, a synchronising CUDA call anywhere in the process raises, except in the
    reads the loop makes on purpose. `steady` collects the updates that ran with the mode on."""
    count_update = engine.count_update

    def counted(t) -> None:
        count_update(t)
        if t.num_updates == warmup:
            torch.cuda.set_sync_debug_mode("error")
        elif t.num_updates > warmup and torch.cuda.get_sync_debug_mode() == 2:
            steady.append(t.num_updates)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "count_update", counted)
        patch.setattr(engine._Window, "read", _allowed(engine._Window.read))
        patch.setattr(torch.amp.GradScaler, "_maybe_opt_step", _step_unless_infinite)
        stream_wait = _stream_wait_allowed_in_the_decode_thread(torch.cuda.Stream.synchronize)
        patch.setattr(torch.cuda.Stream, "synchronize", stream_wait)
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(0)


def one_epoch(options: list[str], steady: list[int]):
    """A run built as harness/run.py builds it, and one epoch of it trained with host waits as errors."""
    args = parse_args(options)
    run = build_run(plan_run(args))
    trainer = make_trainer(run)
    with Progress(disable=True) as progress, host_waits_are_errors(WARMUP_UPDATES, steady):
        row = engine.train_one_epoch(trainer, 0, progress)
    return run, trainer, row


def test_the_sync_debug_mode_raises_on_a_host_read_and_a_pageable_copy():
    """What the tests below rely on: the mode catches `.item()` and a copy from pageable host memory (what
    torchvision's normalize made every batch)."""
    on_device = torch.ones(2, device="cuda")
    try:
        torch.cuda.set_sync_debug_mode("error")
        with pytest.raises(RuntimeError, match="synchroniz"):
            on_device.sum().item()
        with pytest.raises(RuntimeError, match="synchroniz"):
            torch.tensor([0.5, 0.5], device="cuda")
        on_device.add_(1)  # work queued on the device alone is fine
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("amp_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("path", list(PATHS))
def test_steady_state_training_steps_never_wait_on_the_host(
    path, amp_dtype, jpeg_folder, tmp_path, fresh_accelerator_state
):
    if path == "decode" and not device_decodes_jpeg(torch.device("cuda")):
        pytest.skip("torchvision's decode_jpeg has no working nvJPEG on this machine")
    options, route = PATHS[path]
    if path != "memory":
        options = [*options, "--dataset", "folder", "--data-dir", str(jpeg_folder)]
    steady: list[int] = []
    options = [*RECIPE, *options, "--set", f"amp_dtype={amp_dtype}", "--output", str(tmp_path)]
    run, trainer, row = one_epoch(options, steady)
    assert (run.data_path, run.decode_on) == route and run.augment_on == "device"
    bf16 = amp_dtype == "bfloat16" and torch.cuda.is_bf16_supported()
    assert run.accelerator.mixed_precision == ("bf16" if bf16 else "fp16")
    assert trainer.mixup is not None and trainer.erase is not None and trainer.ema is not None
    assert trainer.num_updates == trainer.updates_per_epoch == UPDATES and trainer.accum_steps == 2
    assert steady == list(range(WARMUP_UPDATES + 1, UPDATES + 1))  # every later update ran with the mode on
    assert math.isfinite(row["train_loss"])
    if path == "decode":  # nvJPEG decoded every image: none fell back to the host (where no sync would be checked)
        assert not trainer.train_loader.decoder.codes.any()


def _float16_linear():
    accelerator = make_accelerator(amp=True, amp_dtype="float16")
    model = torch.nn.Linear(4, 2)
    return (accelerator, *accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1)))


def test_the_float16_loss_scale_is_checkpointed_and_restored(tmp_path, fresh_accelerator_state):
    """Each update with infinite gradients is skipped and halves GradScaler's scale, as under timm's train.py; a
    resumed run goes on from the scale it had, not from 2**16 again."""
    accelerator, model, optimizer = _float16_linear()
    assert accelerator.scaler is not None
    for _ in range(2):
        accelerator.backward(model(torch.ones(1, 4, device="cuda")).sum() * float("inf"))
        optimizer.step()
        optimizer.zero_grad()
    assert optimizer.step_was_skipped and accelerator.scaler.get_scale() == 2.0**14
    scheduler = build_scheduler(get_recipe("rsb_a3"), optimizer, 10)[0]
    progress = {"epoch": 0, "step_in_epoch": 2, "num_updates": 2, "scheduler": scheduler.state_dict(), "history": []}
    path = save_checkpoint(accelerator, tmp_path, progress, None, keep=1)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator, model, optimizer = _float16_linear()
    assert accelerator.scaler.get_scale() == 2.0**16
    load_checkpoint(accelerator, path, build_scheduler(get_recipe("rsb_a3"), optimizer, 10)[0], None)
    assert accelerator.scaler.get_scale() == 2.0**14
