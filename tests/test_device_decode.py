"""Training JPEGs decoded on the "device" (here the CPU, the same code path): timm's crop boxes for the same draws,
images within the run record's stated tolerance of timm's PIL pipeline, PIL fallbacks and skips counted and named,
the worker path's batches whole and after a mid-epoch resume, and the refusals."""

import contextlib
import dataclasses
import io
import json
import os
import random
import signal

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from sklearn.datasets import load_sample_images
from timm.data import create_transform
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision.io import ImageReadMode, decode_jpeg

from harness import engine
from harness.build import transform_kwargs
from harness.data import SkippingImageFolder, capabilities, decode, first, unreadable
from harness.data.decode import (
    FALLBACK_REASONS,
    REJECTED,
    DeviceDecoder,
    DeviceError,
    EncodedImage,
    EncodedTrainTransform,
    WorkerDecoded,
    collate_encoded,
)
from harness.data.loader import worker_train_loader
from harness.data.route import DataRoute, DecodeError, choose_decode
from harness.data.transforms import build_transforms
from harness.preemption import EXIT_PREEMPTED
from harness.run import main, parse_args
from recipes import get_recipe
from tests.conftest import only_summary

CPU = torch.device("cpu")
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo_jpegs() -> list[bytes]:
    """scikit-learn's two photographs and two crops of each, at JPEG quality 90 (as
    benchmarks.common.make_jpeg_folder makes)."""
    photos = [Image.fromarray(p) for p in load_sample_images().images]
    return [jpeg(p.crop(box)) for p in photos for box in [(0, 0, 640, 427), (60, 40, 560, 415), (200, 0, 500, 300)]]


def a3(**changes):
    return dataclasses.replace(get_recipe("rsb_a3"), aa=None, reprob=0.0, **changes)


def test_the_workers_draw_timms_boxes_and_the_device_stays_within_the_stated_tolerance(photo_jpegs):
    recipe = a3(img_size=160)
    timm_train = create_transform(**transform_kwargs(recipe, is_training=True, color_jitter=None, use_prefetcher=True))
    timm_crop = RandomResizedCropAndInterpolation(160, recipe.scale, recipe.ratio, "bicubic")
    ours, items, expected = EncodedTrainTransform(recipe), [], []
    for k in range(48):
        data, pil = photo_jpegs[k % len(photo_jpegs)], Image.open(io.BytesIO(photo_jpegs[k % len(photo_jpegs)]))
        random.seed(k)
        box = timm_crop.get_params(pil.convert("RGB"), timm_crop.scale, timm_crop.ratio)
        random.seed(k)
        torch.manual_seed(k)
        expected.append(torch.as_tensor(timm_train(pil.convert("RGB"))))
        random.seed(k)
        torch.manual_seed(k)
        items.append((ours(data, f"photo{k}", k), 0))
        assert isinstance(items[-1][0], EncodedImage) and items[-1][0].box == box  # timm's box for the same draws
    assert 0 < sum(item.flip for item, _ in items) < len(items)
    batch, _ = collate_encoded(items)
    images, gaps = DeviceDecoder(160, CPU, list(range(48)))(batch)
    difference = (images.int() - torch.stack(expected).int()).abs().float()
    # DECODE_NOTE: the CPU's decoder gives PIL's pixels, the resize a mean under 0.02 of a level, at most 17.
    assert not gaps and images.shape == (48, 3, 160, 160) and images.dtype == torch.uint8
    assert difference.mean() < 0.02 and difference.max() <= 17
    # ... and under 0.15 with the float resampling a GPU runs, on the same decoded pixels and boxes.
    floats = []
    for item, _ in items:
        decoded = decode_jpeg(torch.frombuffer(bytearray(item.data), dtype=torch.uint8), mode=ImageReadMode.RGB).float()
        crop = TF.resized_crop(decoded, *item.box, [160, 160], interpolation=item.interpolation, antialias=True)
        floats.append(TF.horizontal_flip(crop) if item.flip else crop)
    float_difference = (torch.stack(floats).round().clamp(0, 255) - torch.stack(expected).float()).abs()
    assert float_difference.mean() < 0.15 and float_difference.max() <= 17


