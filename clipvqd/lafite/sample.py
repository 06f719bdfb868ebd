"""Sampling LAFITE: the condition is the normalised CLIP *text* embedding of each prompt, no noise.

Image i of a sample plan draws its z from its own stream (seed, i), so an image does not depend on the
batch it is generated in; the synthesis noise is the generator's stored constant maps (noise_mode
'const', StyleGAN2's generate default), so a seed fixes every image.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm import tqdm

from clipvqd.manifest import to_uint8
from clipvqd.training.seeding import generator_for

from .conditioning import text_condition
from .generator import Generator

_STREAM_SAMPLE = 21


@torch.no_grad()
def generate_images(generator: Generator, text_embeddings: Tensor, seed: int, batch_size: int = 64,
                    noise_mode: str = "const", progress: bool = True) -> Tensor:
    """uint8 (N, 3, R, R) images, one per row of `text_embeddings` (N, D)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(generator.parameters()).device
    conditions = text_condition(text_embeddings)
    z_dim = generator.config.z_dim
    out = []
    for start in tqdm(range(0, len(conditions), batch_size), desc="lafite sample", unit="batch", disable=not progress):
        rows = range(start, min(start + batch_size, len(conditions)))
        z = torch.stack([torch.randn(z_dim, generator=generator_for(seed, _STREAM_SAMPLE, i)) for i in rows])
        noise_generator = generator_for(seed, _STREAM_SAMPLE, -1, start) if noise_mode == "random" else None
        images = generator(z.to(device), conditions[start:rows.stop].to(device), noise_mode, noise_generator)
        out.append(to_uint8(images.float().cpu()))
    return torch.cat(out) if out else torch.empty(0, 3, generator.config.resolution, generator.config.resolution,
                                                  dtype=torch.uint8)
