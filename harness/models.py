"""Architectures timm lacks, registered so that ``timm.create_model(name, num_classes=N, in_chans=C)`` builds them.

Registered names: ``seed_cnn_cifar10``, ``seed_cnn_fmnist``, ``lenet5``, ``mini_googlenet``, ``googlenet_tv`` and
``resnet50_mlp_head``. Only ``resnet50_mlp_head`` accepts ``pretrained=True`` (for its timm resnet50 backbone); the
others raise ``ValueError``: build them with ``pretrained=False`` and load a local state dict instead.

``drop_rate`` sets the dropout in front of the final classifier (timm's convention); when it is not given, each
model keeps its design's value. ``timm.create_model`` forwards an explicit ``drop_rate=0.0`` as given, which turns that
dropout off. ``drop_path_rate``/``drop_block_rate`` are accepted and ignored (no model here has residual blocks),
except by ``resnet50_mlp_head``, which passes them to its backbone.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn
from torch.nn import functional as F
from torchvision.models import GoogLeNet

__all__ = ["SeedCnnCifar10", "SeedCnnFmnist", "LeNet5", "MiniGoogLeNet", "GoogLeNetTV", "ResNet50MLPHead"]

# Accepted for interface compatibility with timm models; none of the from-scratch models has drop-path or drop-block.
_IGNORED_KWARGS = ("drop_path_rate", "drop_block_rate")
# Data-pipeline fields resnet50_mlp_head copies from the pretrained cfg of its backbone.
_DATA_CFG_KEYS = (
    "input_size",
    "test_input_size",
    "interpolation",
    "crop_pct",
    "test_crop_pct",
    "crop_mode",
    "mean",
    "std",
)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    cfg = {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "features.0",
        "classifier": "head",
    }
    cfg.update(kwargs)
    return cfg


# Defaults in timm's sense (as for a timm model, an instance keeps them whatever num_classes/in_chans it was built
# with). No entry has weights (no url, hf_hub_id or file): timm lists none of these names as pretrained.
default_cfgs = generate_default_cfgs(
    {
        "seed_cnn_cifar10": _cfg(fixed_input_size=True),
        "seed_cnn_fmnist": _cfg(input_size=(3, 28, 28)),
        "lenet5": _cfg(),
        "mini_googlenet": _cfg(first_conv="stem.conv"),
        "googlenet_tv": _cfg(
            num_classes=1000, input_size=(3, 224, 224), crop_pct=0.875, first_conv="conv1.conv", classifier="fc"
        ),
        "resnet50_mlp_head": _cfg(
            num_classes=1000,
            input_size=(3, 224, 224),
            crop_pct=0.95,
            interpolation="bicubic",
            first_conv="backbone.conv1",
        ),
    }
)


def _no_weights(name: str) -> ValueError:
    return ValueError(
        f"{name} has no published weights, so pretrained=True cannot be honoured; start from a weights file "
        "(--pretrained-file FILE, which harness.weights loads into a model built with pretrained=False)"
    )


def _linear(in_features: int, num_classes: int, like: nn.Module | None = None) -> nn.Module:
    """``Linear(in_features, num_classes)``, or ``Identity`` for ``num_classes == 0`` (timm's pre-logits mode)."""
    if num_classes <= 0:
        return nn.Identity()
    param = next(like.parameters(), None) if like is not None else None
    if param is None:
        return nn.Linear(in_features, num_classes)
    return nn.Linear(in_features, num_classes, device=param.device, dtype=param.dtype)


def _conv_bn_relu(in_chs: int, out_chs: int) -> list[nn.Module]:
    return [nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False), nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True)]


class _LinearHead(nn.Module):
    """timm-style classifier API for models whose last layer is ``self.head`` on ``head_hidden_size`` features."""

    num_classes: int
    num_features: int
    head_hidden_size: int
    head: nn.Module
    head_drop: nn.Module

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New final Linear for ``num_classes`` outputs (``Identity`` for 0); ``global_pool`` is ignored."""
        self.num_classes = num_classes
        self.head = _linear(self.head_hidden_size, num_classes, like=self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class SeedCnnCifar10(_LinearHead):
    """Keras CIFAR-10 scratch CNN of seed report 003 (1,250,858 parameters at 3x32x32 input, 10 classes).

    The input size is fixed at 32x32: the flattened 6x6x64 map feeds a Linear(2304, 512). The two 0.25 dropouts
    after the conv blocks are fixed; ``drop_rate`` (default 0.5) is the dropout before the final Linear.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        img_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if size != (32, 32):
            raise ValueError(f"seed_cnn_cifar10 takes 32x32 input only, got img_size={img_size}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 64
        self.head_hidden_size = 512
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
        )
        self.pre_logits = nn.Sequential(nn.Flatten(), nn.Linear(6 * 6 * 64, 512), nn.ReLU(inplace=True))
        self.head_drop = nn.Dropout(drop_rate)
        self.head = _linear(512, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (32, 32):
            raise ValueError(f"seed_cnn_cifar10 takes 32x32 input only, got {tuple(x.shape[-2:])}")
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pre_logits(x))
        return x if pre_logits else self.head(x)


