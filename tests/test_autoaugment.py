"""timm's RandAugment / AutoAugment / AugMix on the device, against timm's own per-image PIL implementation.

Op by op: every op timm defines, on real photographs (scikit-learn's two samples) and synthetic edge cases at three
sizes, each image with its own argument. Exact for every op but the bilinear and bicubic geometric ones, whose
tolerances are those the run record's notes state. In distribution: 10,000 draws of the device sampler against
10,000 of timm's (its RNGs seeded, its ops spied on), two-sample chi-square and Kolmogorov-Smirnov tests at
p > 0.001. End to end: the device's draws replayed through timm's transform give the device's images.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import timm.data.auto_augment as taa
import torch
from PIL import Image
from pydantic import ValidationError
from scipy import stats
from sklearn.datasets import load_sample_images

from harness.data import augment_ops
from harness.data import autoaugment as aa
from harness.data.route import RouteError, choose_route
from recipes import get_recipe, list_recipes

FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean
SIZES = ((32, 32), (160, 160), (48, 40))  # (width, height), as PIL names sizes
SIGNIFICANCE = 1e-3
N_DRAWS = 10_000
CPU = torch.device("cpu")
GEOMETRIC = sorted(name for name, kernel in augment_ops.KERNELS.items() if kernel.kind == "affine")
PIXEL_OPS = sorted(name for name, kernel in augment_ops.KERNELS.items() if kernel.kind != "affine")
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small batches gain nothing from a second thread, and spin-waiting for it on a busy machine costs 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- images -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(array) for array in load_sample_images().images]


def photo_crops(photos, size) -> list[Image.Image]:
    """Per photograph: a detailed crop and the whole photograph, resized to `size`."""
    crops = []
    for photo in photos:
        crops.append(photo.crop((100, 50, 400, 350)).resize(size, Image.Resampling.BICUBIC))
        crops.append(photo.resize(size, Image.Resampling.BILINEAR))
    return crops


def synthetic(size) -> list[Image.Image]:
    """A constant image, a two-level image (halves) and a 0/255 checkerboard."""
    width, height = size
    halves = np.zeros((height, width, 3), np.uint8)
    halves[:, : width // 2], halves[:, width // 2 :] = (30, 200, 90), (220, 10, 160)
    checkers = np.repeat((np.indices((height, width)).sum(0) % 2 * 255).astype(np.uint8)[..., None], 3, axis=2)
    return [Image.new("RGB", size, (90, 160, 30)), Image.fromarray(halves), Image.fromarray(checkers)]


def to_batch(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images])


def level_args(name: str, magnitudes, size) -> list[float]:
    """timm's level argument for each magnitude, negated for every other image."""
    hparams = {"translate_const": int(min(size) * 0.45), "img_mean": FILL}
    level = taa.LEVEL_TO_ARG[name]
    if level is None:
        return [0.0] * len(magnitudes)
    args = []
    for i, magnitude in enumerate(magnitudes):
        negate = (lambda v: -v) if i % 2 else (lambda v: v)
        original, taa._randomly_negate = taa._randomly_negate, negate
        try:
            args.append(level(magnitude, hparams)[0])
        finally:
            taa._randomly_negate = original
    return args


def magnitudes_for(name: str, count: int) -> list[float]:
    # Posterize at magnitudes below 2.5 (increasing: at 10) keeps 0 bits, which Pillow refuses (tested on its own)
    values = (
        [2.6, 3.0, 5.5, 8.0, 9.9, 6.2] if name in ("Posterize", "PosterizeIncreasing") else [0, 2.6, 5.5, 8, 10, 6.2]
    )
    return [values[i % len(values)] for i in range(count)]


def timm_op(name: str, image: Image.Image, arg: float, mode: str) -> Image.Image:
    args = () if taa.LEVEL_TO_ARG[name] is None else (arg,)
    return taa.NAME_TO_OP[name](image, *args, fillcolor=FILL, resample=RESAMPLE[mode])