@pytest.fixture
def mixed_folder(tmp_path, photo_jpegs):
    """Two classes of 16 JPEGs each; among them a PNG, a CMYK, a progressive and a greyscale JPEG, and one JPEG cut
    short (no end marker: decoded by PIL in the worker, which fails on it)."""
    root, photo = tmp_path / "mixed", Image.open(io.BytesIO(photo_jpegs[1])).convert("RGB")
    for split, count in (("train", 32), ("val", 4)):
        for i in range(count):
            folder = root / split / "ab"[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:03d}.jpg").write_bytes(jpeg(photo.crop((7 * i, 5 * i, 7 * i + 96, 5 * i + 72))))
    train = root / "train"
    odd = {"a/010.png": None, "a/012.jpg": "CMYK", "b/013.jpg": "progressive", "b/015.jpg": "L", "b/017.jpg": "cut"}
    for name, kind in odd.items():
        source = train / name.replace(".png", ".jpg")
        image = Image.open(source).convert("RGB")
        if kind is None:
            source.unlink()
            image.save(train / name)
        elif kind == "cut":
            source.write_bytes(source.read_bytes()[:1500])
        else:
            source.write_bytes(jpeg(image, progressive=True) if kind == "progressive" else jpeg(image.convert(kind)))
    return root, train / "b" / "017.jpg"


def test_png_cmyk_progressive_grey_and_corrupt_images_fall_back_or_are_skipped_with_nothing_lost(mixed_folder):
    root, cut = mixed_folder
    recipe = a3(img_size=48, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0)  # no random draws: comparable
    decoding = SkippingImageFolder(root / "train", EncodedTrainTransform(recipe))
    per_image = SkippingImageFolder(root / "train", build_transforms(recipe, 3, aa_in_workers=False)[0])
    items = [decoding[i] for i in range(len(decoding))]
    reasons = {decoding.samples[i][0].split("train/")[1]: x[0].reason for i, x in enumerate(items)
               if x is not None and isinstance(x[0], WorkerDecoded)}  # fmt: skip
    assert reasons == {"a/010.png": "png", "a/012.jpg": "cmyk", "b/013.jpg": "progressive", "b/015.jpg": "grayscale"}
    assert items[decoding.samples.index((str(cut), 1))] is None  # PIL fails on it in the worker: skipped
    decoder = DeviceDecoder(48, CPU, decoding)
    images, gaps = decoder(collate_encoded(items)[0])
    # Every readable image arrives, device-decoded or not, as the worker path makes it.
    readable = [i for i, item in enumerate(items) if item is not None]
    assert not gaps and torch.equal(images[: len(readable)], torch.stack([per_image[i][0] for i in readable]))
    fell_back = {i for i, item in enumerate(items) if item is not None and isinstance(item[0], WorkerDecoded)}
    assert set(np.flatnonzero(decoder.codes)) == fell_back and len(fell_back) == 4


@pytest.mark.slow
def test_the_record_counts_the_fallbacks_and_names_the_skipped_image(mixed_folder, tmp_path, monkeypatch):
    root, cut = mixed_folder
    monkeypatch.setattr(unreadable, "UNREADABLE_LIMIT", 0.05)  # 1 of 32 images
    args = ["--recipe", "cnn_fmnist", "--dataset", "folder", "--data-dir", str(root), "--budget", "smoke",
            "--batch-size", "8", "--workers", "2", "--decode-on", "device"]  # fmt: skip
    args += ["--output", str(tmp_path / "runs")]
    assert main(args) == 0
    summary = only_summary(tmp_path / "runs")
    assert summary["decode_on"] == "device" and summary["skipped_images"] == {"train": [str(cut)]}
    assert summary["decode_fallbacks"] == {"train": {"png": 1, "cmyk": 1, "grayscale": 1, "progressive": 1}}
    assert any(note.startswith("training JPEGs are decoded on the device") for note in summary["notices"])
    assert summary["train_samples"] == 32
    saved = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert saved["decode_on"] == "device"  # a resume re-plans with it
    assert parse_args(["--resume", str(next((tmp_path / "runs").iterdir()))]).decode_on == "device"


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, photo_jpegs):
    root = tmp_path_factory.mktemp("photos")
    photos = [Image.open(io.BytesIO(data)).convert("RGB") for data in photo_jpegs]
    for i in range(48):
        folder = root / "train" / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.jpg").write_bytes(
            jpeg(photos[i % len(photos)].crop((3 * i, 2 * i, 3 * i + 160, 2 * i + 120)))
        )
    return root / "train"


