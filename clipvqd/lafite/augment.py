"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al., NeurIPS 2020).

Every image the discriminator sees, real or generated, in the D update and in the G update alike, first
passes through the same random transformations, so D cannot tell real from fake by a feature that the
transformations destroy, and G's gradient flows back through them (they are differentiable in the
pixels). Zhao et al. show that this is what keeps a GAN's discriminator from over-fitting when it has
few images or few steps. Three policies, as in the paper (images in [-1, 1]):

* ``color``: per image, add a brightness offset U(-0.5, 0.5), scale each pixel's deviation from its
  channel mean ("saturation") by U(0, 2), and the deviation from the image mean ("contrast") by
  U(0.5, 1.5);
* ``translation``: shift each image by up to 1/8 of its side in x and in y (integer pixels), filling with 0;
* ``cutout``: set a square of half the image side, centred at a uniform position, to 0.

Neither the official LAFITE nor clip2latent uses it (LAFITE's train.py: ``aug = 'noaug'``); it is an
option of the world defaults, which train for minutes instead of days. The random draws come from a
caller's `torch.Generator`, so a resumed run repeats them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .config import AUGMENT_POLICIES as POLICIES


def _uniform(batch: int, low: float, high: float, generator: torch.Generator, like: Tensor) -> Tensor:
    values = torch.rand(batch, 1, 1, 1, generator=generator) * (high - low) + low
    return values.to(like.device, like.dtype)


def color(images: Tensor, generator: torch.Generator) -> Tensor:
    batch = images.shape[0]
    images = images + _uniform(batch, -0.5, 0.5, generator, images)
    channel_mean = images.mean(dim=1, keepdim=True)
    images = (images - channel_mean) * _uniform(batch, 0.0, 2.0, generator, images) + channel_mean
    image_mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - image_mean) * _uniform(batch, 0.5, 1.5, generator, images) + image_mean


def translation(images: Tensor, generator: torch.Generator, fraction: float = 0.125) -> Tensor:
    """Shift image b by (dy_b, dx_b) pixels, |d| <= fraction * side; vacated pixels become 0."""
    batch, _, height, width = images.shape
    max_y, max_x = int(height * fraction), int(width * fraction)
    dy = torch.randint(-max_y, max_y + 1, (batch,), generator=generator).tolist()
    dx = torch.randint(-max_x, max_x + 1, (batch,), generator=generator).tolist()
    padded = torch.nn.functional.pad(images, (max_x, max_x, max_y, max_y))
    # Output pixel (y, x) shows input pixel (y - dy, x - dx), i.e. padded (y - dy + max_y, x - dx + max_x).
    return torch.stack([padded[b, :, max_y - dy[b]:max_y - dy[b] + height, max_x - dx[b]:max_x - dx[b] + width]
                        for b in range(batch)])


def cutout(images: Tensor, generator: torch.Generator, fraction: float = 0.5) -> Tensor:
    """Zero a (fraction * side)-square centred at a uniform pixel of each image (clipped at the border)."""
    batch, _, height, width = images.shape
    size_y, size_x = int(height * fraction), int(width * fraction)
    centre_y = torch.randint(0, height, (batch, 1), generator=generator)
    centre_x = torch.randint(0, width, (batch, 1), generator=generator)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2
    rows = torch.arange(height).view(1, -1)
    columns = torch.arange(width).view(1, -1)
    inside_rows = (rows >= top) & (rows < top + size_y)            # (B, H)
    inside_columns = (columns >= left) & (columns < left + size_x)  # (B, W)
    keep = ~(inside_rows[:, :, None] & inside_columns[:, None, :])  # (B, H, W)
    return images * keep[:, None].to(images.device, images.dtype)


_FUNCTIONS = {"color": color, "translation": translation, "cutout": cutout}


def check_policies(policies: Sequence[str]) -> None:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or len(set(policies)) != len(policies):
        raise ValueError(f"augmentation policies must be distinct names among {list(POLICIES)}, got {list(policies)}")


def diff_augment(images: Tensor, policies: Sequence[str], generator: torch.Generator) -> Tensor:
    """Apply `policies` in the order given; no policies returns `images` itself."""
    check_policies(policies)
    for policy in policies:
        images = _FUNCTIONS[policy](images, generator)
    return images
