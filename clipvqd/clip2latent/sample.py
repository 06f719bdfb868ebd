"""Sampling clip2latent: CLIP *text* embedding -> prior -> w -> synthesis -> uint8 images.

The condition is the prompt's CLIP text embedding as the cache stores it (L2-normalised, like the image
embeddings the prior was trained on). Sample i of a plan draws its prior noise from its own stream
(seed, i), so an image does not depend on the batch it is generated in; synthesis uses the constant noise
maps, so a seed fixes every image.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm import tqdm

from clipvqd.lafite.generator import Generator
from clipvqd.manifest import to_uint8
from clipvqd.training.seeding import generator_for

from .config import PriorSamplingConfig
from .generator import synthesis
from .prior import DiffusionPrior

_STREAM_SAMPLE = 51


@torch.no_grad()
def sample_latents(prior: DiffusionPrior, text_embeddings: Tensor, settings: PriorSamplingConfig, seed: int,
                   progress: bool = True) -> Tensor:
    """w (N, latent_dim), one per row of `text_embeddings` (N, D)."""
    device = next(prior.parameters()).device
    out = []
    starts = range(0, len(text_embeddings), settings.batch_size)
    for start in tqdm(starts, desc="clip2latent sample", unit="batch", disable=not progress):
        rows = range(start, min(start + settings.batch_size, len(text_embeddings)))
        seeds = [generator_for(seed, _STREAM_SAMPLE, i) for i in rows]
        out.append(prior.sample(text_embeddings[rows.start:rows.stop].to(device), settings.steps,
                                settings.guidance_scale, seeds,
                                full_schedule_variance=settings.posterior_variance == "full_schedule").float().cpu())
    return torch.cat(out) if out else torch.empty(0, prior.config.latent_dim)


@torch.no_grad()
def generate_images(prior: DiffusionPrior, generator: Generator, text_embeddings: Tensor,
                    settings: PriorSamplingConfig, seed: int, progress: bool = True) -> Tensor:
    """uint8 (N, 3, R, R) images, one per row of `text_embeddings`."""
    if prior.config.latent_dim != generator.config.w_dim:
        raise ValueError(f"the prior samples {prior.config.latent_dim}-d latents but the generator's w has "
                         f"{generator.config.w_dim}; they come from different runs")
    w = sample_latents(prior, text_embeddings, settings, seed, progress)
    device = next(generator.parameters()).device
    images = [to_uint8(synthesis(generator, w[i:i + settings.batch_size].to(device)).float().cpu())
              for i in range(0, len(w), settings.batch_size)]
    resolution = generator.config.resolution
    return torch.cat(images) if images else torch.empty(0, 3, resolution, resolution, dtype=torch.uint8)