def compare(name, images, args, mode="bicubic", radii=None):
    """(device batch, timm's batch) for op `name` with one argument per image."""
    batch = to_batch(images)
    kernel_args = torch.tensor(radii if radii is not None else args, dtype=torch.float64)
    device = augment_ops.run_op(name, batch, kernel_args, fill=FILL, mode=mode)
    if radii is None:
        expected = [timm_op(name, image, arg, mode) for image, arg in zip(images, args, strict=True)]
    else:  # timm's op draws its radius with random.uniform; hand it the device's
        expected = []
        for image, arg, radius in zip(images, args, radii, strict=True):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(taa.random, "uniform", lambda low, high, r=float(radius): r)
                expected.append(timm_op(name, image, arg, mode))
    return device, to_batch(expected)


# ---- op by op -----------------------------------------------------------------------------------------------------


def test_every_timm_op_has_a_device_kernel_and_level():
    assert aa.supported_ops() == set(taa.NAME_TO_OP) == set(taa.LEVEL_TO_ARG)


@pytest.mark.parametrize("name", sorted(set(taa.LEVEL_TO_ARG) - {"AutoContrast", "Equalize", "Invert"}))
def test_level_arguments_equal_timms(name):
    magnitudes = np.concatenate([np.linspace(0, 10, 101), [10.5, 12.0, 15.0, 20.0]])
    for hparams in ({"translate_const": 72, "img_mean": FILL}, {"translate_const": 14, "translate_pct": 0.3}):
        for negate in (False, True):
            original, taa._randomly_negate = taa._randomly_negate, (lambda v: -v) if negate else (lambda v: v)
            try:
                expected = [float(taa.LEVEL_TO_ARG[name](float(m), hparams)[0]) for m in magnitudes]
            finally:
                taa._randomly_negate = original
            got = aa.level_arg(name, torch.tensor(magnitudes), torch.full((len(magnitudes),), negate), hparams)
            assert got.tolist() == expected, (name, hparams, negate)


@pytest.mark.parametrize("name", PIXEL_OPS)
def test_pixel_op_equals_timms_on_each_image(name, photos):
    """Point tables, blends, histograms, the SMOOTH filter and the box blurs: exact."""
    for size in SIZES:
        images = photo_crops(photos, size) + synthetic(size)
        args = level_args(name, magnitudes_for(name, len(images)), size)
        radii = [0.1 + (2.0 * a - 0.1) * u for a, u in zip(args, np.linspace(0, 0.99, len(args)), strict=True)]
        device, expected = compare(name, images, args, radii=radii if name == "GaussianBlurRand" else None)
        assert torch.equal(device, expected), (name, size, (device.int() - expected.int()).abs().amax((1, 2, 3)))


def test_posterize_to_zero_bits_is_black_where_pillow_refuses(photos):
    images = photo_crops(photos, (32, 32))
    device = augment_ops.run_op("Posterize", to_batch(images), torch.tensor([0.0, -1.0, 0.0, 8.0]))
    assert (device[:3] == 0).all()
    assert torch.equal(device[3], to_batch(images[3:])[0])  # 8 bits (and more) keep the image, as timm does
    with pytest.raises(ValueError, match="bits"):
        taa.posterize(images[0], 0)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_op_equals_timms_within_the_stated_tolerance(name, photos):
    """Nearest: exact (PIL's fixed-point source pixels). Bilinear: at most one level above PIL's, whose float64
    arithmetic truncates whole values like 204 to 203.99999 -> 203, where the device's float32 lands on 204.
    Bicubic: torch's cubic convolution has a = -0.75, PIL's affine transform a = -1."""
    for size in SIZES:
        images = photo_crops(photos, size) + synthetic(size)
        args = level_args(name, magnitudes_for(name, len(images)), size)
        for mode in ("nearest", "bilinear", "bicubic"):
            device, expected = compare(name, images, args, mode)
            error = (device.int() - expected.int()).float()
            photo, synth = error[:4].abs(), error[4:].abs()
            if mode == "nearest":
                assert torch.equal(device, expected), (name, size)
            elif mode == "bilinear":
                assert error.min() >= 0 and error.max() <= 1, (name, size)
                assert photo.mean((1, 2, 3)).max() <= 0.07 and synth.mean((1, 2, 3)).max() <= 0.5, (name, size)
            else:
                limit = 1.0 if size == (160, 160) else 1.25
                assert photo.mean((1, 2, 3)).max() <= limit and photo.max() <= 16, (name, size)
                assert synth.mean((1, 2, 3)).max() <= 0.7 and synth.max() <= 12, (name, size)
            assert torch.equal(device[4], expected[4])  # a constant image: the same pixels, the same fill


