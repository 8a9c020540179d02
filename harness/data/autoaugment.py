"""timm's RandAugment, AutoAugment and AugMix policies as batched, per-sample operations on the device.

The policy is the object timm's `create_transform` builds from the recipe (`rand_augment_transform`,
`auto_augment_transform`, `augment_and_mix_transform`): its ops' names, probabilities, magnitudes, magnitude noise
and bound, layer count, choice weights, fill colour and interpolation are read from there, so the device cannot
parse a policy string differently from timm. What timm draws per image with Python's `random` and numpy (which ops,
whether each applies, its magnitude, the sign, bilinear or bicubic, AugMix's chain depths and mixing weights) is
drawn here for every image of the batch at once from the batch's `torch.Generator`, with the same distributions;
the ops run as batched kernels (`harness.data.augment_ops`) and each image keeps the result of the op it drew.
Nothing reads a device value back to the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import PIL
import torch
from PIL import Image, ImageOps
from timm.data.auto_augment import LEVEL_TO_ARG, AugmentOp, AugMixAugment, AutoAugment, RandAugment

from harness.data.augment_ops import (
    KERNELS,
    LEVEL_DENOM,
    Pixels,
    affine,
    apply_lut,
    blend,
    inverse_map,
    level_arg,
    per_image,
    per_table,
    supported_ops,  # noqa: F401  (read from here too)
)
from harness.data.capabilities import policy_mode, policy_ops, timm_policy, unsupported_on_device
from recipes import Recipe

# ---- the ops one layer picks from, and what each image draws ---------------------------------------------------------


class OpTable:
    """The ops (timm `AugmentOp`s) that one layer picks from, as per-entry tensors on the device."""

    def __init__(self, ops: list[AugmentOp], device: torch.device):
        dtype = torch.float64  # timm's magnitudes and levels are Python floats
        self.ops = ops
        self.names = sorted({op.name for op in ops})
        self.hparams = {name: next(op.hparams for op in ops if op.name == name) for name in self.names}
        self.name_of = torch.tensor([self.names.index(op.name) for op in ops], device=device)
        self.prob = torch.tensor([op.prob for op in ops], dtype=dtype, device=device)
        self.magnitude = torch.tensor([op.magnitude for op in ops], dtype=dtype, device=device)
        self.spread = torch.tensor([op.magnitude_std for op in ops], dtype=dtype, device=device)
        self.ceiling = torch.tensor([op.magnitude_max or LEVEL_DENOM for op in ops], dtype=dtype, device=device)


@dataclass
class LayerDraw:
    """One layer's draws, one value per image: the table entry, whether it applies, its magnitude (after timm's
    clipping), the sign coin, its argument (what timm's level function returns, or the radius GaussianBlurRand
    draws) and whether a geometric op resamples bicubic (else bilinear) when the interpolation is random."""

    entry: torch.Tensor
    applied: torch.Tensor
    magnitude: torch.Tensor
    negate: torch.Tensor
    arg: torch.Tensor
    bicubic: torch.Tensor


def draw_layer(table: OpTable, entry: torch.Tensor, generator: torch.Generator, active=None) -> LayerDraw:
    """AugmentOp.__call__'s draws for each image's entry: applied when U < prob; magnitude uniform on [0, m] when
    the noise is infinite, m + noise * N(0, 1) when it is positive, else m; clipped to [0, magnitude_max or 10].
    `active` (per image) switches the layer off where an AugMix chain is shorter."""
    n, device = entry.shape[0], entry.device
    dtype = table.prob.dtype
    uniform = torch.rand(n, 5, generator=generator, device=device, dtype=dtype)
    normal = torch.randn(n, generator=generator, device=device, dtype=dtype)
    base, spread = table.magnitude[entry], table.spread[entry]
    noisy = torch.where(spread.isinf(), uniform[:, 1] * base, base + spread * normal)
    magnitude = torch.minimum(torch.where(spread > 0, noisy, base), table.ceiling[entry]).clamp(min=0)
    applied = uniform[:, 0] < table.prob[entry]
    if active is not None:
        applied = applied & active
    negate, name_of = uniform[:, 2] > 0.5, table.name_of[entry]
    arg = torch.zeros_like(magnitude)
    for index, name in enumerate(table.names):
        value = level_arg(name, magnitude, negate, table.hparams[name])
        if name == "GaussianBlurRand":  # timm's op draws its radius: random.uniform(0.1, 2.0 * factor)
            value = 0.1 + (2.0 * value - 0.1) * uniform[:, 4]
        arg = torch.where(name_of == index, value, arg)
    return LayerDraw(entry, applied, magnitude, negate, arg, uniform[:, 3] < 0.5)


def apply_layer(
    images: torch.Tensor, table: OpTable, draw: LayerDraw, fill: torch.Tensor, mode: str, compact: bool = False
) -> torch.Tensor:
    """Each image with the op it drew (where it applies): point-table ops merged into one table per image, the
    other ops grouped by kernel, geometric ops as one affine resampling.

    Each group runs on the whole batch and is kept where drawn (`torch.where`), which reads nothing back from the
    device; or, `compact`, only on the images that drew it (on the CPU, where reading which ones waits for
    nothing). Both give the same images: every kernel works image by image."""
    name_of = table.name_of[draw.entry]
    chosen = {name: draw.applied & (name_of == index) for index, name in enumerate(table.names)}
    shared, out = Pixels(images), images.clone() if compact else images
    for names, run in _groups(table.names, chosen, draw, fill, mode):
        where = torch.stack([chosen[name] for name in names]).any(0)
        if compact:
            index = where.nonzero().squeeze(1)
            take = lambda values, index=index: values.index_select(0, index)  # noqa: E731
            out.index_copy_(0, index, run(Pixels(take(images)), take))
        else:
            out = torch.where(per_image(where), run(shared, lambda values: values), out)
    return out


def _groups(names: list[str], chosen: dict, draw: LayerDraw, fill: torch.Tensor, mode: str):
    """(op names, run(pixels, take)) for each group of a layer's ops that one computation serves; `take` selects
    the per-image values (arguments, masks) of the images `pixels` holds."""
    by_kind = {kind: [n for n in names if KERNELS[n].kind == kind] for kind in ("lut", "image", "affine")}
    if by_kind["lut"]:
        yield by_kind["lut"], lambda pixels, take: _point_tables(pixels, take, by_kind["lut"], chosen, draw.arg)
    for fn in dict.fromkeys(KERNELS[name].fn for name in by_kind["image"]):
        yield (
            [n for n in by_kind["image"] if KERNELS[n].fn is fn],
            lambda pixels, take, fn=fn: fn(pixels, take(draw.arg)),
        )
    if by_kind["affine"]:
        yield (
            by_kind["affine"],
            lambda pixels, take: _resample(pixels, take, draw, chosen, by_kind["affine"], fill, mode),
        )


def _point_tables(pixels: Pixels, take, names: list[str], chosen: dict, arg: torch.Tensor) -> torch.Tensor:
    """The point-table ops: each image's table from the op it drew, applied in one lookup."""
    images = pixels.u8
    lut = torch.arange(256, device=images.device).expand(images.shape[0], images.shape[1], 256)
    for name in names:
        lut = torch.where(per_table(take(chosen[name])), KERNELS[name].fn(pixels, take(arg)), lut)
    return apply_lut(images, lut)


