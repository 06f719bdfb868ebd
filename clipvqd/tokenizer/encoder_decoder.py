"""Convolutional encoder and decoder of the VQGAN (the taming-transformers layout).

The encoder walks down the resolution levels of `channel_multipliers` (residual blocks, self-attention
at the configured sides, a strided conv between levels) and ends at `z_channels` features per token;
the decoder mirrors it with nearest-neighbour upsampling and one extra residual block per level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from clipvqd.tokenizer.config import TokenizerConfig


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    # eps=1e-6 as in taming; the default 1e-5 slightly changes the trained function.
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # A 1x1 projection only where the width changes, so the skip path stays an identity elsewhere.
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over all positions of a feature map, with a residual connection."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        # One head whose sequence is the positions: (B, 1, H*W, C) for query, key and value.
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (qkv heads c) h w -> qkv b heads (h w) c", qkv=3, heads=1)
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(rearrange(attended, "b 1 (h w) c -> b c h w", h=height))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pad right/bottom only: a 3x3 stride-2 conv then maps an even side exactly to half of it.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """The residual (and attention) blocks of one resolution, followed by an optional resampler."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, attention: bool, groups: int,
                 dropout: float, resample: nn.Module | None):
        super().__init__()
        widths = [in_channels] + [out_channels] * blocks
        self.blocks = nn.ModuleList(
            ResidualBlock(widths[i], widths[i + 1], groups, dropout) for i in range(blocks)
        )
        self.attentions = nn.ModuleList(
            SpatialSelfAttention(out_channels, groups) for _ in range(blocks if attention else 0)
        )
        self.resample = resample if resample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            x = block(x)
            if self.attentions:
                x = self.attentions[index](x)
        return self.resample(x)


class Middle(nn.Module):
    def __init__(self, channels: int, groups: int, dropout: float):
        super().__init__()
        self.block1 = ResidualBlock(channels, channels, groups, dropout)
        self.attention = SpatialSelfAttention(channels, groups)
        self.block2 = ResidualBlock(channels, channels, groups, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.attention(self.block1(x)))


class Encoder(nn.Module):
    """Image (B, in_channels, R, R) -> features (B, z_channels, R/f, R/f)."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        c, groups = config, config.norm_groups
        widths = [c.channels * m for m in c.channel_multipliers]
        self.conv_in = nn.Conv2d(c.in_channels, c.channels, 3, padding=1)
        levels = []
        side, previous = c.resolution, c.channels
        for index, width in enumerate(widths):
            last = index == len(widths) - 1
            levels.append(Level(previous, width, c.num_res_blocks, side in c.attention_resolutions, groups,
                                c.dropout, None if last else Downsample(width)))
            previous = width
            side = side if last else side // 2
        self.levels = nn.ModuleList(levels)
        self.middle = Middle(previous, groups, c.dropout)
        self.norm_out = group_norm(previous, groups)
        self.conv_out = nn.Conv2d(previous, c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            h = level(h)
        h = self.middle(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Features (B, z_channels, R/f, R/f) -> image (B, in_channels, R, R), unbounded (trained toward [-1, 1])."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        c, groups = config, config.norm_groups
        widths = [c.channels * m for m in c.channel_multipliers]
        side = c.resolution // c.downsampling_factor
        previous = widths[-1]
        self.conv_in = nn.Conv2d(c.z_channels, previous, 3, padding=1)
        self.middle = Middle(previous, groups, c.dropout)
        levels = []
        # Lowest resolution first; taming gives every decoder level one residual block more than the encoder.
        for index in reversed(range(len(widths))):
            width = widths[index]
            first = index == 0
            levels.append(Level(previous, width, c.num_res_blocks + 1, side in c.attention_resolutions, groups,
                                c.dropout, None if first else Upsample(width)))
            previous = width
            side = side if first else side * 2
        self.levels = nn.ModuleList(levels)
        self.norm_out = group_norm(previous, groups)
        self.conv_out = nn.Conv2d(previous, c.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.middle(self.conv_in(z))
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive GAN weight balances gradients at (taming's `get_last_layer`)."""
        return self.conv_out.weight
