"""LAFITE's discriminator: a residual StyleGAN2 discriminator with a projection onto the condition.

fromRGB (1x1) at full resolution; per resolution down to 8 a residual block (3x3 conv, 3x3 conv + 2x
down-sampling, and a 1x1 down-sampled skip, summed and scaled by sqrt(1/2)); an epilogue at 4x4
(minibatch standard deviation, 3x3 conv, fully connected) gives the feature phi(x). Outputs:

    logit(x_i, h'_i) = out(phi(x_i)) + <proj(phi(x_i)), h'_i>          (projection_reduction 'sample')
    logit(x_i, h'_i) = out(phi(x_i)) + sum_j <proj(phi(x_j)), h'_j>    (projection_reduction 'batch')
    features = proj(phi(x))   (length condition_dim)

The features are what the itd contrastive loss compares with h' (official: D returns (logits, d_fts) and
its epilogue adds the projection onto the text feature, training/networks.py DiscriminatorEpilogue). The
released code sums that projection over the whole batch and adds the one total to every logit
('batch'); a projection discriminator proper gives each image its own term ('sample').
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import DOWNSAMPLE_FORMS, LafiteModelConfig
from .layers import EqualConv2d, EqualLinear


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: Tensor) -> Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Append one feature map: the std over groups of samples, averaged over channels and pixels."""
    if group_size <= 0:
        return x
    batch, channels, height, width = x.shape
    group = min(group_size, batch)
    while batch % group:
        group -= 1
    y = x.reshape(group, -1, channels, height, width)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
    y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(group, 1, height, width)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    def __init__(self, config: LafiteModelConfig):
        super().__init__()
        self.config = config
        top = config.resolution
        self.from_rgb = EqualConv2d(3, config.channels(top), 1)
        self.blocks = nn.ModuleList([
            DiscriminatorBlock(config.channels(r), config.channels(r // 2))
            for r in reversed(config.block_resolutions[1:])
        ])
        channels = config.channels(4)
        extra = 1 if config.mbstd_group_size > 0 else 0
        self.conv = EqualConv2d(channels + extra, channels, 3)
        self.fc = EqualLinear(channels * 16, channels, activation=True)
        self.out = EqualLinear(channels, 1)
        self.proj = EqualLinear(channels, config.condition_dim)

    def set_downsample(self, form: str) -> "Discriminator":
        """How the down-sampling layers compute convolution + 2x2 average pooling ('pool' or 'strided',
        `layers.EqualConv2d`): the same function, different kernels. Not part of the weights."""
        if form not in DOWNSAMPLE_FORMS:
            raise ValueError(f"discriminator down-sampling form must be one of {DOWNSAMPLE_FORMS}, got '{form}'")
        for module in self.modules():
            if isinstance(module, EqualConv2d):
                module.downsample = form
        return self

    def forward(self, images: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, 3, R, R) in [-1, 1], condition (B, condition_dim) -> (logits (B,), features (B, D))."""
        x = self.from_rgb(images)
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_stddev(x, self.config.mbstd_group_size))
        phi = self.fc(x.flatten(1))
        features = self.proj(phi)
        projection = (features * condition.to(features.dtype)).sum(dim=1)
        if self.config.projection_reduction == "batch":
            projection = projection.sum().expand_as(projection)
        logits = self.out(phi).squeeze(1) + projection
        return logits, features
