"""Training JPEGs decoded on the device: the workers read bytes and draw timm's crops, the device decodes and resizes.

On the per-image path with `--decode-on device` a DataLoader worker opens each training image lazily (PIL reads
only the header), draws timm's `RandomResizedCropAndInterpolation` box and interpolation with timm's own
`get_params` from the header's size, and the flip as torchvision's `RandomHorizontalFlip` draws it: the same draws,
in the same order and from the same worker random state, as the worker path (`transforms.RandomResizedCropToTensor`).
It hands over the JPEG's bytes with those draws. The training process decodes each batch with one batched
`torchvision.io.decode_jpeg` call (nvJPEG on a GPU), crops each box and resizes it to the train size with torch's
antialiased resampling, flips, and passes the uint8 batch on to the `DeviceStage` (policy, normalisation).
The decode runs one batch ahead in a thread of its own, on a CUDA stream of its own, so it overlaps the training
step; the step waits on an event, never on the host.

Images the device decoder does not take (another format than JPEG, CMYK, greyscale, progressive, or bytes that do
not end in a JPEG end-of-image marker, the mark of a truncated file) are decoded in the worker with PIL and resized
there as the worker path does; a batch mixes both. A JPEG the device decoder rejects all the same is decoded on the
host with PIL and cropped on the device. The record counts both per split (`decode_fallbacks`, over every attempt
of a resumed run). Only an image PIL cannot decode is skipped and named under the rule of `harness.data.unreadable`;
a failure of the device itself (out of memory, a CUDA or nvJPEG error) stops the run with `DeviceError`.
Evaluation keeps timm's PIL transform in the workers.
"""

from __future__ import annotations

import dataclasses
import io
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from accelerate import Accelerator
from accelerate.data_loader import skip_first_batches
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.io import ImageReadMode, decode_jpeg

from harness.data.capabilities import first_line
from harness.data.catalog import DataError
from harness.data.device import DeviceLoader, DeviceStage, batch_generator
from harness.data.transforms import RandomResizedCropToTensor, tensor_interpolation
from harness.data.unreadable import UNDECODABLE, UNREADABLE_LOG, note_unreadable
from recipes import Recipe

# Why an image was decoded in the worker instead; its code in `DeviceDecoder.codes` is its place here plus one.
# The last: a JPEG the device decoder rejected, decoded on the host instead.
FALLBACK_REASONS = (
    "png", "webp", "other format", "cmyk", "grayscale", "other mode", "progressive", "no end marker",
    "rejected by the device decoder",
)  # fmt: skip
REJECTED = FALLBACK_REASONS[-1]
# Each training image decoded elsewhere than on the device, "index<TAB>reason", beside the unreadable log in the
# run directory, so a resumed run counts the fallbacks of its earlier attempts too.
FALLBACK_LOG = "decode_fallbacks.txt"
END_OF_IMAGE = b"\xff\xd9"
# What in an error of torch's or torchvision's decode_jpeg says the device failed, not the image: CUDA errors and
# nvJPEG failing to start or to run (its statuses 5-8: allocator failure, execution failed, architecture mismatch,
# internal error). Out of memory is told apart first. Anything else (a bitstream nvJPEG rejects: its statuses 2-4,
# 9-10, an unknown chroma subsampling, a header it cannot read) is the image's, which PIL then decodes.
DEVICE_FAILURE = re.compile(
    r"CUDA error|CUDA stream|not compiled with nvJPEG|nvjpegGetProperty|Failed to (initialize nvjpeg|create)|"
    r"Failed to [\w ]+: [5-8]$|ALLOCATOR_FAILURE|EXECUTION_FAILED|ARCH_MISMATCH|INTERNAL_ERROR",
    re.IGNORECASE,
)