def test_rotate_by_zero_keeps_the_image_and_fill_matches_pils_border(photos):
    images = photo_crops(photos, (48, 40))
    batch = to_batch(images)
    same = augment_ops.run_op("Rotate", batch, torch.zeros(4, dtype=torch.float64), fill=FILL, mode="bicubic")
    assert torch.equal(same, batch)
    device, expected = compare("TranslateX", images, [20.0, -20.0, 47.9, -0.5], "bilinear")
    outside = (expected == torch.tensor(FILL).view(1, 3, 1, 1)).all(1)
    assert ((device == torch.tensor(FILL).view(1, 3, 1, 1)).all(1) == outside).all()


# ---- one layer: each image keeps its own op -----------------------------------------------------------------------


def test_a_layer_applies_each_images_own_op_and_interpolation(photos):
    """Every op of the inc1 set in one batch, some not applied, geometric ones half bilinear, half bicubic."""
    recipe = dataclasses.replace(get_recipe("rsb_a3"), aa="rand-m9-mstd0.5-inc1", interpolation="random")
    policy = aa.device_policy(recipe, CPU)
    table = policy.tables[0]
    images = photo_crops(photos, (64, 64)) * 8
    n = len(images)
    entry = torch.arange(n) % len(table.ops)
    magnitude = torch.linspace(1, 10, n, dtype=torch.float64)
    negate = torch.arange(n) % 3 == 0
    arg = torch.stack(
        [
            aa.level_arg(table.ops[e].name, magnitude[i : i + 1], negate[i : i + 1], table.ops[e].hparams)[0]
            for i, e in enumerate(entry.tolist())
        ]
    )
    applied, bicubic = torch.arange(n) % 5 != 4, torch.arange(n) % 2 == 0
    draw = aa.LayerDraw(entry, applied, magnitude, negate, arg, bicubic)
    out = aa.apply_layer(to_batch(images), table, draw, policy.fill, "random")
    for i, image in enumerate(images):
        name = table.ops[entry[i]].name
        mode = "bicubic" if bicubic[i] else "bilinear"
        one = augment_ops.run_op(name, to_batch([image]), arg[i : i + 1], fill=FILL, mode=mode)
        assert torch.equal(out[i], one[0] if applied[i] else to_batch([image])[0]), (i, name, mode)


# ---- the sampler against timm's -------------------------------------------------------------------------------------


def recipe_with(aa_string: str, interpolation: str = "bicubic"):
    return dataclasses.replace(get_recipe("rsb_a3"), aa=aa_string, interpolation=interpolation)


class Spy:
    """Stands in for one of timm's AugmentOps: records each call (entry, applied, magnitude, arg, interpolation)
    and draws exactly what the op draws, without touching pixels."""

    def __init__(self, op, entry: int, log: list):
        self.op, self.entry, self.log = op, entry, log
        level = op.level_fn
        if level is not None:
            op.level_fn = lambda m, hp: (self.log[-1].__setitem__("magnitude", m), level(m, hp))[1]
        op.aug_fn = self.applied

    def __call__(self, image):
        self.log.append(dict(entry=self.entry, applied=False, magnitude=np.nan, arg=np.nan, bicubic=None))
        return self.op(image)

    def applied(self, image, *args, **kwargs):
        record = self.log[-1]
        record.update(applied=True, arg=args[0] if args else np.nan)
        if self.op.name in GEOMETRIC:
            record["bicubic"] = taa._interpolation(dict(kwargs)) == Image.Resampling.BICUBIC
        return image


