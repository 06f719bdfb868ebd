"""The denoising transformer of CLIP-VQDiffusion (docs/design.md §4).

It reads a token grid x_t (codes plus [MASK]), the step index t and one pooled condition vector c and
returns logits of p(x0 | x_t, c) over the K codes at every position. Each block is

    x = x + SelfAttention(AdaLN_t(x))
    x = x + ConvMLP(AdaLN_c(x))

where AdaLN is a LayerNorm without affine parameters followed by `* (1 + scale) + shift`. The timestep
variant takes scale and shift from a learned per-step embedding through SiLU and Linear; the condition
variant from `Linear(SiLU(Linear(c)))`. The condition enters only there: no cross-attention. ConvMLP is
a 3x3 convolution to `mlp_ratio` x width, GELU, and a 3x3 convolution back, on the 2-D token grid.

This is the released model's layout (CLIPVQDiffusion image_synthesis/modeling/transformers/
transformer_utils.py: Block with attn_type 'selfcondition', timestep_type 'adalayernorm', class_type
'adalayerclip', mlp_type 'conv_mlp'). Two details are configurable so that the paper presets follow the
release while the world default keeps what it was measured with: the ConvMLP activation (`mlp_activation`: exact GELU, or the release's GELU2, x * sigmoid(1.702 x))

"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .model_config import MLP_ACTIVATIONS, DenoiserConfig

NULL_CONDITION_FORMS = ("normalized", "raw")
__all__ = ["MLP_ACTIVATIONS", "NULL_CONDITION_FORMS", "Denoiser", "DenoiserConfig"]


class AdaptiveLayerNorm(nn.Module):
    """LayerNorm without affine parameters, then `* (1 + scale) + shift` from a per-sample vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)

    def forward(self, x: Tensor, scale_shift: Tensor) -> Tensor:
        scale, shift = scale_shift.unsqueeze(1).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class TimestepModulation(nn.Module):
    """Learned embedding of the step index -> SiLU -> Linear -> (scale, shift)."""

    def __init__(self, num_steps: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(num_steps, dim)
        self.project = nn.Linear(dim, 2 * dim)

    def forward(self, t: Tensor) -> Tensor:
        return self.project(F.silu(self.embedding(t)))


class ConditionModulation(nn.Module):
    """Linear(SiLU(Linear(c))) -> (scale, shift)."""

    def __init__(self, condition_dim: int, dim: int):
        super().__init__()
        self.embed = nn.Linear(condition_dim, dim)
        self.project = nn.Linear(dim, 2 * dim)

    def forward(self, condition: Tensor) -> Tensor:
        return self.project(F.silu(self.embed(condition)))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.num_heads)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(rearrange(y, "b h n d -> b n (h d)"))


def quick_gelu(x: Tensor) -> Tensor:
    """x * sigmoid(1.702 x): the sigmoid approximation of GELU (the release's GELU2)."""
    return x * torch.sigmoid(1.702 * x)


class ConvMLP(nn.Module):
    """3x3 conv to ratio x width, GELU, 3x3 conv back, on the token grid (mixes neighbouring tokens)."""

    def __init__(self, dim: int, ratio: int, grid_height: int, grid_width: int, activation: str = "gelu"):
        super().__init__()
        self.grid = (grid_height, grid_width)
        self.expand = nn.Conv2d(dim, ratio * dim, kernel_size=3, padding=1)
        self.contract = nn.Conv2d(ratio * dim, dim, kernel_size=3, padding=1)
        if activation not in MLP_ACTIVATIONS:
            raise ValueError(f"ConvMLP activation must be one of {MLP_ACTIVATIONS}, got {activation!r}")
        self.activation = F.gelu if activation == "gelu" else quick_gelu
        # The input grid below is channels-last in memory; weights stored the same way spare the CPU and cuDNN
        # convolutions a weight reorder per call, forward and backward (same values, same results).
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        # Tokens (row-major) to the grid and back. (B, H, W, C) viewed as (B, C, H, W) is channels-last in
        # memory, which the CPU and cuDNN convolutions take without a copy.
        grid = rearrange(x, "b (gh gw) c -> b c gh gw", gh=self.grid[0], gw=self.grid[1])
        y = self.contract(self.activation(self.expand(grid)))
        return rearrange(y, "b c gh gw -> b (gh gw) c")


class DenoiserBlock(nn.Module):
    def __init__(self, config: DenoiserConfig):
        super().__init__()
        dim = config.hidden_dim
        self.timestep_modulation = TimestepModulation(config.num_steps, dim)
        self.attention_norm = AdaptiveLayerNorm(dim)
        self.attention = SelfAttention(dim, config.num_heads)
        self.condition_modulation = ConditionModulation(config.condition_dim, dim)
        self.mlp_norm = AdaptiveLayerNorm(dim)
        self.mlp = ConvMLP(dim, config.mlp_ratio, config.grid_height, config.grid_width, config.mlp_activation)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor) -> Tensor:
        x = x + self.attention(self.attention_norm(x, self.timestep_modulation(t)))
        return x + self.mlp(self.mlp_norm(x, self.condition_modulation(condition)))


class Denoiser(nn.Module):
    """p(x0 | x_t, t, c): token grid in, logits over the K codes out."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        dim = config.hidden_dim
        self.token_embedding = nn.Embedding(config.num_codes + 1, dim)  # last entry = [MASK]
        self.row_embedding = nn.Embedding(config.grid_height, dim)
        self.column_embedding = nn.Embedding(config.grid_width, dim)
        self.blocks = nn.ModuleList(DenoiserBlock(config) for _ in range(config.num_layers))
        self.output_norm = nn.LayerNorm(dim)
        self.to_logits = nn.Linear(dim, config.num_codes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # As in VQ-Diffusion: small normal weights for linear layers and embeddings, zero biases;
        # convolutions keep PyTorch's default initialisation.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x_t: Tensor, t: Tensor, condition: Tensor) -> Tensor:
        """x_t: `(B, N)` or `(B, H, W)` int64 in [0, K] (K = [MASK]); t: `(B,)` step index in [0, T-1];
        condition: `(B, condition_dim)`. Returns `(B, K, N)` logits (the layout of the log-prob tensors)."""
        cfg = self.config
        batch = x_t.shape[0]
        tokens = x_t.reshape(batch, -1)
        if tokens.shape[1] != cfg.num_tokens:
            raise ValueError(
                f"x_t has {tokens.shape[1]} tokens per sample but the denoiser expects "
                f"{cfg.grid_height}x{cfg.grid_width} = {cfg.num_tokens}"
            )
        if condition.shape != (batch, cfg.condition_dim):
            raise ValueError(f"condition must be ({batch}, {cfg.condition_dim}), got {tuple(condition.shape)}")
        if t.shape != (batch,):
            raise ValueError(f"t must be ({batch},), got {tuple(t.shape)}")
        # Learned row plus column embedding of each grid position, in the tokens' row-major order.
        position = rearrange(self.row_embedding.weight, "gh c -> gh 1 c") + self.column_embedding.weight
        x = self.token_embedding(tokens) + rearrange(position, "gh gw c -> 1 (gh gw) c")
        condition = condition.to(x.dtype)
        for block in self.blocks:
            x = block(x, t, condition)
        logits = self.to_logits(self.output_norm(x))
        return logits.transpose(1, 2)