# Measured by tests/test_device_decode.py on scikit-learn's two photographs (JPEG quality 90, timm's boxes at 160 px).
DECODE_NOTE = (
    "training JPEGs are decoded on the device (torchvision's decode_jpeg; nvJPEG on a GPU) and their crops (timm's "
    "boxes, drawn by timm in the workers) resized there by torch's antialiased {interpolation}: on photographs the "
    "CPU's decoder gives PIL's pixels exactly and the resize differs from PIL's by a mean under 0.02 of a level of "
    "255 (uint8 resampling, CPU) and under 0.15 (float resampling, as on a GPU), at most 17 levels at sharp "
    "edges; nvJPEG's own decode differences are measured by benchmarks/gpu_check.sh. Images the device decoder does "
    "not take (PNG, CMYK, greyscale, progressive, truncated) are decoded in the workers with PIL, and JPEGs it "
    "rejects on the host with PIL, counted in decode_fallbacks"
)


# ---- when the device fails -------------------------------------------------------------------------------------------


class DeviceError(DataError):
    """The device failed while decoding training JPEGs (out of memory, a CUDA or nvJPEG error): not the images'
    fault, so none is skipped; the run stops in one line that names the error."""


def device_failure(error: BaseException) -> str | None:
    """What failed on the device, where a decode error is not the image's fault (`DEVICE_FAILURE`); None where it
    is the image's."""
    text = first_line(error)
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return f"out of memory ({type(error).__name__}: {text})"
    if DEVICE_FAILURE.search(text):
        return f"a CUDA or nvJPEG error ({type(error).__name__}: {text})"
    return None


# ---- in the workers --------------------------------------------------------------------------------------------------


def fallback_reason(image: Image.Image, data: bytes) -> str | None:
    """Why the device decoder should not take this image (None: a baseline colour JPEG, whole)."""
    if image.format != "JPEG":
        kind = (image.format or "").lower()
        return kind if kind in FALLBACK_REASONS else "other format"
    if image.mode != "RGB":
        return {"CMYK": "cmyk", "L": "grayscale"}.get(image.mode, "other mode")
    if image.info.get("progressive") or image.info.get("progression"):
        return "progressive"
    if not data.rstrip(b"\0").endswith(END_OF_IMAGE):
        return "no end marker"
    return None


@dataclass
class EncodedImage:
    """A training image for the device: its JPEG bytes and the worker's draws for it."""

    data: bytes | None  # the JPEG; collated into the batch's one byte tensor (`EncodedBatch.jpegs`)
    box: tuple[int, int, int, int]  # top, left, height, width in the decoded image
    interpolation: TF.InterpolationMode
    flip: bool
    name: str  # as the unreadable log names it
    index: int = -1  # in the dataset, for `DeviceDecoder.codes` (-1: not from a dataset)


@dataclass
class WorkerDecoded:
    """A training image the worker decoded with PIL, cropped, resized and flipped: uint8 CHW at the train size."""

    image: torch.Tensor
    reason: str
    index: int


class EncodedTrainTransform:
    """The workers' side of decoding on the device, for a dataset that hands over bytes (`takes_encoded`)."""

    takes_encoded = True

    def __init__(self, recipe: Recipe):
        self.crop = RandomResizedCropToTensor(
            recipe.img_size, recipe.scale, recipe.ratio, recipe.training_interpolation
        )
        self.hflip = recipe.hflip

    def __call__(self, data: bytes, name: str, index: int) -> EncodedImage | WorkerDecoded:
        image = Image.open(io.BytesIO(data))  # the header only: size, format, mode
        box, mode = self.crop.draw(image)
        flip = self.hflip > 0 and bool(torch.rand(1) < self.hflip)  # as RandomHorizontalFlip draws
        reason = fallback_reason(image, data)
        if reason is None:
            return EncodedImage(data, box, mode, flip, name, index)
        crop = self.crop.resize(image.convert("RGB"), box, mode)  # PIL raises here for a corrupt image
        return WorkerDecoded(TF.horizontal_flip(crop) if flip else crop, reason, index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.crop!r}, hflip={self.hflip})"


