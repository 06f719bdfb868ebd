"""LAFITE's language-free condition: a pseudo text feature made from a CLIP *image* feature.

    h' = normalize(h/|h| + xi * eps/|eps|),   eps ~ N(0, I)

(Zhou et al., CVPR 2022, "LAFITE-G"). The official code (github.com/drboog/Lafite, training/loss.py,
`accumulate_gradients`, mixing_prob=1 for language-free training) builds
normalize((1 - 0.75) h + 0.75 eps/|eps|), the same direction as xi = 0.75 / 0.25 = 3. In high dimension
eps is nearly orthogonal to h, so cos(h', h) ~ 1/sqrt(1 + xi^2) (about 0.32 for xi = 3). At sampling the
condition is the L2-normalised CLIP *text* embedding, with no noise.
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-12


def l2_normalize(x: Tensor) -> Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp(min=_EPS)


def pseudo_text_feature(image_embedding: Tensor, xi: float, noise: Tensor | None = None,
                        generator: torch.Generator | None = None) -> Tensor:
    """h' for `(B, D)` image embeddings. `noise` (same shape) is drawn from `generator` when not given."""
    if xi < 0:
        raise ValueError(f"pseudo text feature noise scale xi must be >= 0, got {xi}")
    h = l2_normalize(image_embedding)
    if noise is None:
        noise = torch.randn(h.shape, generator=generator, device=generator.device if generator else h.device)
    if noise.shape != h.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} differs from the embeddings' {tuple(h.shape)}")
    return l2_normalize(h + xi * l2_normalize(noise.to(h.device)))


def text_condition(text_embedding: Tensor) -> Tensor:
    """The sampling condition: the normalised CLIP text embedding."""
    return l2_normalize(text_embedding)
