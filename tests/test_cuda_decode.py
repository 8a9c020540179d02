"""Decoding training JPEGs on a GPU (nvJPEG through torchvision's decode_jpeg, in a thread and on a CUDA stream of
its own): over many batches, while the training stream keeps the GPU busy, the device's pixels are the host
decoder's for the same JPEGs and the same draws; out of memory inside the decode stops the run naming it, and no
image is blamed."""

import dataclasses
import io
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from harness.data import capabilities, decode, unreadable
from harness.data.decode import DecodingLoader, DeviceDecoder, DeviceError, EncodedTrainTransform, collate_encoded
from harness.data.device import DeviceStage
from harness.run import main
from recipes import get_recipe

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision"),
]

BATCH, BATCHES, SIZE = 32, 40, 160


class Images(list):
    """A dataset as the decoder sees one: its length, and where it logs unreadable images."""

    split = "train"
    unreadable_log = None


def smooth_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """640x480 JPEGs (quality 90, 4:2:0 as most of ImageNet) of smooth random colour fields, each unlike the others:
    decoders differ on them by a level or two, and a pixel taken from another image by tens of levels."""
    rng = np.random.default_rng(seed)
    jpegs = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        coarse.resize((640, 480), Image.BICUBIC).save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    return jpegs


def a3():
    """RSB A3's crops and flips at 160 px, nothing after them: the device stage only scales to [0, 1]."""
    recipe = get_recipe("rsb_a3")
    return dataclasses.replace(recipe, img_size=SIZE, aa=None, reprob=0.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def encoded_batches(jpegs: list[bytes], batches: int):
    """`batches` batches of BATCH, drawn by the workers' transform; consecutive batches share no JPEG, so a pixel of
    the next batch written over this one's would show. Returns the batches and every item's draws."""
    transform = EncodedTrainTransform(a3())
    out, items = [], []
    for k in range(batches):
        indices = [(k % 2) * BATCH + i for i in range(BATCH)]
        batch = []
        for index in indices:
            random.seed(k * 1000 + index)
            torch.manual_seed(k * 1000 + index)
            batch.append((transform(jpegs[index], f"{index:03d}.jpg", index), index))
        items += [item for item, _ in batch]
        out.append(collate_encoded(batch))
    return out, items


def host_crop(decoded: torch.Tensor, item) -> torch.Tensor:
    """The host decoder's pixels (libjpeg) for one item: its box resized in float as on a GPU, rounded, flipped."""
    crop = TF.resized_crop(decoded.float(), *item.box, [SIZE, SIZE], interpolation=item.interpolation, antialias=True)
    crop = crop.round().clamp(0, 255)
    return TF.horizontal_flip(crop) if item.flip else crop


def busy(matrices: tuple[torch.Tensor, torch.Tensor], times: int) -> None:
    """Queue `times` large matmuls on the current (training) stream, as a training step keeps the GPU busy."""
    a, b = matrices
    for _ in range(times):
        a = (a @ b).mul_(1e-3)


def test_device_decode_over_many_batches_under_a_busy_gpu_gives_the_host_decoders_pixels(monkeypatch):
    """The race detector for the decode stream: nvJPEG writes on a stream of its own, so without the decode thread
    waiting for its stream, blocks the allocator hands back could be overwritten before the last batch's resizes
    read them. Each crop is held back on the decode stream (a GPU sleep queued before it), so those resizes are
    still waiting when the next batch decodes. nvJPEG and libjpeg differ by a level or two on these images; a pixel
    of another image would differ by tens of levels."""
    device = torch.device("cuda", torch.cuda.current_device())
    jpegs = smooth_jpegs(2 * BATCH)
    batches, items = encoded_batches(jpegs, BATCHES)
    crop = DeviceDecoder.crop

    def held_back_crop(self, decoded, image):
        torch.cuda._sleep(2_000_000)  # on the current stream: the decode thread's
        return crop(self, decoded, image)

    monkeypatch.setattr(DeviceDecoder, "crop", held_back_crop)
    decoder = DeviceDecoder(SIZE, device, Images(jpegs))
    loader = DecodingLoader(batches, DeviceStage(a3(), device, train=True), decoder, 0, 0, device)
    matrices = (torch.randn(4096, 4096, device=device), torch.randn(4096, 4096, device=device))
    outputs = []
    for images, _ in loader.batches():
        busy(matrices, 12)
        outputs.append(images)  # kept on the device, read back after the last batch only
    torch.cuda.synchronize(device)
    assert not decoder.codes.any(), "images fell back to the host decoder: nvJPEG was not what was compared"
    got = torch.cat(outputs).mul(255).cpu()
    host = [decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB) for data in jpegs]
    expected = torch.stack([host_crop(host[int(item.name[:3])], item) for item in items])
    assert got.shape == expected.shape == (BATCH * BATCHES, 3, SIZE, SIZE)
    difference = (got - expected).abs().flatten(1)
    mean_per_image = difference.mean(1)
    far_per_image = (difference > 32).float().mean(1)
    worst = int(mean_per_image.argmax())
    assert mean_per_image.max() < 3.0, f"image {worst}: mean difference {mean_per_image[worst]:.2f} levels"
    assert far_per_image.max() < 0.005, f"{far_per_image.max():.2%} of an image's values over 32 levels off"
    assert difference.mean() < 1.5