def timm_draws(recipe, n: int, seed: int = 0):
    """timm's policy run on n one-pixel images with its RNGs seeded: the list of op records per image (AugMix:
    with its mixing weights, mixing factor and chain depths)."""
    policy = aa.timm_policy(recipe)
    log: list = []
    if isinstance(policy, taa.AutoAugment):
        policy.policy = [[Spy(op, k, log) for op in sub] for k, sub in enumerate(policy.policy)]
    else:
        policy.ops = [Spy(op, k, log) for k, op in enumerate(policy.ops)]
    extra: dict = {"weights": [], "mix": [], "depths": []}
    random.seed(seed)
    np.random.seed(seed)
    image = Image.new("RGB", (1, 1))
    per_image = []
    with pytest.MonkeyPatch.context() as patch:
        if isinstance(policy, taa.AugMixAugment):
            _record_augmix(patch, extra)
        for _ in range(n):
            log.clear()
            policy(image)
            per_image.append(list(log))
    return per_image, extra


def _record_augmix(patch, extra):
    dirichlet, beta, choice = np.random.dirichlet, np.random.beta, np.random.choice
    patch.setattr(
        np.random, "dirichlet", lambda *a, **k: extra["weights"].append(dirichlet(*a, **k)) or extra["weights"][-1]
    )
    patch.setattr(np.random, "beta", lambda *a, **k: extra["mix"].append(beta(*a, **k)) or extra["mix"][-1])
    patch.setattr(np.random, "choice", lambda ops, size, **k: extra["depths"].append(size) or choice(ops, size, **k))


def device_records(draws: list) -> list[dict]:
    """The device's layer draws as records like timm's."""
    keys = ("entry", "applied", "magnitude", "arg", "bicubic")
    records = []
    for draw in draws:
        columns = [getattr(draw, key).tolist() for key in keys]
        records += [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]
    return records


def same_categories(a, b) -> float:
    """p-value of a chi-square test that two samples of categories come from one distribution."""
    keys = sorted(set(a) | set(b), key=str)
    table = np.array([[list(a).count(k) for k in keys], [list(b).count(k) for k in keys]])
    if table.shape[1] < 2:
        return 1.0
    return stats.chi2_contingency(table).pvalue


def same_distribution(a, b) -> float:
    return stats.ks_2samp(a, b).pvalue


