"""CLIP image embeddings of generated images, differentiable with respect to the images.

`ClipEncoder.encode_images` takes uint8 images under no_grad, which would cut the itc gradient. Here the
same preprocessing (to [0, 1], bicubic resize to the CLIP input size, the CLIP's mean/std) is applied to
float images in [-1, 1] inside the graph; the CLIP weights are frozen, gradients flow only to the images.
The official code instead pads small images randomly to 224 px or takes random crops
(training/loss.py `full_preprocess`); the worlds' stand-in CLIPs take the images' own size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clipvqd.clip.encoder import ClipEncoder


def freeze(encoder: ClipEncoder) -> ClipEncoder:
    encoder.model.eval()
    for parameter in encoder.model.parameters():
        parameter.requires_grad_(False)
    return encoder


def clip_image_features(encoder: ClipEncoder, images: Tensor) -> Tensor:
    """(B, 3, H, W) float in [-1, 1] -> (B, D) unit-norm CLIP image embeddings, with autograd."""
    pixels = (images.to(encoder.device, torch.float32) + 1.0) * 0.5
    size = encoder.input_resolution
    if pixels.shape[-1] != size or pixels.shape[-2] != size:
        pixels = F.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False,
                               antialias=pixels.shape[-1] > size)
    pixels = (pixels - encoder.mean) / encoder.std
    return F.normalize(encoder.model.encode_image(pixels).float(), dim=-1)
