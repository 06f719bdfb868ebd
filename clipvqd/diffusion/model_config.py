"""The denoiser's sizes (`DenoiserConfig`), without torch: the workflow builds it from the config to check
a run's settings before any job starts, and the checkpoint sidecar stores it. The model is in
`transformer.py`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from clipvqd.config_blocks import from_mapping

MLP_ACTIVATIONS = ("gelu", "quick_gelu")


@dataclass(frozen=True)
class DenoiserConfig:
    """Sizes of the denoiser. The defaults are the CPU-sized model for the embedded world."""

    num_codes: int = 256
    """K: codes of the tokenizer (in practice its compacted vocabulary). [MASK] is extra, index K."""
    grid_height: int = 8
    """Rows of the token grid (image height / tokenizer downsampling)."""
    grid_width: int = 8
    """Columns of the token grid."""
    condition_dim: int = 128
    """Length of the condition vector (the CLIP embedding dimension)."""
    hidden_dim: int = 64
    """Transformer width (paper: 512). The world default is sized for a ~3-minute CPU pretraining."""
    num_layers: int = 4
    """Number of blocks (paper: 24)."""
    num_heads: int = 4
    """Attention heads; must divide hidden_dim (paper: 16)."""
    mlp_ratio: int = 2
    """ConvMLP hidden width as a multiple of hidden_dim (paper: 4). The world default halves it: the
    3x3 convolutions dominate the cost (9x a linear layer of the same width; 88% of the paper
    model's 515M parameters)."""
    num_steps: int = 100
    """T, the number of diffusion steps; sizes the timestep embedding and the schedule."""
    mlp_activation: str = "gelu"
    """Activation inside ConvMLP: "gelu" (exact) or "quick_gelu", x * sigmoid(1.702 x), the release's GELU2
    (transformer_utils.py GELU2, block_activate: GELU2 in every released config)."""

    def __post_init__(self) -> None:
        positive = ("num_codes", "grid_height", "grid_width", "condition_dim", "hidden_dim", "num_layers",
                    "num_heads", "mlp_ratio", "num_steps")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DenoiserConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"DenoiserConfig.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.num_codes < 2 or self.num_steps < 2:
            raise ValueError("DenoiserConfig needs num_codes >= 2 and num_steps >= 2")
        if self.mlp_activation not in MLP_ACTIVATIONS:
            raise ValueError(f"DenoiserConfig.mlp_activation must be one of {MLP_ACTIVATIONS}, got {self.mlp_activation!r}")

    @property
    def num_tokens(self) -> int:
        return self.grid_height * self.grid_width

    @classmethod
    def paper(cls) -> "DenoiserConfig":
        """The released FFHQ/COCO configuration (configs/*_base_train.yaml, *_finetune.yaml): 24 x 512, 16 heads,
        16x16 tokens, K = 4096, CLIP 512-d, GELU2 in the ConvMLP (the released sampler's raw null vector is a
        sampling setting: SamplingSettings.null_condition)."""
        return cls(num_codes=4096, grid_height=16, grid_width=16, condition_dim=512, hidden_dim=512,
                   num_layers=24, num_heads=16, mlp_ratio=4, num_steps=100, mlp_activation="quick_gelu")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "DenoiserConfig":
        return from_mapping(cls, values, source)
