"""StyleGAN2 building blocks (Karras et al. 2020), written for clarity rather than speed.

Equalised learning rate (weights stored at unit variance, scaled at run time), modulated/demodulated
convolution, per-pixel noise inputs with learned strength. Resampling uses bilinear up-sampling and 2x2
average pooling instead of StyleGAN2's [1,3,3,1] FIR filters (a simplification; no custom CUDA ops).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MODULATED_CONV_FORMS

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate and an optional lrelu."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_multiplier: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """Plain convolution with equalised learning rate (the discriminator's layers); with `down`, followed by
    2x2 average pooling.

    A down-sampling layer computes pool(conv(x, w)) in one of two forms (`downsample`, set by
    `Discriminator.set_downsample`): 'pool' runs the convolution at full resolution, then the pooling;
    'strided' runs one stride-2 convolution whose kernel is w folded with the 2x2 box (k + 1 taps a side;
    a 1x1 kernel pools first instead, since pooling and a 1x1 convolution commute): the same function of x
    and w, so the same gradients, for about half the multiply-adds of a 3x3 layer and no pooling pass."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation = activation
        self.down = down
        self.downsample = "pool"

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.weight_gain
        padding = self.weight.shape[-1] // 2
        if self.down and self.downsample == "strided":
            if weight.shape[-1] == 1:
                x = F.conv2d(F.avg_pool2d(x, 2), weight, self.bias)
            else:
                # pool(conv(x, w))[i] = sum_m K[m] x_padded[2i + m], K[m] = (w[m - 1] + w[m]) / 2 per axis
                # (w zero outside its taps): the 2x2 mean of the zero-padded kernel.
                folded = F.avg_pool2d(F.pad(weight, (1, 1, 1, 1)), 2, stride=1)
                x = F.conv2d(x, folded, self.bias, stride=2, padding=padding)
        else:
            x = F.conv2d(x, weight, self.bias, padding=padding)
            if self.down:
                x = F.avg_pool2d(x, 2)
        return lrelu(x) if self.activation else x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True,
                     form: str = "grouped") -> Tensor:
    """StyleGAN2's modulated convolution: per-sample weights w' = w * s (scaled by input channel), then,
    with `demodulate`, divided by their L2 norm over (in, kh, kw) so each output map has unit variance.

    x: (B, I, H, W); weight: (O, I, k, k); styles: (B, I). Two forms of the same function:
    'grouped' builds the B weight tensors and runs one grouped convolution (the official code's
    fused_modconv=True, which it uses at inference); 'scaled' scales the activations by s, runs one
    ordinary convolution with the shared weight over the whole batch, and scales its output by the
    demodulation coefficients (fused_modconv=False, what the official code trains with:
    github.com/drboog/Lafite training/networks.py:56-65 and :629-631). Their results differ only by
    float rounding; on a CPU the batched convolution is cheaper than B small groups
    (benchmarks/trainer_steps.py, README there)."""
    batch, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    if form == "scaled":
        out = F.conv2d(x * styles.reshape(batch, in_channels, 1, 1), weight, padding=kh // 2)
        if demodulate:
            # sum over (i, kh, kw) of (w[o, i] s[b, i])^2 = sum_i s[b, i]^2 |w[o, i]|^2: a (B, I) x (I, O) product
            # instead of the (B, O, I, k, k) tensor of per-sample weights.
            coefficients = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8)
            out = out * coefficients.reshape(batch, out_channels, 1, 1)
        return out
    if form != "grouped":
        raise ValueError(f"modulated convolution form must be one of {MODULATED_CONV_FORMS}, got '{form}'")
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    x = x.reshape(1, batch * in_channels, height, width)
    out = F.conv2d(x, w.reshape(batch * out_channels, in_channels, kh, kw), padding=kh // 2, groups=batch)
    return out.reshape(batch, out_channels, height, width)


class StyleAffine(nn.Module):
    """The style of one synthesis layer from w and the condition: affine([w, MLP(h')]), bias 1.

    Follows the official LAFITE generator (training/networks.py, SynthesisLayer/ToRGBLayer, structure 2):
    the text feature passes through two lrelu layers at a reduced learning rate, is concatenated with w,
    and one affine layer gives the per-channel style."""

    def __init__(self, w_dim: int, condition_dim: int, hidden: int, channels: int, lr_multiplier: float):
        super().__init__()
        self.condition_mlp = nn.Sequential(
            EqualLinear(condition_dim, hidden, lr_multiplier=lr_multiplier, activation=True),
            EqualLinear(hidden, hidden, lr_multiplier=lr_multiplier, activation=True),
        )
        self.affine = EqualLinear(w_dim + hidden, channels, bias_init=1.0)

    def forward(self, w: Tensor, condition: Tensor) -> Tensor:
        return self.affine(torch.cat([w, self.condition_mlp(condition)], dim=1))


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally after 2x up-sampling) + noise + bias + lrelu."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, style: StyleAffine, up: bool,
                 use_noise: bool):
        super().__init__()
        self.style = style
        self.up = up
        self.resolution = resolution
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.use_noise = use_noise
        self.modulated_conv = "grouped"  # the form of modulated_conv2d; Generator.set_modulated_conv sets it
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: Tensor, w: Tensor, condition: Tensor, noise_mode: str = "random",
                generator: torch.Generator | None = None) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        styles = self.style(w, condition)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, form=self.modulated_conv)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                device = generator.device if generator is not None else x.device
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, generator=generator,
                                    device=device).to(x.device, x.dtype)
            elif noise_mode == "const":
                noise = self.noise_const.to(x.dtype)
            else:
                raise ValueError(f"noise_mode must be random, const or none, got '{noise_mode}'")
            x = x + noise * self.noise_strength
        return lrelu(x + self.bias.view(1, -1, 1, 1))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, not demodulated (StyleGAN2's skip-architecture output)."""

    def __init__(self, in_channels: int, style: StyleAffine):
        super().__init__()
        self.style = style
        self.weight = nn.Parameter(torch.randn(3, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.modulated_conv = "grouped"  # the form of modulated_conv2d; Generator.set_modulated_conv sets it

    def forward(self, x: Tensor, w: Tensor, condition: Tensor) -> Tensor:
        styles = self.style(w, condition) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False, form=self.modulated_conv) \
            + self.bias.view(1, -1, 1, 1)
