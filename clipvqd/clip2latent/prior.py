"""The diffusion prior: p(w | CLIP embedding), a Gaussian diffusion on z-scored latents.

clip2latent's `LatentPrior` (clip2latent/latent_prior.py) on DALLE2-pytorch 0.2.38's `DiffusionPrior`:

training   w -> (w - mean) / std (znorm_latent; the stats come with the pairs), t ~ U{0..T-1},
           x_t = sqrt(a_bar_t) w + sqrt(1 - a_bar_t) eps, the network sees (x_t, t, e', keep) and the loss
           is the MSE to w (predict_x_start) or to eps. e' is the noised embedding, keep the CFG mask.
sampling   x ~ N(0, I); for the respaced timesteps from the noisiest down: x0 = f(x, t, e, keep) (with
           guidance x0_u + s (x0_c - x0_u)), x <- posterior mean + sigma z (no noise at the last step);
           then w = x * std + mean.

Every random draw of sampling comes from one stream per sample (the caller's seed and the sample's
index), so a latent does not depend on the batch it was drawn in.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import PriorModelConfig
from .network import PriorNetwork
from .schedule import GaussianSchedule


def _autocast(device: torch.device):
    # bf16 on CUDA for speed; CPU stays in float32 so results are exactly reproducible there.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


class DiffusionPrior(nn.Module):
    def __init__(self, config: PriorModelConfig, znorm_latent: bool = True, znorm_embed: bool = False):
        super().__init__()
        self.config = config
        self.network = PriorNetwork(config)
        self.schedule = GaussianSchedule.create(config.beta_schedule, config.timesteps)
        self.znorm_latent, self.znorm_embed = znorm_latent, znorm_embed
        # The z-scoring statistics travel with the weights (as LatentPrior registers them as buffers).
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))
        self.register_buffer("embed_mean", torch.zeros(config.embed_dim))
        self.register_buffer("embed_std", torch.ones(config.embed_dim))

    def set_stats(self, latent_mean: Tensor, latent_std: Tensor, embed_mean: Tensor, embed_std: Tensor) -> None:
        for name, value in (("latent_mean", latent_mean), ("latent_std", latent_std), ("embed_mean", embed_mean),
                            ("embed_std", embed_std)):
            getattr(self, name).copy_(value.float())

    def normalise_latent(self, w: Tensor) -> Tensor:
        return (w - self.latent_mean) / self.latent_std if self.znorm_latent else w

    def denormalise_latent(self, x: Tensor) -> Tensor:
        return x * self.latent_std + self.latent_mean if self.znorm_latent else x

    def normalise_embed(self, e: Tensor) -> Tensor:
        return (e - self.embed_mean) / self.embed_std if self.znorm_embed else e

    def loss(self, w: Tensor, embed: Tensor, keep: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Training loss on a batch: raw latents w, (noised) CLIP embeddings, CFG keep mask, timesteps in
        [0, T) and the forward-process noise."""
        x0 = self.normalise_latent(w)
        x_t = self.schedule.q_sample(x0, t, noise)
        with _autocast(x_t.device):
            prediction = self.network(x_t, t, self.normalise_embed(embed), keep)
        target = x0 if self.config.predict_x_start else noise
        return F.mse_loss(prediction.float(), target)

    def predict_x0(self, x_t: Tensor, t_index: Tensor, schedule: GaussianSchedule, embed: Tensor,
                   guidance_scale: float) -> Tensor:
        """x0 at schedule index `t_index`, guided: x0_u + s (x0_c - x0_u); s = 1 runs only the conditional."""
        t = schedule.timesteps.to(x_t.device)[t_index]
        batch = x_t.shape[0]
        with _autocast(x_t.device):
            if guidance_scale == 1.0:
                out = self.network(x_t, t, embed, torch.ones(batch, dtype=torch.bool, device=x_t.device)).float()
            else:
                keep = torch.cat([torch.ones(batch, dtype=torch.bool), torch.zeros(batch, dtype=torch.bool)])
                both = self.network(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([embed, embed]),
                                    keep.to(x_t.device)).float()
                conditional, unconditional = both.chunk(2)
                out = unconditional + guidance_scale * (conditional - unconditional)
        if self.config.predict_x_start:
            return out
        return schedule.x0_from_noise(x_t, t_index, out)

    @torch.no_grad()
    def sample(self, embeds: Tensor, steps: int, guidance_scale: float, seeds: Sequence[torch.Generator],
               progress: bool = False, full_schedule_variance: bool = False) -> Tensor:
        """Raw latents w (B, latent_dim) for CLIP embeddings (B, embed_dim); seeds: one generator per row.
        full_schedule_variance: the released sampler's noise (see `schedule.GaussianSchedule.respaced`)."""
        if len(seeds) != len(embeds):
            raise ValueError(f"{len(seeds)} random streams for {len(embeds)} embeddings")
        device = embeds.device
        schedule = self.schedule.respaced(steps, full_schedule_variance)
        n = len(schedule)
        # All draws of a sample up front from its own stream: x_T, then one noise vector per step.
        draws = torch.stack([torch.randn(n + 1, self.config.latent_dim, generator=g) for g in seeds]).to(device)
        x = draws[:, 0]
        embed = self.normalise_embed(embeds.float())
        indices = range(n - 1, -1, -1)
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc="clip2latent prior", unit="step", leave=False)
        for index in indices:
            t_index = torch.full((len(x),), index, dtype=torch.long, device=device)
            x0 = self.predict_x0(x, t_index, schedule, embed, guidance_scale)
            mean, log_variance = schedule.posterior(x0, x, t_index)
            x = mean + (0.5 * log_variance).exp() * draws[:, n - index] if index > 0 else mean
        return self.denormalise_latent(x)
