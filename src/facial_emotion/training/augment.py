"""Batched augmentation on tensors: one affine warp (flip, rotation, scale, shift, crop) per batch
through ``grid_sample``, then random erasing. Everything draws from the given generator so a
seeded run is reproducible; it runs on the device the faces are on (CPU or GPU), with a generator
of that device."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from facial_emotion.model_file import CROP


@dataclass
class AugmentConfig:
    crop: int = CROP  # output size; the 48x48 face is cropped to this (random in training)
    rotate_deg: float = 10.0
    scale: float = 0.15
    shift: float = 0.10  # fraction of the face size
    flip: bool = True
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.2)


def random_affine(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """images: float (N, 1, 48, 48) in 0..255 -> (N, 1, crop, crop)."""
    n, _, h, w = images.shape
    dev = images.device  # the generator lives on the same device: draws stay there, no copies
    angle = (torch.rand(n, generator=gen, device=dev) * 2 - 1) * math.radians(cfg.rotate_deg)
    scale = 1 + (torch.rand(n, generator=gen, device=dev) * 2 - 1) * cfg.scale
    flip = (
        torch.where(torch.rand(n, generator=gen, device=dev) < 0.5, -1.0, 1.0)
        if cfg.flip
        else torch.ones(n, device=dev)
    )
    shift = (torch.rand(n, 2, generator=gen, device=dev) * 2 - 1) * cfg.shift * 2  # grid units span 2
    # The output grid covers crop/size of the input, i.e. a (random-position) crop after the warp.
    zoom = (cfg.crop / w) / scale
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, cfg.crop, cfg.crop], align_corners=False)
    # Border padding: FER faces fill the frame, a black border would be a shortcut feature.
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_erase(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape
    dev = images.device
    area = torch.empty(n, device=dev).uniform_(*cfg.erase_area, generator=gen) * h * w
    aspect = torch.exp(torch.empty(n, device=dev).uniform_(math.log(0.3), math.log(3.3), generator=gen))
    eh = (area * aspect).sqrt().clamp(1, h).round()
    ew = (area / aspect).sqrt().clamp(1, w).round()
    y0 = (torch.rand(n, generator=gen, device=dev) * (h - eh + 1)).floor()
    x0 = (torch.rand(n, generator=gen, device=dev) * (w - ew + 1)).floor()
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = (
        (ys >= y0.view(n, 1, 1))
        & (ys < (y0 + eh).view(n, 1, 1))
        & (xs >= x0.view(n, 1, 1))
        & (xs < (x0 + ew).view(n, 1, 1))
    )
    box &= (torch.rand(n, generator=gen, device=dev) < cfg.erase_p).view(n, 1, 1)
    noise = torch.rand(images.shape, generator=gen, device=dev) * 255
    return torch.where(box.unsqueeze(1), noise, images)


def augment(batch_u8: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """uint8 (N, 48, 48) -> float (N, 1, crop, crop) ready for the net."""
    x = batch_u8.unsqueeze(1).float()
    x = random_affine(x, cfg, gen)
    if cfg.erase_p > 0:
        x = random_erase(x, cfg, gen)
    return x


def center_crop(batch_u8: torch.Tensor, crop: int) -> torch.Tensor:
    s = (batch_u8.shape[-1] - crop) // 2
    return batch_u8[:, s : s + crop, s : s + crop].unsqueeze(1).float()