def epoch_batches(loader, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    random.seed(0)
    torch.manual_seed(0)  # the workers' seeds
    loader.set_epoch(1)
    batches = loader.skip_first_batches(start) if start else iter(loader)
    return [(x.clone(), y.clone()) for x, y in batches]


def test_the_same_samples_and_draws_as_the_worker_path_whole_and_after_a_mid_epoch_resume(photo_folder):
    from harness.accelerator import make_accelerator

    recipe = a3(img_size=32)  # timm's random crops and flips, drawn in two workers
    accelerator = make_accelerator(amp=False)
    per_image = first(SkippingImageFolder(photo_folder, build_transforms(recipe, 3, aa_in_workers=False)[0]), 48)
    decoding = first(SkippingImageFolder(photo_folder, EncodedTrainTransform(recipe)), 48)
    loaders = {
        "workers": worker_train_loader(accelerator, recipe, per_image, 8, 2, seed=3),
        "device": worker_train_loader(accelerator, recipe, decoding, 8, 2, seed=3, decode_on_device=True),
    }
    whole = {name: epoch_batches(loader) for name, loader in loaders.items()}
    resumed = {name: epoch_batches(loader, start=2) for name, loader in loaders.items()}
    assert len(whole["device"]) == 6 and len(resumed["device"]) == 4
    for ours, theirs in [(whole["device"], whole["workers"]), (resumed["device"], resumed["workers"])]:
        for (x, y), (tx, ty) in zip(ours, theirs, strict=True):
            assert torch.equal(y, ty) and torch.equal(x, tx)  # the CPU's decoder gives PIL's pixels
    for name in loaders:  # the same samples in the same batches after the resume
        assert [y.tolist() for _, y in resumed[name]] == [y.tolist() for _, y in whole[name][2:]]


def test_memory_path_and_arrays_have_nothing_to_decode_and_device_is_refused_there_in_one_line(tmp_path, capsys):
    recipe = get_recipe("rsb_a3")
    assert choose_decode("auto", DataRoute("memory", "device"), recipe, True, 3, CPU) is None
    assert choose_decode("auto", DataRoute("workers", "device"), recipe, False, 3, CPU) is None
    assert choose_decode("auto", DataRoute("workers", "device"), recipe, True, 3, CPU) == "workers"  # no CUDA here
    assert choose_decode("device", DataRoute("workers", "device"), recipe, True, 3, CPU) == "device"
    assert choose_decode("auto", DataRoute("workers", "workers"), recipe, True, 3, CPU) == "workers"
    for extra in (["--loader", "memory"], ["--loader", "workers"]):
        out = tmp_path / "runs"
        args = ["--recipe", "rsb_a3", "--dataset", "digits", "--budget", "smoke", "--decode-on", "device", *extra]
        assert main([*args, "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --decode-on device cannot run rsb_a3: ") and not out.exists()
        assert err[0].endswith("; use --decode-on auto or workers")
    with pytest.raises(DecodeError, match="the workers run PIL augmentations"):  # the policy in the workers
        choose_decode("device", DataRoute("workers", "workers"), recipe, True, 3, CPU)


def no_header_data(data: bytes) -> bytes:
    """A JPEG whose header PIL reads (size, format, mode) but whose image data is gone: no decoder can decode it."""
    return data[: data.index(b"\xff\xda")] + b"\xff\xd9"


@pytest.fixture
def encoded_batch(photo_jpegs, tmp_path):
    """Six photographs for the device, the fourth with its image data cut off, from a folder-like dataset that logs
    unreadable images in tmp_path; and that dataset."""
    recipe = a3(img_size=48)
    datas = [photo_jpegs[k] for k in range(6)]
    datas[3] = no_header_data(datas[3])
    transform = EncodedTrainTransform(recipe)
    random.seed(0)
    items = [(transform(data, f"photo{k}.jpg", k), k) for k, data in enumerate(datas)]
    assert all(isinstance(item, EncodedImage) for item, _ in items)  # the worker sees nothing wrong in the headers
    dataset = SkippingImageFolder.__new__(SkippingImageFolder)
    dataset.samples, dataset.split, dataset.unreadable_log = [(f"photo{k}.jpg", 0) for k in range(6)], "train", None
    dataset.unreadable_log = tmp_path / "unreadable.txt"
    return collate_encoded(items)[0], dataset


def rejecting(rejected: set[int], error: Exception, real=decode_jpeg):
    """decode_jpeg as a device decoder that fails on the images whose byte counts are in `rejected` (and on any
    batch holding one) with `error`."""

    def fake(data, **kwargs):
        sizes = {len(t) for t in data} if isinstance(data, list) else {len(data)}
        if sizes & rejected:
            raise error
        return real(data, **kwargs)

    return fake


def test_a_jpeg_the_device_decoder_rejects_is_decoded_on_the_host_and_counted(encoded_batch, monkeypatch):
    batch, dataset = encoded_batch
    expected, gaps = DeviceDecoder(48, CPU, dataset)(batch)  # the CPU's decoder gives PIL's pixels
    assert gaps == [(3, 0)]  # the image without data: neither decoder reads it
    second = batch.jpeg_sizes[1]
    nvjpeg_rejects = RuntimeError("Error while decoding JPEG images: Failed to decode batch: 4")  # JPEG_NOT_SUPPORTED
    monkeypatch.setattr(decode, "decode_jpeg", rejecting({second}, nvjpeg_rejects))
    decoder = DeviceDecoder(48, CPU, dataset)
    images, gaps = decoder(batch)
    assert gaps == [(3, 0)] and torch.equal(images, expected)  # decoded by PIL on the host, cropped as the device
    assert decoder.codes.tolist() == [0, FALLBACK_REASONS.index(REJECTED) + 1, 0, 0, 0, 0]
    assert unreadable.unreadable_images(dataset.unreadable_log) == {"train": ["photo3.jpg"]}  # PIL fails on it too
    log = dataset.unreadable_log.with_name(decode.FALLBACK_LOG).read_text()
    assert log == f"1\t{REJECTED}\n"


DEVICE_FAILURES = [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory"),
    (RuntimeError("Error while decoding JPEG images: CUDA out of memory. Tried to allocate 20 MiB"), "out of memory"),
    (RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be"), "CUDA error"),
    (RuntimeError("Error while decoding JPEG images: Failed to decode batch: 6"), "nvJPEG error"),  # EXECUTION_FAILED
    (RuntimeError("Error while decoding JPEG images: Failed to initialize nvjpeg with hardware backend: 7"), "nvJPEG"),
]


@pytest.mark.parametrize(("error", "named"), DEVICE_FAILURES)
def test_a_device_failure_stops_the_decode_with_its_name_and_blames_no_image(encoded_batch, monkeypatch, error, named):
    batch, dataset = encoded_batch
    monkeypatch.setattr(decode, "decode_jpeg", rejecting({batch.jpeg_sizes[1]}, error))
    decoder = DeviceDecoder(48, CPU, dataset)
    with pytest.raises(DeviceError) as raised:
        decoder(batch)
    message = str(raised.value)
    assert named in message and "not the images' fault" in message and "\n" not in message
    assert "cannot be decoded" not in message and isinstance(raised.value, unreadable.DataError)  # one line, exit 2
    assert not dataset.unreadable_log.exists() and not decoder.codes.any()


@pytest.mark.slow
def test_out_of_memory_in_the_decode_stops_the_run_in_one_line_naming_it(mixed_folder, tmp_path, monkeypatch, capsys):
    root, cut = mixed_folder
    cut.unlink()  # every image readable
    out_of_memory = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(decode, "decode_jpeg", rejecting(set(range(10**7)), out_of_memory))
    args = ["--recipe", "cnn_fmnist", "--dataset", "folder", "--data-dir", str(root), "--budget", "smoke",
            "--batch-size", "8", "--workers", "0", "--decode-on", "device"]  # fmt: skip
    args += ["--output", str(tmp_path / "runs")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: decoding training JPEGs on cpu failed: out of memory ("), err
    assert "cannot be decoded" not in err[0]
    assert not list((tmp_path / "runs").glob(f"*/{unreadable.UNREADABLE_LOG}"))  # no image blamed


def test_decode_on_device_without_a_working_nvjpeg_is_refused_when_the_run_is_planned(
    mixed_folder, tmp_path, monkeypatch, capsys
):
    root, _ = mixed_folder
    no_nvjpeg = RuntimeError("decode_jpegs_cuda: torchvision not compiled with nvJPEG support")
    # A machine with a GPU whose torchvision has no nvJPEG (this one has no GPU: CUDA is faked as far as planning).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(capabilities, "decode_jpeg", rejecting(set(range(10**7)), no_nvjpeg))
    capabilities._nvjpeg_failure.cache_clear()
    try:
        args = ["--recipe", "cnn_fmnist", "--dataset", "folder", "--data-dir", str(root), "--budget", "smoke",
                "--decode-on", "device", "--output", str(tmp_path / "runs")]  # fmt: skip
        assert main(args) == 2
        auto = choose_decode("auto", DataRoute("workers", None), a3(), True, 3, torch.device("cuda", 0))
    finally:
        capabilities._nvjpeg_failure.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --decode-on device cannot run cnn_fmnist: torchvision's decode_jpeg (nvJPEG) does not run on cuda:0 "
        f"(RuntimeError: {no_nvjpeg}); use --decode-on auto or workers"
    ]
    assert not (tmp_path / "runs").exists() and auto == "workers"


@pytest.mark.slow
def test_a_resumed_run_counts_the_fallbacks_of_its_earlier_attempt(mixed_folder, tmp_path, monkeypatch):
    root, cut = mixed_folder
    cut.unlink()  # 31 training images, 4 of them decoded in the workers; 3 batches of 8 in the one epoch
    args = ["--recipe", "cnn_fmnist", "--dataset", "folder", "--data-dir", str(root), "--budget", "smoke",
            "--epochs", "1", "--batch-size", "8", "--workers", "2", "--decode-on", "device", "--seed", "0"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "whole")]) == 0
    whole = only_summary(tmp_path / "whole")["decode_fallbacks"]
    count_update = engine.count_update

    def stop_after_the_second_update(trainer):  # as a scheduler's SIGUSR1 would, between two updates
        count_update(trainer)
        if trainer.num_updates == 2:
            os.kill(os.getpid(), signal.SIGUSR1)

    monkeypatch.setattr(engine, "count_update", stop_after_the_second_update)
    assert main([*args, "--output", str(tmp_path / "resumed")]) == EXIT_PREEMPTED
    monkeypatch.setattr(engine, "count_update", count_update)
    (run_dir,) = (tmp_path / "resumed").iterdir()
    assert main(["--resume", str(run_dir)]) == 0  # the last batch only
    assert only_summary(tmp_path / "resumed")["decode_fallbacks"] == whole and sum(whole["train"].values()) >= 2
