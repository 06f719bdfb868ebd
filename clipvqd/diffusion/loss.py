"""Training objective: the variational bound of VQ-Diffusion plus a weighted x0 cross-entropy, with
importance-sampled timesteps (docs/design.md §4).

Per sample, with step index t (the (t+1)-th noising step) and the model's x0 prediction p(x0 | x_t):
    L_t   = KL( q(x_{t-1} | x_t, x0) || sum_x0' q(x_{t-1} | x_t, x0') p(x0' | x_t) )   for t > 0
    L_0   = -log p(x0 | x_1)                                                         (decoder NLL)
    aux_t = -log p(x0 | x_t)
    loss  = (L_t + lambda * (2 - t/T) * aux_t) / (p(t) * T)          loss_over_steps = "mean" (default)
    loss  = (L_t + lambda * (2 - t/T) * aux_t) / p(t)                loss_over_steps = "sum" (official)
summed over tokens, averaged over the batch and divided by the number of tokens (nats per token).
"mean" estimates the average of the per-step terms over the T steps without bias whatever p is (its
weight is 1 while t is still drawn uniformly); "sum" estimates their sum, T times as large, which is what
VQ-Diffusion and CLIP-VQDiffusion optimise (image_synthesis/modeling/transformers/diffusion_transformer.py:
`loss1 = kl_loss / pt`, `loss2 = ... * kl_aux_loss / pt`, with pt = 1/T while t is uniform). Adam makes
the two nearly equivalent except where a gradient-norm clip acts: a clip at 0.5 bites T times harder
on the "sum" scale (docs/deviations.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .mask_and_replace import LOG_ZERO, MaskAndReplace, index_to_log_onehot
from .train_config import LOSS_OVER_STEPS

DEFAULT_AUX_WEIGHT = 5e-4


def steps_factor(loss_over_steps: str, num_steps: int) -> float:
    """The factor between the "mean" objective and the chosen one: 1 for "mean", T for "sum"."""
    if loss_over_steps == "mean":
        return 1.0
    if loss_over_steps == "sum":
        return float(num_steps)
    raise ValueError(f"loss_over_steps must be one of {LOSS_OVER_STEPS}, got {loss_over_steps!r}")


def model_log_x0(logits: Tensor) -> Tensor:
    """`(B, K, N)` logits -> `(B, K+1, N)` log p(x0 | x_t) in float32, with [MASK] at LOG_ZERO."""
    log_codes = F.log_softmax(logits.float(), dim=1).clamp(min=LOG_ZERO)
    return torch.cat([log_codes, torch.full_like(log_codes[:, :1], LOG_ZERO)], dim=1)


@dataclass
class DiffusionLoss:
    loss: Tensor
    """Scalar to backpropagate (importance-weighted, nats per token)."""
    vlb: Tensor
    """`(B,)` detached L_t per sample, summed over tokens: what the timestep sampler learns from."""
    x0_nll: Tensor
    """`(B,)` detached -log p(x0 | x_t) per sample, summed over tokens."""
    weighted: Tensor
    """`(B,)` detached per-sample objective (the terms of `loss` before averaging), summed over tokens."""


def diffusion_loss(
    schedule: MaskAndReplace,
    logits: Tensor,
    x0: Tensor,
    xt: Tensor,
    t: Tensor,
    importance_weight: Tensor,
    aux_weight: float = DEFAULT_AUX_WEIGHT,
    loss_over_steps: str = "mean",
) -> DiffusionLoss:
    """logits `(B, K, N)` of p(x0 | x_t); x0 and xt `(B, N)` int64; t `(B,)` step index;
    importance_weight `(B,)` = 1 / (p(t) T) from `TimestepSampler.sample`; loss_over_steps "mean" or "sum"
    (the module docstring). Only `loss` and `weighted` depend on it; `vlb` and `x0_nll` do not."""
    factor = steps_factor(loss_over_steps, schedule.num_steps)
    num_states, tokens = schedule.num_states, x0.shape[1]
    log_x0_model = model_log_x0(logits)
    log_x0_true = index_to_log_onehot(x0, num_states)
    log_posterior_model = schedule.log_q_posterior_from_tokens(log_x0_model, xt, t + 1, t)
    log_posterior_true = schedule.log_q_posterior_from_tokens(log_x0_true, xt, t + 1, t)

    kl = (log_posterior_true.exp() * (log_posterior_true - log_posterior_model)).sum(dim=1).sum(dim=1)
    # At t = 0 the "posterior" is p(x0 | x_1) itself, so the decoder NLL reads it at the true code.
    decoder_nll = -log_posterior_model.gather(1, x0.unsqueeze(1)).sum(dim=(1, 2))
    vlb = torch.where(t == 0, decoder_nll, kl)
    x0_nll = -log_x0_model.gather(1, x0.unsqueeze(1)).sum(dim=(1, 2))

    aux_scale = aux_weight * (2.0 - t.float() / schedule.num_steps)
    per_sample = factor * importance_weight.to(vlb.dtype) * (vlb + aux_scale * x0_nll)
    return DiffusionLoss(
        loss=per_sample.mean() / tokens, vlb=vlb.detach(), x0_nll=x0_nll.detach(), weighted=per_sample.detach()
    )


class TimestepSampler:
    """Importance sampling of the step index, as in improved DDPM and VQ-Diffusion.

    Uniform until every step has at least `min_samples_per_step` loss samples; then
    p(t) proportional to sqrt(E[L_t^2]) (an exponential moving average of each step's squared loss),
    which puts samples where the bound is large and noisy. The state is small and goes into the
    resume snapshot (`state_dict` / `load_state_dict`), so a resumed run samples exactly as before.
    """

    def __init__(self, num_steps: int, min_samples_per_step: int = 10, history_decay: float = 0.9):
        if num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {num_steps}")
        if not 0.0 <= history_decay < 1.0:
            raise ValueError(f"history_decay must be in [0, 1), got {history_decay}")
        self.num_steps = num_steps
        self.min_samples_per_step = min_samples_per_step
        self.history_decay = history_decay
        self.squared_loss_average = torch.zeros(num_steps, dtype=torch.float64)
        self.sample_counts = torch.zeros(num_steps, dtype=torch.int64)

    @property
    def is_uniform(self) -> bool:
        return bool((self.sample_counts < self.min_samples_per_step).any())

    def probabilities(self) -> Tensor:
        """`(T,)` float64 sampling probabilities of each step index."""
        if self.is_uniform:
            return torch.full((self.num_steps,), 1.0 / self.num_steps, dtype=torch.float64)
        # The small floor keeps every step reachable, so its estimate keeps being refreshed.
        weights = self.squared_loss_average.clamp(min=0).sqrt() + 1e-4
        # Index 0 is the decoder NLL, near zero because x_1 is almost x_0; sampled by its own size it
        # would almost never be visited. VQ-Diffusion gives it the weight of the next step.
        weights[0] = weights[1]
        return weights / weights.sum()

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw `(B,)` int64 step indices and their importance weights 1 / (p(t) T) (float32), on CPU."""
        probabilities = self.probabilities()
        t = torch.multinomial(probabilities, batch_size, replacement=True, generator=generator)
        return t, self.importance_weights(probabilities, t)

    def importance_weights(self, probabilities: Tensor, t: Tensor) -> Tensor:
        """1 / (p(t) T) (float32) of step indices `t` drawn from `probabilities` (this sampler's
        `probabilities()`): for callers that draw t themselves, e.g. one sample per generator."""
        return (1.0 / (probabilities[t] * self.num_steps)).float()

    def update(self, t: Tensor, vlb: Tensor) -> None:
        """Record per-sample bound terms L_t (in the given order, so every process of a data-parallel
        run that records the same gathered values ends with the same state)."""
        average = self.squared_loss_average.tolist()
        counts = self.sample_counts.tolist()
        d = self.history_decay
        for step, value in zip(t.detach().cpu().tolist(), vlb.detach().double().cpu().tolist()):
            squared = value * value
            # The first sample sets the average outright: no zero-initialised bias at the start.
            average[step] = squared if counts[step] == 0 else d * average[step] + (1 - d) * squared
            counts[step] += 1
        self.squared_loss_average = torch.tensor(average, dtype=torch.float64)
        self.sample_counts = torch.tensor(counts, dtype=torch.int64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "squared_loss_average": self.squared_loss_average.clone(),
            "sample_counts": self.sample_counts.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        average, counts = state["squared_loss_average"], state["sample_counts"]
        if average.shape != (self.num_steps,) or counts.shape != (self.num_steps,):
            raise ValueError(
                f"timestep-sampler state is for {average.shape[0]} steps, this run has {self.num_steps}"
            )
        self.squared_loss_average = average.to(torch.float64).clone()
        self.sample_counts = counts.to(torch.int64).clone()