@dataclass
class EncodedBatch:
    """One batch as the workers collate it: the images for the device and those they decoded, with positions. The
    JPEGs travel as one byte tensor (`jpeg_bytes`, one shared-memory handle from the worker, not one per image)."""

    device_images: list[EncodedImage] = field(default_factory=list)  # their draws; the bytes are in jpeg_bytes
    jpeg_bytes: torch.Tensor | None = None  # uint8, the JPEGs one after another
    jpeg_sizes: list[int] = field(default_factory=list)
    device_positions: list[int] = field(default_factory=list)
    decoded: torch.Tensor | None = None  # (m, 3, S, S) uint8
    decoded_positions: list[int] = field(default_factory=list)
    fallbacks: list[tuple[int, str]] = field(default_factory=list)  # (dataset index, reason)

    def __len__(self) -> int:
        return len(self.device_positions) + len(self.decoded_positions)

    def jpegs(self) -> list[torch.Tensor]:
        """Each JPEG as a one-dimensional uint8 tensor (a view of `jpeg_bytes`), as decode_jpeg takes them."""
        return list(torch.split(self.jpeg_bytes, self.jpeg_sizes)) if self.device_images else []

    def pin_memory(self, device=None) -> EncodedBatch:
        if self.decoded is not None:
            self.decoded = self.decoded.pin_memory()
        return self

    def to(self, *args, **kwargs) -> EncodedBatch:
        """Stays on the host: the decoder moves what it needs on its own stream (decode_jpeg reads host bytes)."""
        return self


def collate_encoded(batch: list) -> tuple[EncodedBatch, torch.Tensor]:
    """Collate a training batch for the device decoder; a gap left by an undecodable image is filled with a readable
    sample of the same batch, as `collate_readable` does in training."""
    readable = [sample for sample in batch if sample is not None]
    if not readable:
        raise DataError(f"no image of a batch of {len(batch)} could be decoded; see {UNREADABLE_LOG} in the run dir")
    samples = readable + [readable[0]] * (len(batch) - len(readable))
    encoded, decoded = EncodedBatch(), []
    for position, (image, _) in enumerate(samples):
        if isinstance(image, EncodedImage):
            encoded.device_images.append(dataclasses.replace(image, data=None))
            encoded.jpeg_sizes.append(len(image.data))
            encoded.device_positions.append(position)
        else:
            decoded.append(image.image)
            encoded.decoded_positions.append(position)
            encoded.fallbacks.append((image.index, image.reason))
    if decoded:
        encoded.decoded = torch.stack(decoded)
    if encoded.device_images:
        jpegs = (image.data for image, _ in samples if isinstance(image, EncodedImage))
        encoded.jpeg_bytes = torch.frombuffer(bytearray(b"".join(jpegs)), dtype=torch.uint8)
    return encoded, torch.tensor([label for _, label in samples])


# ---- on the device ---------------------------------------------------------------------------------------------------


def _base(dataset: Dataset) -> Dataset:
    return dataset.dataset if isinstance(dataset, Subset) else dataset


