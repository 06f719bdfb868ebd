"""The prior's Gaussian diffusion: noise schedule, forward noising, and the posterior from a predicted x0.

As in DALLE2-pytorch 0.2.38 (`BaseGaussianDiffusion`), which clip2latent's `LatentPrior` inherits:

    cosine schedule   a_bar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2) / a_bar(0),  s = 0.008,
                      beta_t = 1 - a_bar(t+1)/a_bar(t), clipped to [0, 0.999]          (Nichol & Dhariwal 2021)
    forward           x_t = sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) eps
    posterior         q(x_{t-1} | x_t, x0) = N(c1 x0 + c2 x_t, beta_t (1 - a_bar_{t-1}) / (1 - a_bar_t))
                      c1 = beta_t sqrt(a_bar_{t-1}) / (1 - a_bar_t),  c2 = (1 - a_bar_{t-1}) sqrt(alpha_t) / (1 - a_bar_t)

Few-step sampling respaces the schedule the way clip2latent's `set_timestep_skip` does: keep the timesteps
0, k, 2k, ... (k = T / steps) and recompute the betas between consecutive kept ones, so the cumulative
products at the kept timesteps are unchanged. Timesteps are 0-based, t = 0 being the least noisy.

The released `set_timestep_skip` (clip2latent/latent_prior.py) rewrites the posterior mean coefficients
and `posterior_variance` at the kept timesteps but not `posterior_log_variance_clipped`, which
DALLE2-pytorch 0.2.38's `p_sample` draws its noise with (`q_posterior` returns it): the official sampler
therefore adds, at each kept timestep, the noise of the 1000-step chain's single step there, far less
than the respaced posterior's. `respaced(steps, full_schedule_variance=True)` reproduces that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def cosine_betas(timesteps: int, s: float = 0.008) -> Tensor:
    """(T,) float64 betas of the cosine schedule."""
    t = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64) / timesteps
    alphas_cumprod = torch.cos((t + s) / (1 + s) * math.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(0, 0.999)


def linear_betas(timesteps: int) -> Tensor:
    """(T,) float64 betas of DDPM's linear schedule, scaled to T as in DALLE2-pytorch."""
    scale = 1000 / timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)


def make_betas(schedule: str, timesteps: int) -> Tensor:
    if schedule == "cosine":
        return cosine_betas(timesteps)
    if schedule == "linear":
        return linear_betas(timesteps)
    raise ValueError(f"beta schedule must be 'cosine' or 'linear', got '{schedule}'")


def _gather(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


@dataclass
class GaussianSchedule:
    """Schedule quantities (float64) for timesteps 0..len(betas)-1; `timesteps` names them in the full
    schedule (they differ only in a respaced one)."""

    betas: Tensor
    timesteps: Tensor
    log_variance_override: Tensor | None = None
    """Posterior log-variances to sample with instead of this schedule's own (see `respaced`)."""

    def __post_init__(self) -> None:
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.posterior_variance = self.betas * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)
        # log of the variance clipped at its t=1 value: the t=0 variance is 0 (DDPM's convention)
        self.posterior_log_variance = torch.log(torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))
        if self.log_variance_override is not None:
            if self.log_variance_override.shape != self.betas.shape:
                raise ValueError(f"{len(self.log_variance_override)} log-variances for {len(self.betas)} timesteps")
            self.posterior_log_variance = self.log_variance_override.to(torch.float64)
        self.posterior_mean_coef1 = self.betas * self.alphas_cumprod_prev.sqrt() / (1 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1 - self.alphas_cumprod)

    @classmethod
    def create(cls, schedule: str, timesteps: int) -> "GaussianSchedule":
        return cls(make_betas(schedule, timesteps), torch.arange(timesteps))

    def __len__(self) -> int:
        return len(self.betas)

    def respaced(self, steps: int, full_schedule_variance: bool = False) -> "GaussianSchedule":
        """The schedule on every (T/steps)-th timestep, starting at 0 (clip2latent's set_timestep_skip).

        full_schedule_variance: sample with this schedule's own posterior variance at each kept timestep
        (the released sampler's behaviour, see the module docstring) instead of the respaced one."""
        total = len(self)
        if steps < 1 or total % steps:
            raise ValueError(f"sampling steps must divide the {total} diffusion timesteps, got {steps}")
        skip = total // steps
        kept = torch.arange(0, total, skip)
        cumprod = self.alphas_cumprod[kept]
        previous = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
        override = self.posterior_log_variance[kept] if full_schedule_variance else None
        return GaussianSchedule(1 - cumprod / previous, self.timesteps[kept], override)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t given x0 (t indexes this schedule)."""
        return (_gather(self.alphas_cumprod.sqrt(), t, x0) * x0
                + _gather((1 - self.alphas_cumprod).sqrt(), t, x0) * noise)

    def x0_from_noise(self, x_t: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        return (_gather((1 / self.alphas_cumprod).sqrt(), t, x_t) * x_t
                - _gather((1 / self.alphas_cumprod - 1).sqrt(), t, x_t) * noise)

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(x_{t-1} | x_t, x0)."""
        mean = _gather(self.posterior_mean_coef1, t, x_t) * x0 + _gather(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, _gather(self.posterior_log_variance, t, x_t)