def a_few_batches(count: int = 2):
    jpegs = smooth_jpegs(2 * BATCH, seed=1)
    batches, _ = encoded_batches(jpegs, count)
    return batches, Images(jpegs)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("Error while decoding JPEG images: CUDA out of memory. Tried to allocate 20.00 MiB"),
    ],
)
def test_out_of_memory_raised_inside_the_decode_thread_stops_the_loader_naming_it(monkeypatch, tmp_path, error):
    device = torch.device("cuda", torch.cuda.current_device())
    batches, dataset = a_few_batches()
    dataset.unreadable_log = tmp_path / unreadable.UNREADABLE_LOG

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(decode, "decode_jpeg", out_of_memory)
    decoder = DeviceDecoder(SIZE, device, dataset)
    loader = DecodingLoader(batches, DeviceStage(a3(), device, train=True), decoder, 0, 0, device)
    with pytest.raises(DeviceError, match=r"failed: out of memory \(") as raised:
        list(loader.batches())
    assert "cannot be decoded" not in str(raised.value)
    assert not dataset.unreadable_log.exists() and not decoder.codes.any()


def test_a_real_out_of_memory_in_nvjpegs_outputs_is_named_and_blames_no_image(tmp_path):
    """The caching allocator refuses decode_jpeg's output tensors (the process held to the memory it has now):
    torch's or torchvision's own error text, whatever its type, is taken for what it is."""
    device = torch.device("cuda", torch.cuda.current_device())
    batches, dataset = a_few_batches(1)
    dataset.unreadable_log = tmp_path / unreadable.UNREADABLE_LOG
    decoder = DeviceDecoder(SIZE, device, dataset)
    assert capabilities.why_no_nvjpeg(device) is None  # nvJPEG itself is set up before memory is held back
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved(device) + 2**19) / total, device)
    try:
        with pytest.raises(DeviceError, match="out of memory"):
            decoder(batches[0][0])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    assert not dataset.unreadable_log.exists() and not decoder.codes.any()


@pytest.mark.slow  # a run
def test_out_of_memory_in_the_decode_stops_a_gpu_run_in_one_line_naming_it(
    tmp_path, monkeypatch, capsys, fresh_accelerator_state
):
    root = tmp_path / "folder"
    for split, count in (("train", 32), ("val", 8)):
        for i, data in enumerate(smooth_jpegs(count, seed=2)):
            folder = root / split / "ab"[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:03d}.jpg").write_bytes(data)
    assert capabilities.why_no_nvjpeg(torch.device("cuda", torch.cuda.current_device())) is None  # planning's check
    out_of_memory = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def fail(*args, **kwargs):
        raise out_of_memory

    monkeypatch.setattr(decode, "decode_jpeg", fail)
    args = ["--recipe", "cnn_fmnist", "--dataset", "folder", "--data-dir", str(root), "--budget", "smoke",
            "--batch-size", "8", "--micro-batch", "8", "--workers", "2", "--decode-on", "device"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]  # one line, whatever else a GPU logs
    assert line.startswith("error: decoding training JPEGs on cuda") and "\n" not in line
    assert "failed: out of memory (OutOfMemoryError: CUDA out of memory" in line
    assert "cannot be decoded" not in err
    assert not list((tmp_path / "runs").glob(f"*/{unreadable.UNREADABLE_LOG}"))
