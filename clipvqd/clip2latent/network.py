"""The prior network: a small causal transformer over four tokens that predicts the clean latent.

Follows DALLE2-pytorch 0.2.38's `DiffusionPriorNetwork` / `CausalTransformer`, which clip2latent trains
(clip2latent/models.py builds `DiffusionPriorNetwork(dim, num_timesteps, depth, dim_head, heads)`):

    tokens = [CLIP embedding, timestep embedding, noised latent x_t, learned query]
    x = causal transformer(tokens);  prediction = project(norm(x))[last token]

Each layer is pre-norm attention (queries per head, one shared key/value head, a learned "null" key/value
every token can attend to, rotary position embedding on the first min(32, dim_head) features, causal
mask) and a pre-norm SwiGLU feed-forward, both residual; attention's output passes a LayerNorm as in
DALLE2-pytorch. The timestep enters as a learned embedding per diffusion step (num_timesteps given).

Classifier-free guidance drops the condition the way that version does: the CLIP-embedding token is
masked out of every attention (a key mask), so a dropped row sees only timestep, x_t and the query.

Differences: when the latent or the CLIP embedding is not `dim` long (the worlds: w 64, CLIP 128, width
128) it enters and leaves through linear layers (official: all three are 512, no projection); the
relative position bias that DALLE2-pytorch adds on top of the rotary embedding is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .config import PriorModelConfig

NUM_TOKENS = 4  # condition, timestep, x_t, query
_CONDITION_TOKEN = 0


class SwiGLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        x, gate = x.chunk(2, dim=-1)
        return x * F.silu(gate)


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021) on the first `dim` features of queries and keys."""

    def __init__(self, dim: int, length: int = NUM_TOKENS):
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        angles = torch.arange(length).float()[:, None] * inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        self.dim = dim
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[-2]
        rot, rest = x[..., :self.dim], x[..., self.dim:]
        rot = rot * self.cos[:n].to(x.dtype) + rotate_half(rot) * self.sin[:n].to(x.dtype)
        return torch.cat([rot, rest], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, rotary: Rotary):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False), nn.LayerNorm(dim))
        self.rotary = rotary

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """x (B, N, dim); key_mask (B, N) bool, False = no token may attend to it."""
        batch, n, _ = x.shape
        x = self.norm(x)
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = self.to_kv(x).chunk(2, dim=-1)                                          # (B, N, d) each
        q, k = self.rotary(q), self.rotary(k)
        null_k, null_v = self.null_kv.unbind(0)
        k = torch.cat([null_k.expand(batch, 1, -1).to(k.dtype), k], dim=1)            # (B, 1+N, d)
        v = torch.cat([null_v.expand(batch, 1, -1).to(v.dtype), v], dim=1)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        allowed = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=x.device), causal], dim=1)   # (N, 1+N)
        keys = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=x.device), key_mask], dim=1)  # (B, 1+N)
        allowed = allowed[None, None] & keys[:, None, None, :]
        sim = torch.einsum("bhid,bjd->bhij", q, k) * self.dim_head ** -0.5
        sim = sim.float().masked_fill(~allowed, torch.finfo(torch.float32).min)
        out = torch.einsum("bhij,bjd->bhid", sim.softmax(dim=-1).to(v.dtype), v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        hidden = dim * mult
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden * 2, bias=False), SwiGLU(),
                                 nn.Linear(hidden, dim, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PriorNetwork(nn.Module):
    """f(x_t, t, e, keep) -> prediction of x0 (or of the noise), shape (B, latent_dim)."""

    def __init__(self, config: PriorModelConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.latent_in = nn.Linear(config.latent_dim, dim) if config.latent_dim != dim else nn.Identity()
        self.embed_in = nn.Linear(config.embed_dim, dim) if config.embed_dim != dim else nn.Identity()
        self.time_embeddings = nn.Embedding(config.timesteps, dim)
        self.learned_query = nn.Parameter(torch.randn(dim))
        rotary = Rotary(min(32, config.dim_head))
        self.layers = nn.ModuleList([
            nn.ModuleList([Attention(dim, config.heads, config.dim_head, rotary), FeedForward(dim, config.ff_mult)])
            for _ in range(config.depth)
        ])
        self.norm_out = nn.LayerNorm(dim)
        self.project_out = nn.Linear(dim, dim, bias=False)
        self.latent_out = nn.Linear(dim, config.latent_dim) if config.latent_dim != dim else nn.Identity()

    def forward(self, x_t: Tensor, timesteps: Tensor, embed: Tensor, keep: Tensor) -> Tensor:
        """x_t (B, latent_dim); timesteps (B,) long in [0, T); embed (B, embed_dim); keep (B,) bool:
        False hides the CLIP embedding (classifier-free guidance's unconditional branch)."""
        cfg = self.config
        batch = x_t.shape[0]
        if x_t.shape != (batch, cfg.latent_dim) or embed.shape != (batch, cfg.embed_dim) or keep.shape != (batch,):
            raise ValueError(f"expected x_t (B, {cfg.latent_dim}), embed (B, {cfg.embed_dim}), keep (B,), got "
                             f"{tuple(x_t.shape)}, {tuple(embed.shape)}, {tuple(keep.shape)}")
        tokens = torch.stack([
            self.embed_in(embed),
            self.time_embeddings(timesteps),
            self.latent_in(x_t),
            self.learned_query.to(x_t.dtype).expand(batch, -1),
        ], dim=1)
        key_mask = torch.ones(batch, NUM_TOKENS, dtype=torch.bool, device=x_t.device)
        key_mask[:, _CONDITION_TOKEN] = keep.to(x_t.device)
        for attention, feed_forward in self.layers:
            tokens = tokens + attention(tokens, key_mask)
            tokens = tokens + feed_forward(tokens)
        return self.latent_out(self.project_out(self.norm_out(tokens[:, -1])))