def _resample(pixels: Pixels, take, draw: LayerDraw, chosen: dict, names: list[str], fill, mode: str):
    """One affine resampling of the batch, each image by the inverse map of the geometric op it drew."""
    height, width = pixels.u8.shape[-2:]
    arg = take(draw.arg)
    matrix = inverse_map(arg)
    for name in names:
        matrix = torch.where(take(chosen[name]).unsqueeze(1), KERNELS[name].fn(arg, height, width), matrix)
    if mode != "random":
        return affine(pixels, matrix, fill, mode)
    bicubic = affine(pixels, matrix, fill, "bicubic")
    return torch.where(per_image(take(draw.bicubic)), bicubic, affine(pixels, matrix, fill, "bilinear"))


# ---- the three kinds of policy ---------------------------------------------------------------------------------------


class DevicePolicy:
    """A recipe's policy on uint8 N x 3 x H x W batches: `policy(images, generator)` draws every random choice from
    `generator` (on the images' device) and returns the augmented batch. `notes` are approximations within a stated
    tolerance; `differences` anything that does not do what timm does (none for the policies timm defines)."""

    def __init__(self, tables: list[OpTable], fill: tuple[int, ...], mode: str, device: torch.device):
        self.tables, self.mode = tables, mode
        self.fill = torch.tensor(fill, dtype=torch.float32, device=device)
        self.notes = _notes([op for table in tables for op in table.ops], mode)
        self.differences: list[str] = []
        self.compact: bool | None = None  # run each op only on the images that drew it; None: on the CPU only

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")
        return self.apply(images, self.draw(images.shape[0], generator))

    def draw(self, n: int, generator: torch.Generator):
        """Every random choice for n images."""
        raise NotImplementedError

    def apply(self, images: torch.Tensor, draws) -> torch.Tensor:
        """The images augmented as `draws` say."""
        raise NotImplementedError

    def layer(self, images: torch.Tensor, table: OpTable, draw: LayerDraw) -> torch.Tensor:
        compact = images.device.type == "cpu" if self.compact is None else self.compact
        return apply_layer(images, table, draw, self.fill, self.mode, compact)


