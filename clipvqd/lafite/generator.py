"""LAFITE's generator: a StyleGAN2 mapping + synthesis network whose every style also sees h'.

z -> (2nd-moment normalisation, `mapping_layers` equalised lrelu layers at lr x0.01) -> w. Synthesis:
a learned 4x4 constant, then per resolution two modulated 3x3 convs (the first up-samples) with noise
inputs, and a ToRGB whose output is added to the up-sampled image so far ("skip" architecture). Each
style is affine([w, MLP(h')]) (see `layers.StyleAffine`), which is how the official code injects the text
feature; the mapping network itself is unconditional there too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MODULATED_CONV_FORMS, LafiteModelConfig
from .layers import EqualLinear, StyleAffine, SynthesisLayer, ToRGB


class MappingNetwork(nn.Module):
    def __init__(self, config: LafiteModelConfig):
        super().__init__()
        dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
        self.layers = nn.Sequential(*[
            EqualLinear(dims[i], dims[i + 1], lr_multiplier=config.mapping_lr_multiplier, activation=True)
            for i in range(config.mapping_layers)
        ])

    def forward(self, z: Tensor) -> Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.layers(z)


class SynthesisBlock(nn.Module):
    def __init__(self, config: LafiteModelConfig, resolution: int):
        super().__init__()
        out_channels = config.channels(resolution)

        def style(channels: int) -> StyleAffine:
            return StyleAffine(config.w_dim, config.condition_dim, config.condition_hidden, channels,
                               config.mapping_lr_multiplier)

        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.conv0 = None
        else:
            in_channels = config.channels(resolution // 2)
            self.conv0 = SynthesisLayer(in_channels, out_channels, resolution, style(in_channels), up=True,
                                        use_noise=config.use_noise)
        self.conv1 = SynthesisLayer(out_channels, out_channels, resolution, style(out_channels), up=False,
                                    use_noise=config.use_noise)
        self.torgb = ToRGB(out_channels, style(out_channels))

    def forward(self, x: Tensor | None, img: Tensor | None, w: Tensor, condition: Tensor, noise_mode: str,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        if self.conv0 is None:
            x = self.const.unsqueeze(0).expand(w.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, w, condition, noise_mode, generator)
        x = self.conv1(x, w, condition, noise_mode, generator)
        rgb = self.torgb(x, w, condition)
        if img is not None:
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = img + rgb
        return x, rgb


class Generator(nn.Module):
    """G(z, h') -> images (B, 3, resolution, resolution), roughly in [-1, 1] (not clamped)."""

    def __init__(self, config: LafiteModelConfig):
        super().__init__()
        self.config = config
        self.mapping = MappingNetwork(config)
        self.blocks = nn.ModuleList([SynthesisBlock(config, r) for r in config.block_resolutions])

    def set_modulated_conv(self, form: str) -> "Generator":
        """How every synthesis layer and ToRGB computes its modulated convolution ('grouped' or 'scaled',
        `layers.modulated_conv2d`): the same function, different kernels. Not part of the weights."""
        if form not in MODULATED_CONV_FORMS:
            raise ValueError(f"modulated convolution form must be one of {MODULATED_CONV_FORMS}, got '{form}'")
        for module in self.modules():
            if isinstance(module, (SynthesisLayer, ToRGB)):
                module.modulated_conv = form
        return self

    def forward(self, z: Tensor, condition: Tensor, noise_mode: str = "random",
                generator: torch.Generator | None = None) -> Tensor:
        """z: (B, z_dim); condition: (B, condition_dim), unit-norm h' (training) or text embedding (sampling).
        noise_mode: 'random' (drawn from `generator`), 'const' (the stored noise maps) or 'none'."""
        if z.shape[1:] != (self.config.z_dim,) or condition.shape != (z.shape[0], self.config.condition_dim):
            raise ValueError(f"expected z (B, {self.config.z_dim}) and condition (B, {self.config.condition_dim}), "
                             f"got {tuple(z.shape)} and {tuple(condition.shape)}")
        w = self.mapping(z)
        x = img = None
        for block in self.blocks:
            x, img = block(x, img, w, condition, noise_mode, generator)
        return img