class DeviceDecoder:
    """An EncodedBatch to a uint8 (n, 3, S, S) batch on `device`: one batched decode_jpeg call, then each crop
    resized (torch's antialiased resampling) and flipped. A JPEG the device decoder rejects is decoded on the host
    with PIL instead; one PIL cannot decode either is named in the unreadable log and its place taken by a readable
    image of the batch: `__call__` also returns those (gap, filler) positions, for the labels. A failure of the
    device itself raises DeviceError. `codes[i]` says why dataset image i was decoded elsewhere than on the device
    (0: it was not, or not seen); each new one is also written to the run directory's FALLBACK_LOG."""

    def __init__(self, size: int, device: torch.device, dataset: Dataset):
        if device.type == "cuda" and device.index is None:  # torchvision keeps one decoder, made for one index
            device = torch.device("cuda", torch.cuda.current_device())
        self.size, self.device, self.dataset = [size, size], device, dataset
        self.codes = np.zeros(len(_base(dataset)), dtype=np.int8)

    def __call__(self, batch: EncodedBatch) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        slots: list[torch.Tensor | None] = [None] * len(batch)
        if batch.device_images:
            for position, image in zip(batch.device_positions, self.decode(batch), strict=True):
                slots[position] = image
        if batch.decoded is not None:
            decoded = batch.decoded.to(self.device, non_blocking=True)
            for position, image in zip(batch.decoded_positions, decoded, strict=True):
                slots[position] = image
        for index, reason in batch.fallbacks:
            self._fell_back(index, reason)
        filled, gaps = _fill_gaps(slots)
        return torch.stack(filled), gaps

    def decode(self, batch: EncodedBatch) -> list[torch.Tensor | None]:
        """The batch's JPEGs cropped at the train size; None for one no decoder can read (named in the log)."""
        decoded = self.decode_all(batch)
        return [None if d is None else self.crop(d, i) for d, i in zip(decoded, batch.device_images, strict=True)]

    def decode_all(self, batch: EncodedBatch) -> list[torch.Tensor | None]:
        """The batch's whole decoded JPEGs, in one batched decode_jpeg call; None for one no decoder can read."""
        jpegs = batch.jpegs()
        try:
            return self._on_device(jpegs)
        except RuntimeError as error:  # one image the decoder rejects fails the batch: decode one by one
            self._stop_if_the_device_failed(error)
        return [self._decode_one(data, image) for data, image in zip(jpegs, batch.device_images, strict=True)]

    def _on_device(self, jpegs: torch.Tensor | list[torch.Tensor]):
        if self.device.type == "cuda":
            # decode_jpeg allocates its outputs on this thread's current stream but nvJPEG writes them on a stream
            # of its own, which does not wait for this one. Blocks freed here (the last batch's whole images) may
            # still be read by resize kernels queued on this stream; the caching allocator hands them out again at
            # once, so without this wait nvJPEG could overwrite pixels before they are read.
            torch.cuda.current_stream(self.device).synchronize()
        return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=self.device)

    def _stop_if_the_device_failed(self, error: RuntimeError) -> None:
        failure = device_failure(error)
        if failure is not None:
            raise DeviceError(
                f"decoding training JPEGs on {self.device} failed: {failure}; this is not the images' fault "
                "(none was skipped): a smaller --micro-batch or --decode-on workers avoids it"
            ) from error

    def _decode_one(self, data: torch.Tensor, image: EncodedImage) -> torch.Tensor | None:
        try:
            return self._on_device(data)
        except RuntimeError as error:
            self._stop_if_the_device_failed(error)
        return self._on_host(data, image)

    def _on_host(self, data: torch.Tensor, image: EncodedImage) -> torch.Tensor | None:
        """A JPEG the device decoder rejects, decoded by PIL as the workers decode; None where PIL cannot either."""
        try:
            with Image.open(io.BytesIO(data.numpy().tobytes())) as opened:
                decoded = TF.pil_to_tensor(opened.convert("RGB"))
        except UNDECODABLE:
            base = _base(self.dataset)
            note_unreadable(getattr(base, "unreadable_log", None), getattr(base, "split", "train"), image.name)
            return None
        self._fell_back(image.index, REJECTED)
        if self.device.type == "cuda":  # from pinned memory, so the copy does not wait for the device
            decoded = decoded.pin_memory()
        return decoded.to(self.device, non_blocking=True)

    def _fell_back(self, index: int, reason: str) -> None:
        """Count dataset image `index` as decoded elsewhere for `reason`, in `codes` and, the first time, the log."""
        code = FALLBACK_REASONS.index(reason) + 1
        if index < 0 or self.codes[index] == code:
            return
        self.codes[index] = code
        log = getattr(_base(self.dataset), "unreadable_log", None)
        if log is not None:
            with open(Path(log).with_name(FALLBACK_LOG), "a") as f:
                f.write(f"{index}\t{reason}\n")

    def crop(self, decoded: torch.Tensor, image: EncodedImage) -> torch.Tensor:
        """timm's box of a decoded image, resized to the train size and flipped as the worker drew."""
        top, left, height, width = image.box
        mode = tensor_interpolation(image.interpolation)
        crop = TF.resized_crop(decoded, top, left, height, width, self.size, interpolation=mode, antialias=True)
        return TF.horizontal_flip(crop) if image.flip else crop