def compare_op_draws(device: list[dict], timm: list[dict], table) -> dict[str, float]:
    """p-values: which op, applied or not (per op), magnitude (applied ops with a level), sign (ops timm negates),
    interpolation (geometric ops, where random)."""
    names = [op.name for op in table.ops]
    negating = {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel"}

    def pick(records, key, where):
        return [r[key] for r in records if where(r)]

    tests = {
        "op": same_categories(pick(device, "entry", bool), pick(timm, "entry", bool)),
        "applied": same_categories(pick(device, "applied", bool), pick(timm, "applied", bool)),
        "op x applied": same_categories(
            [(r["entry"], r["applied"]) for r in device], [(r["entry"], r["applied"]) for r in timm]
        ),
    }
    with_level = lambda r: r["applied"] and taa.LEVEL_TO_ARG[names[r["entry"]]] is not None  # noqa: E731
    tests["magnitude"] = same_distribution(pick(device, "magnitude", with_level), pick(timm, "magnitude", with_level))
    signed = lambda r: r["applied"] and names[r["entry"]] in negating and r["arg"] != 0  # noqa: E731
    tests["sign"] = same_categories(
        [r["arg"] < 0 for r in device if signed(r)], [r["arg"] < 0 for r in timm if signed(r)]
    )
    geometric = lambda r: r["applied"] and names[r["entry"]] in GEOMETRIC  # noqa: E731
    if table.ops[0].kwargs["resample"] == taa._RANDOM_INTERPOLATION:
        tests["interpolation"] = same_categories(pick(device, "bicubic", geometric), pick(timm, "bicubic", geometric))
    return tests


RAND_POLICIES = ["rand-m6-mstd0.5-inc1", "rand-m9-mstd0.5-inc1", "rand-m7-mstd101-tweights", "rand-m10-n3-mstd1-t3aw"]


@pytest.mark.parametrize("policy_string", RAND_POLICIES)
def test_rand_augment_draws_like_timm(policy_string):
    recipe = recipe_with(policy_string, interpolation="random")
    policy = aa.device_policy(recipe, CPU)
    draws = policy.draw(N_DRAWS, torch.Generator().manual_seed(1))
    timm, _ = timm_draws(recipe, N_DRAWS)
    assert all(len(ops) == policy.num_layers for ops in timm)
    tests = compare_op_draws(device_records(draws), [r for ops in timm for r in ops], policy.tables[0])
    for layer in range(policy.num_layers):  # the op of each layer on its own, and repeats within an image
        tests[f"layer {layer}"] = same_categories(draws[layer].entry.tolist(), [ops[layer]["entry"] for ops in timm])
    repeats = [len({int(d.entry[i]) for d in draws}) < policy.num_layers for i in range(N_DRAWS)]
    tests["repeats"] = same_categories(repeats, [len({r["entry"] for r in ops}) < len(ops) for ops in timm])
    assert min(tests.values()) > SIGNIFICANCE, tests
    if policy.weights is not None:  # numpy's choice(replace=False) never repeats an op within an image
        assert not any(repeats)


@pytest.mark.parametrize("policy_string", ["v0", "original-mstd0.5", "3a"])
def test_auto_augment_draws_like_timm(policy_string):
    recipe = recipe_with(policy_string, interpolation="random")
    policy = aa.device_policy(recipe, CPU)
    draws = policy.draw(N_DRAWS, torch.Generator().manual_seed(2))
    timm, _ = timm_draws(recipe, N_DRAWS)
    tests = {"sub-policy": same_categories(draws[0].entry.tolist(), [ops[0]["entry"] for ops in timm])}
    for slot, (table, draw) in enumerate(zip(policy.tables, draws, strict=True)):
        slot_tests = compare_op_draws(device_records([draw]), [ops[slot] for ops in timm], table)
        tests |= {f"slot {slot} {key}": p for key, p in slot_tests.items() if key != "op"}
    assert min(tests.values()) > SIGNIFICANCE, tests


@pytest.mark.parametrize("policy_string", ["augmix-m5-w4-d2", "augmix-m3-a0.5-b1"])
def test_augmix_draws_like_timm(policy_string):
    recipe = recipe_with(policy_string, interpolation="random")
    policy = aa.device_policy(recipe, CPU)
    n = N_DRAWS // 2  # each image draws width x depth ops
    draw = policy.draw(n, torch.Generator().manual_seed(3))
    timm, extra = timm_draws(recipe, n)
    records = device_records([layer for chain in draw.chains for layer in chain])
    tests = compare_op_draws([r for r in records if r["applied"]], [r for ops in timm for r in ops], policy.tables[0])
    del tests["applied"], tests["op x applied"]  # AugMix applies every op of a chain
    depths = [d for chain in draw.chains for d in torch.stack([layer.applied for layer in chain]).sum(0).tolist()]
    tests["depth"] = same_categories(depths, extra["depths"])
    tests["first weight"] = same_distribution(draw.weights[:, 0].numpy(), [w[0] for w in extra["weights"]])
    tests["mix"] = same_distribution(draw.mix.numpy(), extra["mix"])
    assert min(tests.values()) > SIGNIFICANCE, tests


@pytest.mark.parametrize("alpha", [0.3, 1.0, 4.0])
def test_gamma_draws_follow_the_gamma_distribution(alpha):
    draws = aa.gamma((N_DRAWS,), alpha, torch.Generator().manual_seed(4), CPU)
    assert stats.kstest(draws.numpy(), stats.gamma(alpha).cdf).pvalue > SIGNIFICANCE


# ---- end to end: the device's draws replayed through timm's transform ------------------------------------------------


class Replay:
    """Makes timm's transform draw what the device drew for image i: its op choices (numpy's choice, Python's
    random.choice of a sub-policy), applied or not (random.random against prob), magnitudes (random.gauss or
    random.uniform), signs and interpolation; AugMix's weights, mixing factor and chain depths."""

    def __init__(self, policy, transform, draws, i: int):
        self.i, self.layers, self.layer = i, [], None
        ops = transform.policy if isinstance(transform, taa.AutoAugment) else [transform.ops]
        if isinstance(draws, aa.AugMixDraw):
            self.chains = [[(ops[0][int(d.entry[i])], d) for d in chain if d.applied[i]] for chain in draws.chains]
            self.weights, self.mix = draws.weights[i].double().numpy(), float(draws.mix[i])
        elif isinstance(transform, taa.AutoAugment):
            self.sub_policy = [(op, d) for op, d in zip(ops[int(draws[0].entry[i])], draws, strict=True)]
        else:
            self.chains = [[(ops[0][int(d.entry[i])], d) for d in draws]]

    def patch(self, patch):
        patch.setattr(np.random, "choice", lambda ops, size, **k: self.wrap(self.chains.pop(0)))
        patch.setattr(np.random, "randint", lambda low, high: len(self.chains[0]))
        patch.setattr(np.random, "dirichlet", lambda alpha: self.weights)
        patch.setattr(np.random, "beta", lambda a, b: self.mix)
        patch.setattr(random, "choice", self.choice)
        patch.setattr(random, "random", lambda: 0.0 if self.layer.applied[self.i] else 1.0)
        patch.setattr(random, "gauss", lambda mu, sigma: float(self.layer.magnitude[self.i]))
        patch.setattr(random, "uniform", self.uniform)
        patch.setattr(taa, "_randomly_negate", lambda v: -v if self.layer.negate[self.i] else v)

    def wrap(self, pairs):
        return np.array([lambda image, op=op, d=d: self.call(op, d, image) for op, d in pairs], dtype=object)

    def call(self, op, draw, image):
        self.layer = draw
        return op(image)

    def uniform(self, low, high):
        """timm's uniform magnitude is random.uniform(0, m); GaussianBlurRand's radius random.uniform(0.1, ...)."""
        return float(self.layer.magnitude[self.i] if low == 0 else self.layer.arg[self.i])

    def choice(self, options):
        if options == taa._RANDOM_INTERPOLATION:
            return Image.Resampling.BICUBIC if self.layer.bicubic[self.i] else Image.Resampling.BILINEAR
        return self.wrap(self.sub_policy)  # AutoAugment's sub-policy


@pytest.mark.parametrize(
    "policy_string",
    [
        "rand-m9-mstd0.5-inc1",
        "rand-m5-n3-mstd101-tweights",
        "original",
        "augmix-m5-w4-d2",
        "augmix-m3-b1",
        "rand-m9-n1-t3a",
        "3a",
    ],
)
def test_the_devices_draws_replayed_through_timm_give_the_devices_images(policy_string, photos):
    """With nearest-neighbour geometry every op is exact, so whole policies must match timm's bit for bit."""
    recipe = recipe_with(policy_string, interpolation="nearest")
    policy = aa.device_policy(recipe, CPU)
    images = photo_crops(photos, (40, 48)) + synthetic((40, 48))
    batch = to_batch(images * 2)
    draws = policy.draw(len(batch), torch.Generator().manual_seed(5))
    out = policy.apply(batch, draws)
    for i in range(len(batch)):
        transform = aa.timm_policy(recipe)
        replay = Replay(policy, transform, draws, i)
        with pytest.MonkeyPatch.context() as patch:
            replay.patch(patch)
            expected = transform(images[i % len(images)])
        assert torch.equal(out[i], to_batch([expected])[0]), (policy_string, i)


def test_random_interpolation_replayed_through_timm_stays_within_the_bicubic_tolerance(photos):
    recipe = recipe_with("rand-m9-mstd0.5-inc1", interpolation="random")
    policy = aa.device_policy(recipe, CPU)
    images = photo_crops(photos, (160, 160))
    batch = to_batch(images * 3)
    draws = policy.draw(len(batch), torch.Generator().manual_seed(6))
    out = policy.apply(batch, draws)
    for i in range(len(batch)):
        transform = aa.timm_policy(recipe)
        with pytest.MonkeyPatch.context() as patch:
            Replay(policy, transform, draws, i).patch(patch)
            expected = to_batch([transform(images[i % len(images)])])[0]
        assert (out[i].int() - expected.int()).abs().float().mean() <= 1.0, i


# ---- the policy object --------------------------------------------------------------------------------------------


def test_same_seed_same_images_other_seed_other_images(photos):
    policy = aa.device_policy(recipe_with("rand-m9-mstd0.5-inc1"), CPU)
    batch = to_batch(photo_crops(photos, (64, 64)) * 4)
    first = policy(batch, torch.Generator().manual_seed(7))
    assert torch.equal(first, policy(batch, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, policy(batch, torch.Generator().manual_seed(8)))
    assert not torch.equal(first, batch)


HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.mark.parametrize(
    "policy_string", ["rand-m6-mstd0.5-inc1", "rand-m9-n3-t3aw", "v0", "3a", "augmix-m5-w4-d2", "augmix-m3-a0.5-b1"]
)
def test_a_policy_reads_no_device_value_on_the_host_and_copies_none_in(policy_string, monkeypatch, photos):
    policy = aa.device_policy(recipe_with(policy_string, interpolation="random"), CPU)
    policy.compact = False  # what runs on an accelerator: every op on the whole batch, kept by torch.where
    batch = to_batch(photo_crops(photos, (32, 32)) * 2)
    generator = torch.Generator().manual_seed(9)
    for name in HOST_READS:

        def refuse(self, *args, _name=name, **kwargs):
            raise AssertionError(f"host read: Tensor.{_name}")

        monkeypatch.setattr(torch.Tensor, name, refuse)
    for name in ("tensor", "as_tensor", "from_numpy"):  # host values copied in: a copy the device stream waits for

        def refuse(*args, _name=name, **kwargs):
            raise AssertionError(f"host values copied to the device: torch.{_name}")

        monkeypatch.setattr(torch, name, refuse)
    out = policy(batch, generator)
    monkeypatch.undo()
    assert out.shape == batch.shape and out.dtype == torch.uint8


@pytest.mark.parametrize("policy_string", ["rand-m9-mstd0.5-inc1", "rand-m9-n3-t3aw", "v0", "augmix-m3-b1"])
def test_ops_on_the_images_that_drew_them_equal_ops_on_the_whole_batch(policy_string, photos):
    """The CPU's compact form (each op on the images that drew it) and the accelerator's (each op on the whole
    batch, kept where drawn) give the same images."""
    policy = aa.device_policy(recipe_with(policy_string, interpolation="random"), CPU)
    batch = to_batch(photo_crops(photos, (40, 48)) * 4)
    draws = policy.draw(len(batch), torch.Generator().manual_seed(10))
    policy.compact = True
    compact = policy.apply(batch, draws)
    policy.compact = False
    assert torch.equal(compact, policy.apply(batch, draws))
    assert not torch.equal(compact, batch)


def test_the_device_takes_only_uint8_rgb_batches():
    policy = aa.device_policy(recipe_with("v0"), CPU)
    with pytest.raises(ValueError, match="uint8 images N x 3 x H x W"):
        policy(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.Generator())


AA_STRINGS = [
    "rand-m6-mstd0.5-inc1",
    "rand-m7-mstd0.5-inc1",
    "rand-m9-mstd0.5-inc1",
    "rand-m9-mstd0.5",
    "rand-mstd1-tweights",
    "rand-m9-t3a",
    "rand-m9-t3aw",
    "augmix-m5-w4-d2",
    "augmix-m3-b1",
    "v0",
    "v0r",
    "original",
    "originalr",
    "3a",
    "original-mstd0.5",
]


@pytest.mark.parametrize("aa_string", AA_STRINGS)
def test_timm_policies_run_on_the_device_with_timms_parameters(aa_string):
    recipe = recipe_with(aa_string, interpolation="bilinear")
    assert aa.unsupported_on_device(recipe) is None
    policy = aa.device_policy(recipe, CPU)
    assert policy.differences == []
    timm = aa.timm_policy(recipe)
    ops = [op for table in policy.tables for op in table.ops]
    assert ops[0].hparams["translate_const"] == int(recipe.img_size * 0.45)
    assert tuple(policy.fill.int().tolist()) == tuple(min(255, round(255 * m)) for m in recipe.mean)
    assert policy.mode == "bilinear" and ops[0].kwargs["resample"] == Image.Resampling.BILINEAR
    if aa_string.startswith("augmix"):
        assert ops[0].hparams["translate_pct"] == 0.3 and (policy.width, policy.depth) == (timm.width, timm.depth)
    if aa_string.startswith("rand"):
        assert policy.num_layers == timm.num_layers


def test_the_registrys_policies_run_on_the_device():
    recipes = [get_recipe(name) for name in list_recipes() if get_recipe(name).aa]
    assert {"rsb_a1", "rsb_a2", "rsb_a3"} <= {r.name for r in recipes}
    for recipe in recipes:
        assert aa.unsupported_on_device(recipe) is None
        assert isinstance(aa.device_policy(recipe, CPU), aa.RandAugmentPolicy)
    assert aa.unsupported_on_device(dataclasses.replace(recipes[0], aa=None)) is None
    assert aa.device_policy(dataclasses.replace(recipes[0], aa=None), CPU) is None


def test_what_the_device_cannot_run_is_refused_with_the_reason(monkeypatch):
    with pytest.raises(ValidationError, match="without replacement"):  # timm itself fails on the first image
        recipe_with("rand-n16-tweights")
    monkeypatch.delitem(augment_ops.KERNELS, "SharpnessIncreasing")
    recipe = recipe_with("rand-m6-mstd0.5-inc1")
    assert "SharpnessIncreasing" in aa.unsupported_on_device(recipe)
    with pytest.raises(ValueError, match="SharpnessIncreasing"):
        aa.device_policy(recipe, CPU)
    with pytest.raises(RouteError, match=r"--augment-on device cannot run rsb_a3: .*; use --augment-on workers"):
        choose_route("workers", "device", "auto", recipe, "imagenet", 1, None)
    assert choose_route("auto", "auto", "auto", recipe, "imagenet", 1, None).augment_on == "workers"
    assert aa.unsupported_on_device(recipe_with("rand-m6-mstd0.5")) is None  # its Sharpness still has a kernel


def test_notes_state_the_approximations_and_the_zero_bit_posterize():
    def notes(aa_string, interpolation="bicubic"):
        return " | ".join(aa.device_policy(recipe_with(aa_string, interpolation), CPU).notes)

    assert "a = -0.75" in notes("rand-m6-mstd0.5-inc1") and "bilinear" not in notes("rand-m6-mstd0.5-inc1")
    assert "at most one level" in notes("rand-m6-mstd0.5-inc1", "random")
    assert notes("rand-m6-mstd0.5-inc1", "nearest") == ""  # exact
    assert notes("3a") == ""  # no geometric op
    assert "PosterizeIncreasing can draw 0 bits" in notes("rand-m9-mstd0.5-inc1")
    assert "Posterize can draw 0 bits" in notes("v0")  # ('Posterize', 0.8, 2): int(0.8) bits
    assert "0 bits" not in notes("rand-m6-mstd0.5-inc1") + notes("original") + notes("augmix-m5-w4-d2")