class SeedCnnFmnist(_LinearHead):
    """Small from-scratch CNN for 28x28 Fashion-MNIST (seed report 002).

    The report gives no layer list, so this architecture is this project's choice: two conv blocks, each
    [Conv3x3-BN-ReLU] x 2 (32 then 64 filters) + MaxPool2d(2) + Dropout(0.25), then AdaptiveAvgPool2d(7) so that
    28x28 and 32x32 inputs both give a 7x7x64 map, Flatten, Linear(3136, 256)-ReLU, Dropout(``drop_rate``, default
    0.5), Linear(256, num_classes). About 0.87 M parameters.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 64
        self.head_hidden_size = 256
        self.features = nn.Sequential(
            *_conv_bn_relu(in_chans, 32),
            *_conv_bn_relu(32, 32),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            *_conv_bn_relu(32, 64),
            *_conv_bn_relu(64, 64),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
        )
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.pre_logits = nn.Sequential(nn.Flatten(), nn.Linear(7 * 7 * 64, 256), nn.ReLU(inplace=True))
        self.head_drop = nn.Dropout(drop_rate)
        self.head = _linear(256, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pre_logits(self.pool(x)))
        return x if pre_logits else self.head(x)


class LeNet5(_LinearHead):
    """LeNet-5 (LeCun et al. 1998) for 32x32 input: conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc 84, fc classes.

    Kept from the paper: tanh activations and 2x2 average-pool subsampling. Simplified: C3 is fully connected to S2
    (no partial connection table), pooling has no trainable coefficients, and the output layer is a Linear, not RBF
    units. Inputs smaller than 32x32 are zero-padded to 32x32 (28x28 gets 2 pixels a side, the same as padding=2 in
    the first conv). ``drop_rate`` (default 0, as in the paper) adds dropout before the last Linear.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 16
        self.head_hidden_size = 84
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),
        )
        self.pre_logits = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh()
        )
        self.head_drop = nn.Dropout(drop_rate)
        self.head = _linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height > 32 or width > 32:
            raise ValueError(f"lenet5 takes input up to 32x32, got {height}x{width}")
        if (height, width) != (32, 32):
            top, left = (32 - height) // 2, (32 - width) // 2
            x = F.pad(x, (left, 32 - width - left, top, 32 - height - top))
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pre_logits(x))
        return x if pre_logits else self.head(x)


