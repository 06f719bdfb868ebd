"""PatchGAN discriminator (pix2pix's NLayerDiscriminator, as taming-transformers uses it).

It scores overlapping patches rather than whole images, so the GAN loss sharpens local texture
while L1/LPIPS keep the global content.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Image (B, 3, R, R) -> patch logits (B, 1, P, P); `layers` strided convs set the patch size."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError(f"PatchDiscriminator needs at least one strided layer, got {layers}")
        modules: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = channels
        for index in range(1, layers + 1):
            # The last widening conv keeps the resolution (stride 1), as pix2pix's layout does.
            stride = 2 if index < layers else 1
            next_width = channels * min(2 ** index, 8)
            modules += [
                # No bias: BatchNorm's shift makes it redundant.
                nn.Conv2d(width, next_width, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(next_width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = next_width
        modules.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*modules)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def _init_weights(module: nn.Module) -> None:
    # DCGAN initialisation, which pix2pix and taming use for this discriminator.
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
