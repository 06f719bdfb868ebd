"""The condition vector: noisy CLIP image embeddings in training, clean text embeddings at inference,
and the learnable null condition used for classifier-free guidance (docs/design.md §4).

Language-free training never sees text. The condition is the L2-normalised CLIP *image* embedding,
pushed off in a random direction of length alpha and renormalised,
    c = normalize(e / |e| + alpha * eps / |eps|),   eps ~ N(0, I),
so that the model learns a neighbourhood of the image embedding wide enough to contain the
(different, but nearby on the sphere) text embedding used at inference. In high dimension eps is
almost orthogonal to e, so cos(c, e) ~ 1 / sqrt(1 + alpha^2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_EPS = 1e-12


def l2_normalize(x: Tensor) -> Tensor:
    """Rows of `x` scaled to unit L2 norm (computed in float32 at least, returned in that dtype)."""
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return x / x.norm(dim=-1, keepdim=True).clamp(min=_EPS)


def noisy_image_condition(image_embedding: Tensor, alpha: float, generator: torch.Generator | None = None) -> Tensor:
    """normalize(e/|e| + alpha * eps/|eps|) for `(B, D)` CLIP image embeddings (eps drawn from
    `generator`, on the generator's device, then moved to the embedding's device)."""
    if alpha < 0:
        raise ValueError(f"condition noise alpha must be >= 0, got {alpha}")
    e = l2_normalize(image_embedding)
    gen_device = generator.device if generator is not None else e.device
    noise = torch.randn(e.shape, generator=generator, device=gen_device, dtype=e.dtype).to(e.device)
    return _push_off(e, alpha, noise)


def condition_from_noise(image_embedding: Tensor, alpha: float, noise: Tensor) -> Tensor:
    """normalize(e/|e| + alpha * eps/|eps|) for `(B, D)` embeddings and already drawn standard normal `eps`
    of the same shape: the arithmetic of `noisy_image_condition`, for callers that draw eps themselves."""
    if alpha < 0:
        raise ValueError(f"condition noise alpha must be >= 0, got {alpha}")
    e = l2_normalize(image_embedding)
    return _push_off(e, alpha, noise.to(device=e.device, dtype=e.dtype))


def _push_off(unit_embedding: Tensor, alpha: float, noise: Tensor) -> Tensor:
    return l2_normalize(unit_embedding + alpha * l2_normalize(noise))


def text_condition(text_embedding: Tensor) -> Tensor:
    """The inference condition: the L2-normalised CLIP text embedding, no noise."""
    return l2_normalize(text_embedding)


class NullCondition(nn.Module):
    """The learnable "no condition" vector for classifier-free guidance.

    Used through `normalized()` everywhere (training substitution and sampling alike), so the model
    always sees it on the same unit sphere as real conditions.
    """

    def __init__(self, condition_dim: int):
        super().__init__()
        self.vector = nn.Parameter(torch.randn(condition_dim))

    def normalized(self) -> Tensor:
        return self.vector / self.vector.norm().clamp(min=_EPS)

    def forward(self, batch_size: int) -> Tensor:
        return self.normalized().unsqueeze(0).expand(batch_size, -1)


def draw_null_mask(batch_size: int, probability: float, generator: torch.Generator | None = None) -> Tensor:
    """`(B,)` bool: which samples have their condition replaced by the null condition."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"null-condition probability must be in [0, 1], got {probability}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(batch_size, generator=generator, device=gen_device) < probability


def substitute_null(condition: Tensor, null_condition: Tensor, use_null: Tensor) -> Tensor:
    """Replace rows of `(B, D)` `condition` by the normalised `(D,)` null vector where `use_null`.

    `torch.where` keeps the null vector in the autograd graph even when no row is replaced (its
    gradient is then zero), so data-parallel training never sees it as an unused parameter.
    """
    use_null = use_null.to(condition.device).view(-1, 1)
    return torch.where(use_null, null_condition.to(condition.dtype).unsqueeze(0), condition)
