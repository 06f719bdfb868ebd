"""Gumbel-softmax quantizer (taming-transformers' GumbelQuantize) and its temperature schedule.

Each position of the encoder output gets logits over K codes. Training draws a code per position
from the Gumbel-softmax relaxation: the forward pass uses the hard one-hot sample, gradients flow
through the soft sample (straight-through). Inference takes the argmax of the logits, so encoding is
deterministic. A KL term to the uniform prior keeps the code posterior from collapsing onto few codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def cosine_temperature(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Gumbel temperature at `step`: `start` at 0, cosine decay to `end` at `anneal_steps`, then flat."""
    if anneal_steps <= 0:
        return end
    progress = min(max(step, 0) / anneal_steps, 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


@dataclass
class Quantized:
    """What the quantizer hands to the decoder and to the losses."""

    vectors: torch.Tensor  # (B, embed_dim, h, w): codebook vectors (mixed by `assignments`)
    codes: torch.Tensor  # (B, h, w) long: the code chosen per position
    assignments: torch.Tensor  # (B, K, h, w): one-hot (hard, straight-through) or soft weights
    kl: torch.Tensor  # scalar: mean over positions of KL(q(code | x) || uniform), unweighted


class GumbelQuantizer(nn.Module):
    def __init__(self, in_channels: int, codebook_size: int, embed_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.to_logits = nn.Conv2d(in_channels, codebook_size, 1)
        self.codebook = nn.Embedding(codebook_size, embed_dim)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.to_logits(features)

    def kl_to_uniform(self, logits: torch.Tensor) -> torch.Tensor:
        log_q = F.log_softmax(logits, dim=1)
        # KL(q || 1/K) = sum_k q_k (log q_k + log K), averaged over batch and positions.
        return (log_q.exp() * (log_q + math.log(self.codebook_size))).sum(dim=1).mean()

    def embed(self, assignments: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkhw,kd->bdhw", assignments, self.codebook.weight)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> codebook vectors (B, embed_dim, h, w)."""
        if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise ValueError(f"codes range over [{low}, {high}], outside the codebook [0, {self.codebook_size - 1}]")
        return rearrange(self.codebook(codes.long()), "b h w c -> b c h w")

    def sample(self, features: torch.Tensor, temperature: float, hard: bool = True,
               generator: torch.Generator | None = None) -> Quantized:
        """Training path: a Gumbel-softmax draw per position (straight-through when `hard`)."""
        logits = self.logits(features)
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        # Gumbel(0, 1) noise; the clamps keep log() finite at the ends of float precision.
        exponential = (-torch.log(uniform.clamp_min(1e-20))).clamp_min(1e-20)
        gumbel = -torch.log(exponential)
        soft = F.softmax((logits + gumbel) / temperature, dim=1)
        codes = soft.argmax(dim=1)
        if hard:
            one_hot = rearrange(F.one_hot(codes, self.codebook_size), "b h w k -> b k h w").to(soft.dtype)
            # Forward value is the one-hot, gradient is that of `soft`.
            assignments = one_hot - soft.detach() + soft
        else:
            assignments = soft
        return Quantized(self.embed(assignments), codes, assignments, self.kl_to_uniform(logits))

    def deterministic(self, features: torch.Tensor, allowed_codes: torch.Tensor | None = None) -> Quantized:
        """Inference path: the most likely code per position, optionally among `allowed_codes` only."""
        logits = self.logits(features)
        if allowed_codes is not None:
            # Restricting the argmax (rather than remapping afterwards) keeps the model's own next-best
            # choice when its favourite code is outside a compacted vocabulary.
            mask = torch.full((self.codebook_size,), float("-inf"), device=logits.device, dtype=logits.dtype)
            mask[allowed_codes.to(logits.device).long()] = 0.0
            codes = (logits + mask[None, :, None, None]).argmax(dim=1)
        else:
            codes = logits.argmax(dim=1)
        one_hot = rearrange(F.one_hot(codes, self.codebook_size), "b h w k -> b k h w").to(logits.dtype)
        return Quantized(self.embed(one_hot), codes, one_hot, self.kl_to_uniform(logits))