class RandAugmentPolicy(DevicePolicy):
    """timm's RandAugment: `num_layers` ops per image, uniformly with replacement, or by `choice_weights` without
    replacement (np.random.choice's `replace=choice_weights is None`), each then applied as its AugmentOp draws."""

    def __init__(self, transform: RandAugment, fill, mode: str, device: torch.device):
        super().__init__([OpTable(transform.ops, device)], fill, mode, device)
        self.num_layers = transform.num_layers
        weights = transform.choice_weights
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float64, device=device)

    def choose(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Each image's ops, N x num_layers entries. Without replacement: the top keys weight / Exp(1) in order,
        which is sequential sampling in proportion to the weights, as numpy's choice(replace=False, p=...) draws."""
        device, count = self.fill.device, len(self.tables[0].ops)
        if self.weights is None:
            return torch.randint(0, count, (n, self.num_layers), generator=generator, device=device)
        waits = torch.empty(n, count, dtype=torch.float64, device=device).exponential_(generator=generator)
        return (self.weights / waits).topk(self.num_layers, dim=1).indices

    def draw(self, n: int, generator: torch.Generator) -> list[LayerDraw]:
        entries = self.choose(n, generator)
        return [draw_layer(self.tables[0], entries[:, i], generator) for i in range(self.num_layers)]

    def apply(self, images: torch.Tensor, draws: list[LayerDraw]) -> torch.Tensor:
        for draw in draws:
            images = self.layer(images, self.tables[0], draw)
        return images


class AutoAugmentPolicy(DevicePolicy):
    """timm's AutoAugment: one sub-policy per image, uniformly; its ops in order, each as its AugmentOp draws.
    Layer j's table holds the j-th op of every sub-policy, indexed by the sub-policy."""

    def __init__(self, transform: AutoAugment, fill, mode: str, device: torch.device):
        slots = len(transform.policy[0])
        tables = [OpTable([sub[j] for sub in transform.policy], device) for j in range(slots)]
        super().__init__(tables, fill, mode, device)
        self.count = len(transform.policy)

    def draw(self, n: int, generator: torch.Generator) -> list[LayerDraw]:
        sub_policy = torch.randint(0, self.count, (n,), generator=generator, device=self.fill.device)
        return [draw_layer(table, sub_policy, generator) for table in self.tables]

    def apply(self, images: torch.Tensor, draws: list[LayerDraw]) -> torch.Tensor:
        for table, draw in zip(self.tables, draws, strict=True):
            images = self.layer(images, table, draw)
        return images


@dataclass
class AugMixDraw:
    weights: torch.Tensor  # N x width, float32: Dirichlet(alpha) mixing weights of the chains
    mix: torch.Tensor  # N, float32: Beta(alpha, alpha) weight of the mixture against the image
    chains: list[list[LayerDraw]]  # per chain, its layers (inactive beyond the image's depth)


class AugMixPolicy(DevicePolicy):
    """timm's AugMixAugment: `width` chains of `depth` ops (1 to 3, uniformly, per chain and image, when depth is
    not positive), each op drawn uniformly with replacement and applied with its AugmentOp's magnitude draw; the
    chains mixed by Dirichlet weights in float32, clipped, truncated to 8 bits and blended with the image by a
    Beta(alpha, alpha) weight; or, blended, each chain blended in turn with weights derived as timm derives them."""

    def __init__(self, transform: AugMixAugment, fill, mode: str, device: torch.device):
        super().__init__([OpTable(transform.ops, device)], fill, mode, device)
        self.alpha, self.width = transform.alpha, transform.width
        self.depth, self.blended = transform.depth, transform.blended

    def draw(self, n: int, generator: torch.Generator) -> AugMixDraw:
        device, count = self.fill.device, len(self.tables[0].ops)
        gammas = gamma((n, self.width + 2), self.alpha, generator, device)
        weights = (gammas[:, : self.width] / gammas[:, : self.width].sum(1, keepdim=True)).float()
        mix = (gammas[:, -2] / (gammas[:, -2] + gammas[:, -1])).float()
        fixed, chains = self.depth > 0, []
        for _ in range(self.width):
            depth = self.depth if fixed else torch.randint(1, 4, (n,), generator=generator, device=device)
            layers = []
            for j in range(self.depth if fixed else 3):
                entry = torch.randint(0, count, (n,), generator=generator, device=device)
                layers.append(draw_layer(self.tables[0], entry, generator, active=None if fixed else j < depth))
            chains.append(layers)
        return AugMixDraw(weights, mix, chains)

    def chain(self, images: torch.Tensor, layers: list[LayerDraw]) -> torch.Tensor:
        for draw in layers:
            images = self.layer(images, self.tables[0], draw)
        return images

    def apply(self, images: torch.Tensor, draw: AugMixDraw) -> torch.Tensor:
        if self.blended:
            return self.blend_chains(images, draw)
        mixed = torch.zeros(images.shape, dtype=torch.float32, device=images.device)
        for weight, layers in zip(draw.weights.unbind(1), draw.chains, strict=True):
            mixed += per_image(weight) * self.chain(images, layers).float()
        mixed = mixed.clamp_(0, 255).to(torch.uint8)  # numpy's astype(uint8) truncates, as this cast does
        return blend(images, mixed, per_image(draw.mix))

    def blend_chains(self, images: torch.Tensor, draw: AugMixDraw) -> torch.Tensor:
        """timm's `_apply_blended`: chain weights w * m turned into successive blend weights, last to first."""
        remaining = torch.ones_like(draw.mix)
        alphas = []
        for weight in reversed((draw.weights * draw.mix.unsqueeze(1)).unbind(1)):
            alphas.append(weight / remaining)
            remaining = remaining * (1 - alphas[-1])
        out = images
        for alpha, layers in zip(reversed(alphas), draw.chains, strict=True):
            out = blend(out, self.chain(images, layers), per_image(alpha))
        return out


def gamma(shape: tuple[int, ...], alpha: float, generator: torch.Generator, device) -> torch.Tensor:
    """Gamma(alpha, 1) draws from `generator` (torch's own gamma sampler takes no generator): Marsaglia and Tsang's
    method with a fixed number of tries, each accepted with probability above 0.95, so a draw has no accepted try
    with probability below 1e-20 (it then takes the last); below alpha = 1, Gamma(alpha + 1) * U^(1 / alpha)."""
    tries, boosted = 16, alpha < 1
    d = (alpha + 1 if boosted else alpha) - 1 / 3
    c = 1 / math.sqrt(9 * d)
    normal = torch.randn(*shape, tries, generator=generator, device=device, dtype=torch.float64)
    uniform = torch.rand(*shape, tries, generator=generator, device=device, dtype=torch.float64)
    v = (1 + c * normal) ** 3
    log_v = torch.log(v.clamp(min=1e-300))
    accepted = (v > 0) & (torch.log(uniform) < 0.5 * normal**2 + d - d * v + d * log_v)
    accepted[..., -1] = True
    first = accepted.int().argmax(-1, keepdim=True)
    draws = (d * v).gather(-1, first).squeeze(-1).clamp(min=1e-300)
    if boosted:
        draws = draws * torch.rand(shape, generator=generator, device=device, dtype=torch.float64) ** (1 / alpha)
    return draws


# ---- from a recipe -------------------------------------------------------------------------------------------------


def device_policy(recipe: Recipe, device: torch.device) -> DevicePolicy | None:
    """The recipe's policy on the device; None when recipe.aa is None. ValueError when it cannot run there."""
    if recipe.aa is None:
        return None
    if why := unsupported_on_device(recipe):
        raise ValueError(f"{recipe.name}: {why}")
    policy = timm_policy(recipe)
    first = policy_ops(policy)[0]
    fill, mode = tuple(first.kwargs["fillcolor"]), policy_mode(first)
    device = torch.device(device)
    if isinstance(policy, RandAugment):
        return RandAugmentPolicy(policy, fill, mode, device)
    if isinstance(policy, AutoAugment):
        return AutoAugmentPolicy(policy, fill, mode, device)
    return AugMixPolicy(policy, fill, mode, device)


# ---- what the run record says about it -------------------------------------------------------------------------------

_GEOMETRIC = {name for name, kernel in KERNELS.items() if kernel.kind == "affine"}
_RESAMPLING_NOTES = {
    "bilinear": "geometric ops (rotate, shear, translate) resample bilinear with torch's grid_sample in float32: a "
    "pixel is at most one level above timm's, where PIL's float64 arithmetic truncates a whole value to one below "
    "(about 6% of a photograph's pixels)",
    "bicubic": "geometric ops (rotate, shear, translate) resample bicubic with torch's grid_sample, whose cubic "
    "convolution (a = -0.75) is smoother than PIL's affine transform's (a = -1): mean absolute difference from "
    "timm's under 1/255 on 160 px photographs (1.25/255 at 32 px), up to ~15 levels at sharp edges",
}


def _notes(ops: list[AugmentOp], mode: str) -> list[str]:
    notes = []
    if any(op.name in _GEOMETRIC for op in ops):
        notes += [text for key, text in _RESAMPLING_NOTES.items() if mode in (key, "random")]
    notes += _zero_bit_notes(ops)
    return notes


def _zero_bit_notes(ops: list[AugmentOp]) -> list[str]:
    """Posterize levels that keep no bits: timm's posterize passes 0 bits to ImageOps.posterize, which recent
    Pillow refuses; the device keeps no bits (a black image), which is what the level asks for."""
    names = set()
    for op in ops:
        if op.name.startswith("Posterize"):
            low, high = _magnitude_range(op)
            if min(LEVEL_TO_ARG[op.name](m, op.hparams)[0] for m in (low, high)) < 1:
                names.add(op.name)
    if not names:
        return []
    try:
        ImageOps.posterize(Image.new("L", (1, 1)), 0)
        refused = ""
    except ValueError:
        refused = f"; Pillow {PIL.__version__} refuses 0 bits, so timm's per-image path raises ValueError there"
    return [
        f"{', '.join(sorted(names))} can draw 0 bits to keep: the device returns a black image, as the level "
        f"asks{refused}"
    ]


def _magnitude_range(op: AugmentOp) -> tuple[float, float]:
    """The magnitudes an op draws in practice: [0, m] when uniform, m +- 5 noise std when Gaussian, clipped."""
    spread, ceiling = op.magnitude_std, op.magnitude_max or LEVEL_DENOM
    if math.isinf(spread):
        low, high = 0.0, op.magnitude
    else:
        low, high = op.magnitude - 5 * spread, op.magnitude + 5 * spread
    return max(0.0, min(low, ceiling)), max(0.0, min(high, ceiling))
