"""What the prior is conditioned on in training: the noised CLIP image embedding, sometimes dropped.

Embedding noise (clip2latent/data.py `add_noise`, embed_noise_scale 1.0 in config/data/sg2-ffhq.yaml):

    e' = |e| * normalize(e/|e| + scale * eps/|eps|),   eps ~ N(0, I)

a random direction at a fixed angle from e (cos ~ 1/sqrt(1 + scale^2), about 0.71 at scale 1) with e's norm
kept. It widens each pair's condition so that a CLIP *text* embedding, which lies away from the image
embeddings, still lands where the prior has seen conditions. Dropout for classifier-free guidance keeps a
pair's condition with probability 1 - cond_drop_prob (DALLE2-pytorch `prob_mask_like`).
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-12


def add_embedding_noise(embed: Tensor, scale: float, noise: Tensor) -> Tensor:
    """e' for (B, D) embeddings `embed` and Gaussian `noise` of the same shape."""
    if scale < 0:
        raise ValueError(f"embed_noise_scale must be >= 0, got {scale}")
    if noise.shape != embed.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} differs from the embeddings' {tuple(embed.shape)}")
    if scale == 0:
        return embed
    norm = embed.norm(dim=-1, keepdim=True).clamp(min=_EPS)
    direction = embed / norm + scale * noise / noise.norm(dim=-1, keepdim=True).clamp(min=_EPS)
    return direction / direction.norm(dim=-1, keepdim=True).clamp(min=_EPS) * norm


def keep_mask(batch: int, cond_drop_prob: float, generator: torch.Generator | None = None) -> Tensor:
    """(B,) bool: True keeps the condition; each row is dropped with probability cond_drop_prob."""
    if not 0.0 <= cond_drop_prob <= 1.0:
        raise ValueError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}")
    return torch.rand(batch, generator=generator) >= cond_drop_prob
