"""Architectures sized for 40x40 grayscale faces, in a small registry.

Every net takes raw pixel values (0..255, shape N x 1 x H x W) and normalises inside, so the
exported ONNX file carries its own preprocessing and inference needs no torch-side constants.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PIXEL_MEAN = 129.4  # FER-2013 Training pixel mean and std (0..255 scale)
PIXEL_STD = 65.0

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHITECTURES[name] = fn
        return fn

    return deco


def create_model(name: str, num_classes: int = 7) -> nn.Module:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name](num_classes=num_classes)


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - PIXEL_MEAN) / PIXEL_STD


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class VGG(nn.Module):
    """Stages of `convs` 3x3 conv+BN+ReLU, max-pool between stages, global average pooling."""

    def __init__(self, widths: tuple[int, ...], convs: int = 2, num_classes: int = 7, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [Normalize()]
        cin = 1
        for i, w in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(convs):
                layers.append(conv_bn_relu(cin, w))
                cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-style: 3x3 stem (no early downsampling, the faces are small), BasicBlock stages."""

    def __init__(
        self, widths: tuple[int, ...], blocks: tuple[int, ...], num_classes: int = 7, dropout: float = 0.2
    ):
        super().__init__()
        layers: list[nn.Module] = [Normalize(), conv_bn_relu(1, widths[0])]
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("vgg-s")
def vgg_small(num_classes: int = 7) -> nn.Module:
    """The 1.2 M-parameter baseline (32-64-128-256)."""
    return VGG((32, 64, 128, 256), num_classes=num_classes)


@register("vgg-m")
def vgg_medium(num_classes: int = 7) -> nn.Module:
    return VGG((48, 96, 192, 384), num_classes=num_classes)


@register("vgg-l")
def vgg_large(num_classes: int = 7) -> nn.Module:
    return VGG((64, 128, 256, 512), num_classes=num_classes)


@register("resnet-s")
def resnet_small(num_classes: int = 7) -> nn.Module:
    return ResNet((32, 64, 128, 256), (2, 2, 2, 2), num_classes=num_classes)


@register("resnet-m")
def resnet_medium(num_classes: int = 7) -> nn.Module:
    return ResNet((48, 96, 192, 384), (1, 2, 2, 1), num_classes=num_classes)


@register("resnet18")
def resnet18(num_classes: int = 7) -> nn.Module:
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes=num_classes)