def _fill_gaps(slots: list[torch.Tensor | None]) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """Each None replaced by the first readable image, as `collate_readable` fills a training batch; the
    (gap, filler) positions."""
    readable = [position for position, s in enumerate(slots) if s is not None]
    if not readable:
        raise DataError(f"no image of a batch of {len(slots)} could be decoded; see {UNREADABLE_LOG} in the run dir")
    gaps = [(position, readable[0]) for position, s in enumerate(slots) if s is None]
    return [s if s is not None else slots[readable[0]] for s in slots], gaps


class DecodingLoader(DeviceLoader):
    """A DeviceLoader whose batches arrive encoded: each is decoded by a DeviceDecoder one batch ahead, in a thread
    of its own and (on CUDA) on a stream of its own, then finished by the DeviceStage with the batch's own draws.
    The order, the length, the epochs and a mid-epoch resume are the DeviceLoader's."""

    def __init__(self, loader, stage: DeviceStage, decoder: DeviceDecoder, seed: int, rank: int, device):
        super().__init__(loader, stage, seed, rank, device)
        self.decoder = decoder
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def _decode(self, batch: EncodedBatch):
        """In the decode thread: (images, gaps, the event the images are ready at on the device, or None)."""
        if self.stream is None:
            return *self.decoder(batch), None
        with torch.cuda.stream(self.stream):
            images, gaps = self.decoder(batch)
            done = torch.cuda.Event()
            done.record(self.stream)
        return images, gaps, done

    def _finish(self, step: int, pending: Future, labels: torch.Tensor):
        images, gaps, done = pending.result()
        if done is not None:  # the step's stream waits for the decode on the device; the host does not
            current = torch.cuda.current_stream(self.device)
            current.wait_event(done)
            images.record_stream(current)
        for gap, filler in gaps:  # rare: an image the device could not decode
            labels[gap] = labels[filler]
        generator = batch_generator(self.seed, self.epoch, step, self.rank, self.device)
        return self.stage(images, generator), labels

    def batches(self, start: int = 0):
        loader = skip_first_batches(self.loader, start) if start else self.loader
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            ahead = None
            for step, (encoded, labels) in enumerate(loader, start):
                submitted = (step, pool.submit(self._decode, encoded), labels)
                if ahead is not None:
                    yield self._finish(*ahead)
                ahead = submitted
            if ahead is not None:
                yield self._finish(*ahead)


def decode_fallbacks(accelerator: Accelerator, loader) -> dict | None:
    """{"train": {reason: images}}: the distinct training images decoded elsewhere than on the device, over every
    process and, where the run directory has a FALLBACK_LOG, every attempt (None when the device did not decode).
    Every process calls it."""
    if not isinstance(loader, DecodingLoader):
        return None
    codes = torch.from_numpy(loader.decoder.codes.astype(np.int32)).to(accelerator.device)
    if accelerator.num_processes > 1:
        torch.distributed.all_reduce(codes, op=torch.distributed.ReduceOp.MAX)  # one reason per image
    codes = codes.cpu()
    log = getattr(_base(loader.decoder.dataset), "unreadable_log", None)
    if log is not None and Path(log).with_name(FALLBACK_LOG).is_file():  # earlier attempts of a resumed run
        for line in Path(log).with_name(FALLBACK_LOG).read_text().splitlines():
            index, _, reason = line.partition("\t")
            if reason in FALLBACK_REASONS and 0 <= int(index) < len(codes):
                codes[int(index)] = max(int(codes[int(index)]), FALLBACK_REASONS.index(reason) + 1)
    counts = torch.bincount(codes.long(), minlength=len(FALLBACK_REASONS) + 1).tolist()
    return {"train": {reason: counts[i + 1] for i, reason in enumerate(FALLBACK_REASONS) if counts[i + 1]}}