class _ConvModule(nn.Sequential):
    """Conv(k, stride, 'same' or 'valid' padding) + BatchNorm + ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, same: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2 if same else 0)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)


class _Inception(nn.Module):
    """1x1 conv module (k1 filters) and 3x3 conv module (k3 filters) in parallel, concatenated."""

    def __init__(self, in_chs: int, k1: int, k3: int) -> None:
        super().__init__()
        self.branch1 = _ConvModule(in_chs, k1, 1)
        self.branch3 = _ConvModule(in_chs, k3, 3)
        self.out_chs = k1 + k3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class _Downsample(nn.Module):
    """3x3 stride-2 'valid' conv module (k filters) and 3x3 stride-2 max-pool in parallel, concatenated."""

    def __init__(self, in_chs: int, k: int) -> None:
        super().__init__()
        self.conv = _ConvModule(in_chs, k, 3, stride=2, same=False)
        self.pool = nn.MaxPool2d(3, stride=2)
        self.out_chs = in_chs + k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class MiniGoogLeNet(_LinearHead):
    """MiniGoogLeNet for CIFAR-10 (seed report 004; Rosebrock, "Deep Learning for Computer Vision with Python").

    conv 96@3x3; inception (32,32), (32,48); downsample 80; inception (112,48), (96,64), (80,80), (48,96);
    downsample 96; inception (176,160), (176,160); global average pool (adaptive, so any input of 32x32 or more
    works); dropout (``drop_rate``, default 0.5); Linear(336, num_classes). Convs keep their bias, as in Keras;
    BatchNorm uses PyTorch's defaults (eps 1e-5, momentum 0.1), not Keras's (1e-3, 0.99).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = _ConvModule(in_chans, 96, 3)
        layers: list[nn.Module] = []
        chs = 96
        plan: list[tuple[int, ...]] = [
            (32, 32), (32, 48), (80,),
            (112, 48), (96, 64), (80, 80), (48, 96), (96,),
            (176, 160), (176, 160),
        ]  # fmt: skip
        for filters in plan:
            layer = _Inception(chs, *filters) if len(filters) == 2 else _Downsample(chs, *filters)
            layers.append(layer)
            chs = layer.out_chs
        self.stages = nn.Sequential(*layers)
        self.num_features = self.head_hidden_size = chs
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = _linear(chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.head(x)


class GoogLeNetTV(GoogLeNet):
    """torchvision's GoogLeNet as ``torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True,
    num_classes=N)`` builds it, with timm's classifier API (the classifier is ``.fc``).

    Parameter names match torchvision's, so a torchvision GoogLeNet state dict loads into it once its ``aux1.*``/
    ``aux2.*`` entries are dropped (torchvision's ImageNet weights also expect ``transform_input=True``).
    ``drop_rate`` is torchvision's ``dropout`` (default 0.2); ``in_chans`` other than 3 replaces the first conv.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.2) -> None:
        super().__init__(
            num_classes=max(num_classes, 1),
            aux_logits=False,
            transform_input=False,
            init_weights=True,
            dropout=drop_rate,
        )
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = self.head_hidden_size = self.fc.in_features
        if num_classes <= 0:
            self.fc = nn.Identity()
        if in_chans != 3:
            conv = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.trunc_normal_(conv.weight, mean=0.0, std=0.01, a=-2, b=2)  # torchvision's init for convs
            self.conv1.conv = conv

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New ``fc`` for ``num_classes`` outputs (``Identity`` for 0); ``global_pool`` is ignored."""
        self.num_classes = num_classes
        self.fc = _linear(self.num_features, num_classes, like=self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        for name in (
            "conv1",
            "maxpool1",
            "conv2",
            "conv3",
            "maxpool2",
            "inception3a",
            "inception3b",
            "maxpool3",
            "inception4a",
            "inception4b",
            "inception4c",
            "inception4d",
            "inception4e",
            "maxpool4",
            "inception5a",
            "inception5b",
        ):
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ResNet50MLPHead(_LinearHead):
    """timm resnet50 backbone (global average pool, 2048 features) + the seed report 003 head.

    Head: Linear(2048, 1024)-ReLU, Linear(1024, 512)-ReLU, Linear(512, num_classes). ``get_classifier`` returns the
    whole head; ``reset_classifier`` replaces only its last Linear.
    """

    def __init__(
        self, num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **backbone_kwargs: Any
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.backbone = timm.create_model(
            "resnet50", pretrained=pretrained, num_classes=0, in_chans=in_chans, **backbone_kwargs
        )
        self.num_features = self.backbone.num_features
        self.head_hidden_size = 512
        self.head = nn.Sequential(
            nn.Linear(self.num_features, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 512),
            nn.ReLU(inplace=True),
            _linear(512, num_classes),
        )

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New last Linear for ``num_classes`` outputs (``Identity`` for 0); the hidden layers are kept."""
        self.num_classes = num_classes
        self.head[-1] = _linear(512, num_classes, like=self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.backbone.forward_head(x)  # global average pool + backbone dropout (drop_rate)
        x = self.head[:-1](x)
        return x if pre_logits else self.head[-1](x)


def _build(model_cls: type[nn.Module], variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """Build a from-scratch model the timm way (``pretrained_cfg`` attached); refuses ``pretrained=True``."""
    if pretrained:
        raise _no_weights(variant)
    for name in _IGNORED_KWARGS:
        kwargs.pop(name, None)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    model = build_model_with_cfg(model_cls, variant, pretrained=False, **kwargs)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


@register_model
def seed_cnn_cifar10(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Keras CIFAR-10 scratch CNN of seed report 003; 32x32 input only."""
    return _build(SeedCnnCifar10, "seed_cnn_cifar10", pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def seed_cnn_fmnist(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Small BN CNN for Fashion-MNIST (seed report 002; this project's design); 28x28 or 32x32 input."""
    return _build(SeedCnnFmnist, "seed_cnn_fmnist", pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def lenet5(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """LeNet-5 (tanh, average pooling); 32x32 input, smaller inputs zero-padded to 32x32."""
    return _build(LeNet5, "lenet5", pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def mini_googlenet(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """MiniGoogLeNet for CIFAR-10 (seed report 004)."""
    return _build(MiniGoogLeNet, "mini_googlenet", pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def googlenet_tv(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """torchvision GoogLeNet without auxiliary heads.

    ``pretrained=True`` raises ValueError: timm cannot fetch torchvision's weights; ``harness.weights`` loads a
    torchvision GoogLeNet file (``--pretrained-file``) into a model built with ``pretrained=False``.
    """
    return _build(GoogLeNetTV, "googlenet_tv", pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def resnet50_mlp_head(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """timm resnet50 + the seed report 003 MLP head.

    ``pretrained``, ``pretrained_cfg`` (e.g. the tag in ``resnet50_mlp_head.tv_in1k``), ``pretrained_cfg_overlay``,
    ``cache_dir``, ``drop_rate`` and ``drop_path_rate`` go to the resnet50 backbone; the head is always new.
    """
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = ResNet50MLPHead(num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    cfg = timm.models.get_pretrained_cfg("resnet50_mlp_head").to_dict()
    backbone_cfg = getattr(model.backbone, "pretrained_cfg", {})
    cfg.update({k: backbone_cfg[k] for k in _DATA_CFG_KEYS if k in backbone_cfg})
    model.pretrained_cfg = model.default_cfg = cfg
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
