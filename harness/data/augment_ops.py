"""The image ops of timm's RandAugment, AutoAugment and AugMix policies on uint8 batches, one argument per image.

Each op computes what the op of the same name in `timm.data.auto_augment` computes on a PIL image, for every image
of an N x 3 x H x W uint8 batch at once, with its argument (the value timm's level function returns) given per image
as an N-element tensor. PIL's arithmetic is kept where it decides the 8-bit result: point tables (`Image.point`),
`Image.blend` (float32, truncated), the ITU-R 601-2 grey conversion in 16-bit fixed point, the SMOOTH filter's
rounding with borders kept, the box blurs behind `GaussianBlur`, and the affine transform's pixel-centre coordinates,
fill test and truncation. The affine resampling itself is torch's `grid_sample`, which PIL's bilinear filter matches
up to float rounding and PIL's bicubic filter (a = -1) only approximately (torch's a = -0.75).

Every op works image by image on the batch it is given, and reads nothing back from the device:
`harness.data.autoaugment.apply_layer` runs each on the whole batch and keeps it where an image drew it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

_TRUNCATION_SLACK = 2e-3  # grid_sample's float32 coordinates are ~1e-5 px off PIL's float64 ones (see `affine`)
LEVEL_DENOM = 10.0  # timm's magnitude scale: level / 10 is the fraction of an op's range


def per_image(values: torch.Tensor) -> torch.Tensor:
    """N values as N x 1 x 1 x 1, to broadcast over a batch of images or N x 1 x 1 over point tables."""
    return values.view(-1, 1, 1, 1)


def per_table(values: torch.Tensor) -> torch.Tensor:
    """N values as N x 1 x 1, to broadcast over N x C x 256 point tables."""
    return values.view(-1, 1, 1)


def _divide(numerator: float, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, correctly rounded as in C (torch computes number / tensor as number * (1 / tensor))."""
    return torch.full_like(denominator, numerator) / denominator


def _levels(device: torch.device) -> torch.Tensor:
    return torch.arange(256, device=device).view(1, 1, 256)


class Pixels:
    """A uint8 batch and what several ops derive from it, each computed once: float32 pixels and PIL's grey image."""

    def __init__(self, images: torch.Tensor):
        self.u8 = images
        self._float: torch.Tensor | None = None
        self._grey: torch.Tensor | None = None

    @property
    def float(self) -> torch.Tensor:
        if self._float is None:
            self._float = self.u8.float()
        return self._float

    @property
    def grey(self) -> torch.Tensor:
        """PIL's RGB -> L conversion, N x 1 x H x W: (19595 R + 38470 G + 7471 B + 2^15) >> 16, computed in
        float32, where every partial sum is a whole number below 2^24 and so exact."""
        if self._grey is None:
            r, g, b = self.float.unbind(1)
            weighted = r * 19595.0 + g * 38470.0 + b * 7471.0 + 32768.0
            self._grey = weighted.mul_(1 / 65536).floor_().unsqueeze(1)
        return self._grey


def blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's `Image.blend(degenerate, image, factor)` (how ImageEnhance applies a factor): degenerate +
    factor * (image - degenerate) in float32, clipped to [0, 255] and truncated; factor broadcasts per image."""
    degenerate, image = degenerate.float(), image.float()
    return degenerate.add(factor.float() * (image - degenerate)).clamp_(0, 255).to(torch.uint8)


def apply_lut(images: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """PIL's `Image.point(lut)` per image: `lut` is N x C x 256 (or N x 1 x 256, the same table for every channel)."""
    n, c = images.shape[:2]
    index = images.flatten(2).long()
    return lut.to(torch.uint8).expand(n, c, 256).gather(2, index).view_as(images)


# ---- point tables (N x C x 256, or 1 or N x 1 x 256), as timm's ops build them through ImageOps and ImageEnhance ----


def invert_lut(pixels: Pixels, _arg: torch.Tensor) -> torch.Tensor:
    return 255 - _levels(pixels.u8.device)


