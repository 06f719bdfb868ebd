"""The Gumbel VQGAN tokenizer: image <-> grid of discrete codes.

Layout (taming-transformers' GumbelVQ): encoder -> 1x1 conv to K code logits -> Gumbel-softmax choice
of a codebook vector per position -> 1x1 post-quantization conv -> decoder. taming also has a 1x1
`quant_conv` in front of the logits; two 1x1 convs in a row without a nonlinearity compose to one,
so it is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipvqd.checkpoint import load_meta, load_weights
from clipvqd.tokenizer.config import TokenizerConfig
from clipvqd.tokenizer.encoder_decoder import Decoder, Encoder
from clipvqd.tokenizer.quantizer import GumbelQuantizer, Quantized


class GumbelVQGAN(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = GumbelQuantizer(config.z_channels, config.codebook_size, config.embed_dim)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        self.decoder = Decoder(config)

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (self.config.in_channels, self.config.resolution, self.config.resolution)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"tokenizer expects images of shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}")

    def quantize(self, images: torch.Tensor, temperature: float | None = None,
                 generator: torch.Generator | None = None, allowed_codes: torch.Tensor | None = None) -> Quantized:
        """Training mode with a temperature: a Gumbel sample; otherwise the deterministic argmax."""
        self._check_images(images)
        features = self.encoder(images)
        if self.training and temperature is not None:
            return self.quantizer.sample(features, temperature, hard=True, generator=generator)
        return self.quantizer.deterministic(features, allowed_codes)

    def decode_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(vectors))

    def forward(self, images: torch.Tensor, temperature: float | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, Quantized]:
        """Images in [-1, 1] -> (reconstructions, quantizer output)."""
        quantized = self.quantize(images, temperature, generator)
        return self.decode_vectors(quantized.vectors), quantized

    @torch.no_grad()
    def encode(self, images: torch.Tensor, allowed_codes: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, 3, R, R) in [-1, 1] -> codes (B, R/f, R/f) long, by argmax (optionally restricted)."""
        self._check_images(images)
        return self.quantizer.deterministic(self.encoder(images), allowed_codes).codes

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) of the full codebook -> images (B, 3, R, R), clamped to [-1, 1]."""
        return self.decode_vectors(self.quantizer.embed_codes(codes)).clamp(-1.0, 1.0)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.last_layer


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu",
                   expected_config: TokenizerConfig | None = None) -> tuple[GumbelVQGAN, dict[str, Any]]:
    """Build the tokenizer a checkpoint describes (or `expected_config`) and load it strictly, in eval mode.

    With `expected_config`, a checkpoint written for another architecture fails with
    `CheckpointMismatch` naming the keys whose shapes differ, never a partial load.
    """
    meta = load_meta(path)
    config = expected_config
    if config is None:
        if "model_config" not in meta:
            raise ValueError(f"checkpoint metadata for {path} has no 'model_config'; it is not a tokenizer checkpoint")
        config = TokenizerConfig.from_dict(meta["model_config"], source=f"model_config in {path}'s metadata")
    model = GumbelVQGAN(config)
    load_weights(path, model)
    return model.to(device).eval(), meta