def posterize_lut(pixels: Pixels, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits: 8 or more keep the image (timm returns it), 0 or fewer keep nothing (a black image,
    `i & ~(2 ** (8 - bits) - 1)`, where Pillow 13 refuses bits below 1 with a ValueError)."""
    shift = per_table(8 - bits).clamp(0, 8).long()
    levels = _levels(pixels.u8.device)
    return (levels >> shift) << shift


def solarize_lut(pixels: Pixels, threshold: torch.Tensor) -> torch.Tensor:
    levels = _levels(pixels.u8.device)
    return torch.where(levels < per_table(threshold), levels, 255 - levels)


def solarize_add_lut(pixels: Pixels, add: torch.Tensor, threshold: int = 128) -> torch.Tensor:
    levels = _levels(pixels.u8.device)
    added = (levels + per_table(add).long()).clamp(max=255)
    return torch.where(levels < threshold, added, levels)


def brightness_lut(pixels: Pixels, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Brightness: a blend with black."""
    levels = _levels(pixels.u8.device)
    return blend(torch.zeros_like(levels), levels, per_table(factor))


def contrast_lut(pixels: Pixels, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Contrast: a blend with the mean of the grey image, rounded to an integer (half up)."""
    count = pixels.u8.shape[-2] * pixels.u8.shape[-1]
    total = pixels.grey.sum((1, 2, 3), dtype=torch.float64).long()
    mean = torch.div(2 * total + count, 2 * count, rounding_mode="floor")  # int(total / count + 0.5)
    return blend(per_table(mean), _levels(pixels.u8.device), per_table(factor))


def autocontrast_lut(pixels: Pixels, _arg: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast per channel: lowest level to 0, highest to 255, by PIL's float64 table
    int(i * scale + offset); a channel with a single level is kept as it is."""
    low = pixels.u8.amin(dim=(2, 3)).double().unsqueeze(-1)  # PIL's table is float64 arithmetic
    high = pixels.u8.amax(dim=(2, 3)).double().unsqueeze(-1)
    scale = _divide(255.0, (high - low).clamp(min=1))
    offset = -low * scale
    levels = _levels(pixels.u8.device)
    stretched = (levels * scale + offset).trunc().clamp(0, 255).long()
    return torch.where(high > low, stretched, levels)


# ---- whole-image ops (N x 3 x H x W uint8) ---------------------------------------------------------------------------


def equalize(pixels: Pixels, _arg: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize per channel; torchvision's batched kernel computes PIL's table."""
    return TF.equalize(pixels.u8)


def color(pixels: Pixels, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Color: a blend with the grey image."""
    return blend(pixels.grey, pixels.float, per_image(factor))


def desaturate(pixels: Pixels, factor: torch.Tensor) -> torch.Tensor:
    """timm's `desaturate`: ImageEnhance.Color with min(1, max(0, 1 - factor))."""
    return color(pixels, (1 - factor).clamp(0, 1))


def sharpness(pixels: Pixels, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Sharpness: a blend with PIL's SMOOTH filter (weights 1, centre 5, / 13, rounded half up), which
    keeps the border pixels, so the blend changes only the interior. The weighted sums are whole numbers, so
    sum / 13 is never a half and the rounding is exact."""
    image = pixels.float
    rows = image[..., :-2] + image[..., 1:-1]
    rows += image[..., 2:]
    smooth = rows[..., :-2, :] + rows[..., 1:-1, :]
    smooth += rows[..., 2:, :]
    inner = image[..., 1:-1, 1:-1]
    smooth.add_(inner, alpha=4).mul_(1 / 13).add_(0.5).floor_()
    out = pixels.u8.clone()
    out[..., 1:-1, 1:-1] = blend(smooth, inner, per_image(factor))
    return out


def gaussian_blur(pixels: Pixels, radius: torch.Tensor, largest: float = 2.0) -> torch.Tensor:
    """ImageFilter.GaussianBlur(radius) as PIL computes it: three box blurs of a fractional radius along rows, then
    three along columns, in 24-bit fixed point with 8-bit results between passes. `largest` bounds the radius (timm's
    levels reach 2.0), which bounds the number of taps."""
    box = _box_radius(radius.float())
    reach = math.floor(_box_reach(largest))
    whole = box.trunc()
    inner = _divide(16777216.0, box * 2 + 1).trunc().long()  # (UINT32)(1 << 24) / (radius * 2 + 1)
    outer = torch.div(16777216 - (whole.long() * 2 + 1) * inner, 2, rounding_mode="floor")
    x = pixels.u8.long()
    for dim in (3, 2):
        for _ in range(3):
            x = _box_pass(x, dim, whole, inner, outer, reach)
    return x.to(torch.uint8)


def _box_radius(radius: torch.Tensor) -> torch.Tensor:
    """PIL's `_gaussian_blur_radius(radius, 3)` in its float32 and float64 steps."""
    sigma2 = radius * radius / 3
    length = torch.sqrt(12.0 * sigma2.double() + 1.0).float()
    whole = torch.floor((length.double() - 1.0) / 2.0).float()
    fraction = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2)
    fraction = fraction / (6 * (sigma2 - (whole + 1) * (whole + 1)))
    return whole + fraction


def _box_reach(radius: float) -> float:
    """The same in Python floats, for the host-side bound on the box radius."""
    sigma2 = radius * radius / 3
    whole = math.floor((math.sqrt(12.0 * sigma2 + 1.0) - 1.0) / 2.0)
    return whole + (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2) / (6 * (sigma2 - (whole + 1) ** 2))


def _box_pass(x, dim: int, whole, inner, outer, reach: int) -> torch.Tensor:
    """One box-blur pass along `dim`: weights `inner` within the integer radius, `outer` on the next pixel either
    side, edge pixels repeated beyond the border, (sum + 2^23) >> 24."""
    size = x.shape[dim]
    positions = torch.arange(size, device=x.device)
    total = torch.zeros_like(x)
    for offset in range(-reach - 1, reach + 2):
        weight = torch.where(whole >= abs(offset), inner, torch.where(whole + 1 == abs(offset), outer, 0))
        total += per_image(weight) * x.index_select(dim, (positions + offset).clamp(0, size - 1))
    return (total + (1 << 23)) >> 24


# ---- affine ops: PIL's inverse maps (a, b, c, d, e, f), source = (a x + b y + c, d x + e y + f) at pixel centres ---


def rotate_matrix(degrees: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Image.rotate(degrees) about the centre, without expanding: PIL's matrix, rounded to 15 decimals as PIL does."""
    angle = -torch.deg2rad(degrees)
    cos, sin = torch.round(torch.cos(angle), decimals=15), torch.round(torch.sin(angle), decimals=15)
    cx, cy = width / 2, height / 2
    c = cos * -cx + sin * -cy + 0.0 + cx
    f = -sin * -cx + cos * -cy + 0.0 + cy
    return torch.stack((cos, sin, c, -sin, cos, f), dim=1)


def inverse_map(like: torch.Tensor, **entries) -> torch.Tensor:
    """N inverse maps, shaped and typed like `like`: the identity with the named entries (a..f) replaced. Constants
    are filled in on the device (a tensor made from host values would be a copy the device stream waits for)."""
    values = dict(a=1.0, b=0.0, c=0.0, d=0.0, e=1.0, f=0.0) | entries
    return torch.stack([v if torch.is_tensor(v) else torch.full_like(like, v) for v in values.values()], dim=1)


def shear_x_matrix(factor, height: int, width: int) -> torch.Tensor:
    return inverse_map(factor, b=factor)


def shear_y_matrix(factor, height: int, width: int) -> torch.Tensor:
    return inverse_map(factor, d=factor)


def translate_x_matrix(pixels, height: int, width: int) -> torch.Tensor:
    return inverse_map(pixels, c=pixels)


def translate_y_matrix(pixels, height: int, width: int) -> torch.Tensor:
    return inverse_map(pixels, f=pixels)


def translate_x_rel_matrix(fraction, height: int, width: int) -> torch.Tensor:
    return inverse_map(fraction, c=fraction * width)


def translate_y_rel_matrix(fraction, height: int, width: int) -> torch.Tensor:
    return inverse_map(fraction, f=fraction * height)


def affine(pixels: Pixels, matrix: torch.Tensor, fill: torch.Tensor, mode: str) -> torch.Tensor:
    """Image.transform(size, AFFINE, matrix, resample, fillcolor=fill) per image (`matrix` N x 6, `fill` 3 values).

    As PIL: source points at output pixel centres in float64, the fill colour where a source point falls outside
    the image, edge pixels repeated for the filter's taps near the border, results truncated to 8 bits. The filter
    is torch's `grid_sample` (`mode` nearest, bilinear or bicubic)."""
    n, c, height, width = pixels.u8.shape
    x, y = (_nearest_points if mode == "nearest" else _source_points)(matrix, height, width)
    outside = ((x < 0) | (x >= width) | (y < 0) | (y >= height)).unsqueeze(1)
    grid = torch.stack((x.mul_(2 / width).sub_(1), y.mul_(2 / height).sub_(1)), dim=-1).float()
    sampled = F.grid_sample(pixels.float, grid, mode=mode, padding_mode="border", align_corners=False)
    sampled = torch.where(outside, fill.to(sampled).view(1, c, 1, 1), sampled)
    # PIL's filters truncate. Where PIL's float64 value is a whole number (flat areas, sources on pixel centres),
    # grid_sample's float32 one can fall a hair below it; the slack keeps those whole.
    return sampled.add_(_TRUNCATION_SLACK).clamp_(0, 255).to(torch.uint8)


def _source_points(matrix: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """N x H x W source points, as PIL computes them: a (x + 0.5) + b (y + 0.5) + c, ..."""
    dtype = torch.float64  # as PIL computes them
    a, b, c, d, e, f = (per_table(m).to(dtype) for m in matrix.unbind(1))
    xs = (torch.arange(width, device=matrix.device, dtype=dtype) + 0.5).view(1, 1, width)
    ys = (torch.arange(height, device=matrix.device, dtype=dtype) + 0.5).view(1, height, 1)
    return (b * ys + c) + a * xs, (e * ys + f) + d * xs


def _nearest_points(matrix: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The centres of the pixels PIL's nearest-neighbour affine transform takes: floor of the float64 source point
    for a pure scale/translation, else 16.16 fixed point (FIX(v) = floor(v * 65536 + 0.5), pixel = value >> 16)."""
    x, y = _source_points(matrix, height, width)
    a, b, c, d, e, f = (per_table(m).double() for m in matrix.unbind(1))
    fixed = [torch.floor(v * 65536 + 0.5).long() for v in (a, b, c + a * 0.5 + b * 0.5, d, e, f + d * 0.5 + e * 0.5)]
    rows = torch.arange(height, device=matrix.device).view(1, -1, 1)
    cols = torch.arange(width, device=matrix.device).view(1, 1, -1)
    fixed_x = ((fixed[2] + rows * fixed[1]) + cols * fixed[0]) >> 16
    fixed_y = ((fixed[5] + rows * fixed[4]) + cols * fixed[3]) >> 16
    scaling = (b == 0) & (d == 0)
    x = torch.where(scaling, x.floor_(), fixed_x.to(x))
    y = torch.where(scaling, y.floor_(), fixed_y.to(y))
    return x.add_(0.5), y.add_(0.5)


# ---- the table timm's op names map to ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """How one of timm's ops runs on a batch: `kind` "lut" (fn gives point tables), "image" (fn gives images) or
    "affine" (fn gives inverse maps, from the argument and the image height and width)."""

    kind: str
    fn: Callable


KERNELS: dict[str, Kernel] = {
    "AutoContrast": Kernel("lut", autocontrast_lut),
    "Equalize": Kernel("image", equalize),
    "Invert": Kernel("lut", invert_lut),
    "Rotate": Kernel("affine", rotate_matrix),
    "Posterize": Kernel("lut", posterize_lut),
    "PosterizeIncreasing": Kernel("lut", posterize_lut),
    "PosterizeOriginal": Kernel("lut", posterize_lut),
    "Solarize": Kernel("lut", solarize_lut),
    "SolarizeIncreasing": Kernel("lut", solarize_lut),
    "SolarizeAdd": Kernel("lut", solarize_add_lut),
    "Color": Kernel("image", color),
    "ColorIncreasing": Kernel("image", color),
    "Contrast": Kernel("lut", contrast_lut),
    "ContrastIncreasing": Kernel("lut", contrast_lut),
    "Brightness": Kernel("lut", brightness_lut),
    "BrightnessIncreasing": Kernel("lut", brightness_lut),
    "Sharpness": Kernel("image", sharpness),
    "SharpnessIncreasing": Kernel("image", sharpness),
    "ShearX": Kernel("affine", shear_x_matrix),
    "ShearY": Kernel("affine", shear_y_matrix),
    "TranslateX": Kernel("affine", translate_x_matrix),
    "TranslateY": Kernel("affine", translate_y_matrix),
    "TranslateXRel": Kernel("affine", translate_x_rel_matrix),
    "TranslateYRel": Kernel("affine", translate_y_rel_matrix),
    "Desaturate": Kernel("image", desaturate),
    "GaussianBlur": Kernel("image", gaussian_blur),
    "GaussianBlurRand": Kernel("image", gaussian_blur),  # the radius is drawn with the op's other draws
}


def run_op(name: str, images: torch.Tensor, arg: torch.Tensor, fill=(128, 128, 128), mode: str = "bicubic"):
    """timm's op `name` on every image of the batch with its argument `arg` (N values): the whole batch, for tests
    and for callers that apply a single op."""
    kernel, pixels = KERNELS[name], Pixels(images)
    if kernel.kind == "lut":
        return apply_lut(images, kernel.fn(pixels, arg))
    if kernel.kind == "image":
        return kernel.fn(pixels, arg)
    matrix = kernel.fn(arg.double(), images.shape[-2], images.shape[-1])
    return affine(pixels, matrix, torch.tensor(fill, device=images.device), mode)


# ---- timm's level functions (`LEVEL_TO_ARG`), per image --------------------------------------------------------------


def _negated(value: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
    return torch.where(negate, -value, value)


def _posterize_bits(m: torch.Tensor) -> torch.Tensor:
    return (m / LEVEL_DENOM * 4).trunc()


def _solarize_threshold(m: torch.Tensor) -> torch.Tensor:
    return (m / LEVEL_DENOM * 256).trunc().clamp(max=256)


def _min_max(low: float, high: float) -> Callable:
    span = high - low
    return lambda m, negate, hp: (low + span * (m / LEVEL_DENOM)).clamp(low, high)


LEVELS: dict[str, Callable] = {
    "Rotate": lambda m, negate, hp: _negated(m / LEVEL_DENOM * 30.0, negate),
    "Posterize": lambda m, negate, hp: _posterize_bits(m),
    "PosterizeIncreasing": lambda m, negate, hp: 4 - _posterize_bits(m),
    "PosterizeOriginal": lambda m, negate, hp: _posterize_bits(m) + 4,
    "Solarize": lambda m, negate, hp: _solarize_threshold(m),
    "SolarizeIncreasing": lambda m, negate, hp: 256 - _solarize_threshold(m),
    "SolarizeAdd": lambda m, negate, hp: (m / LEVEL_DENOM * 110).trunc().clamp(max=128),
    "Enhance": lambda m, negate, hp: m / LEVEL_DENOM * 1.8 + 0.1,
    "EnhanceIncreasing": lambda m, negate, hp: (1.0 + _negated(m / LEVEL_DENOM * 0.9, negate)).clamp(min=0.1),
    "Shear": lambda m, negate, hp: _negated(m / LEVEL_DENOM * 0.3, negate),
    "Translate": lambda m, negate, hp: _negated(m / LEVEL_DENOM * float(hp["translate_const"]), negate),
    "TranslateRel": lambda m, negate, hp: _negated(m / LEVEL_DENOM * hp.get("translate_pct", 0.45), negate),
    "Desaturate": _min_max(0.5, 1.0),
    "GaussianBlur": _min_max(0.1, 2.0),
    "GaussianBlurRand": _min_max(0.0, 1.0),
}
_LEVEL_OF = {
    **{name: "Enhance" for name in ("Color", "Contrast", "Brightness", "Sharpness")},
    **{f"{name}Increasing": "EnhanceIncreasing" for name in ("Color", "Contrast", "Brightness", "Sharpness")},
    "ShearX": "Shear",
    "ShearY": "Shear",
    "TranslateX": "Translate",
    "TranslateY": "Translate",
    "TranslateXRel": "TranslateRel",
    "TranslateYRel": "TranslateRel",
}
_NO_LEVEL = ("AutoContrast", "Equalize", "Invert")


def level_arg(name: str, magnitude: torch.Tensor, negate: torch.Tensor, hparams: dict) -> torch.Tensor:
    """What timm's `LEVEL_TO_ARG[name](magnitude, hparams)` returns, per image; `negate` is timm's coin for the
    ops it negates at random (random.random() > 0.5). Ops without an argument give zeros."""
    if name in _NO_LEVEL:
        return torch.zeros_like(magnitude)
    return LEVELS[_LEVEL_OF.get(name, name)](magnitude, negate, hparams)


def supported_ops() -> set[str]:
    return {name for name in KERNELS if name in _NO_LEVEL or _LEVEL_OF.get(name, name) in LEVELS}
