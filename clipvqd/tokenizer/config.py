"""The tokenizer's two configurations: its architecture and how it is trained.

`TokenizerConfig` fixes every tensor shape, so it travels inside the checkpoint's JSON sidecar and a
checkpoint is only ever loaded into the architecture it was written for. `TokenizerTrainConfig` only
shapes optimisation; changing it never makes a checkpoint unreadable.

`paper()` presets follow the released FFHQ/COCO tokenizer configs of CLIP-VQDiffusion (OUTPUT/pretrained_model/
taming_dvae/taming_f16_4096_{ffhq,coco}.yaml: taming-transformers' GumbelVQ architecture, K, KL weight,
base learning rate and Gumbel temperature schedule, whose 218 750 decay steps are 100 FFHQ epochs at batch
32). Those configs carry no training loss (DummyLoss), so the discriminator settings of
`TokenizerTrainConfig.paper()` are taming-transformers' own, not released ones (docs/deviations.md). The
plain defaults are the CPU-sized tokenizer of the embedded worlds
(32x32 px images, f=2, so 16x16 tokens: the paper's token grid on a 32 px world).

Measured on the default faces world (K=256, KL weight 1e-3, 2000 steps; 20 minutes with three other
jobs sharing two cores): the attribute oracle reads reconstructions at 0.97x its accuracy on the
originals, with 145 of 256 codes in use. Half the steps gave 0.93x; K=128 with KL 5e-5 gave 0.89x
(58 codes); K=512 with KL 1e-2 gave 0.87x (more codes, blurrier). An f=4 tokenizer (8x8 tokens)
stayed at 0.94x after 3000 steps and half an hour.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from clipvqd.config_blocks import from_mapping


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture of the Gumbel VQGAN (encoder, quantizer, decoder)."""

    # Side of the square input images in pixels; must be divisible by the downsampling factor.
    resolution: int = 32
    # Image channels (RGB).
    in_channels: int = 3
    # Base width of encoder and decoder ("ch" in taming-transformers); level i has channels*mult[i].
    channels: int = 16
    # Width multiplier per resolution level ("ch_mult"); each level after the first halves the side,
    # so the downsampling factor is 2**(len-1): (1, 2) -> f=2, 32 px -> 16x16 tokens.
    channel_multipliers: tuple[int, ...] = (1, 2)
    # Residual blocks per level in the encoder (the decoder uses one more per level, as taming does).
    num_res_blocks: int = 1
    # Feature-map sides at which self-attention follows each residual block (the middle always attends).
    attention_resolutions: tuple[int, ...] = ()
    # Channels of the encoder output, from which the quantizer predicts code logits.
    z_channels: int = 32
    # Dimension of each codebook vector (the decoder's input after the post-quantization conv).
    embed_dim: int = 32
    # Codebook size K: the number of discrete tokens an image position can take.
    codebook_size: int = 256
    # Dropout inside residual blocks (0 in the paper's tokenizer).
    dropout: float = 0.0
    # Groups of the GroupNorm layers; every level's width must be divisible by it.
    norm_groups: int = 8

    def __post_init__(self) -> None:
        if not self.channel_multipliers:
            raise ValueError("TokenizerConfig.channel_multipliers must name at least one level")
        if self.resolution % self.downsampling_factor:
            raise ValueError(
                f"TokenizerConfig.resolution={self.resolution} is not divisible by the downsampling "
                f"factor {self.downsampling_factor} implied by channel_multipliers={list(self.channel_multipliers)}"
            )
        for multiplier in self.channel_multipliers:
            width = self.channels * multiplier
            if width % self.norm_groups:
                raise ValueError(
                    f"TokenizerConfig: level width {width} (channels={self.channels} x {multiplier}) is not "
                    f"divisible by norm_groups={self.norm_groups}"
                )
        levels = {self.resolution >> i for i in range(len(self.channel_multipliers))}
        stray = sorted(set(self.attention_resolutions) - levels)
        if stray:
            raise ValueError(
                f"TokenizerConfig.attention_resolutions {stray} are not feature-map sides of this network "
                f"(it has {sorted(levels, reverse=True)})"
            )
        if self.codebook_size < 2:
            raise ValueError(f"TokenizerConfig.codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def token_grid(self) -> tuple[int, int]:
        side = self.resolution // self.downsampling_factor
        return side, side

    @classmethod
    def paper(cls) -> "TokenizerConfig":
        """The released FFHQ/COCO tokenizer: K=4096, f=16, 256 px -> 16x16 tokens."""
        return cls(
            resolution=256,
            channels=128,
            channel_multipliers=(1, 1, 2, 2, 4),
            num_res_blocks=2,
            attention_resolutions=(16,),
            z_channels=256,
            embed_dim=256,
            codebook_size=4096,
            norm_groups=32,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "tokenizer config") -> "TokenizerConfig":
        return from_mapping(cls, values, source)


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """Optimisation of the tokenizer: schedule, loss weights, discriminator, bookkeeping."""

    # Passes over the training split; the run has epochs * (len(dataset) // batch_size) steps.
    epochs: int = 8
    # Overrides `epochs` with an exact number of optimiser steps when set (tests, quick runs).
    max_steps: int | None = None
    # Images per optimiser step (the last incomplete batch of an epoch is dropped).
    batch_size: int = 16
    # AdamW learning rate of the autoencoder (taming: 4.5e-6 x batch 32 = 1.44e-4).
    learning_rate: float = 2e-3
    # Steps of linear warm-up of the autoencoder's learning rate (0: start at learning_rate).
    lr_warmup_steps: int = 0
    # After warm-up, cosine decay of the autoencoder's learning rate to learning_rate * this by the last
    # step; 1.0 keeps it constant (taming-transformers' schedule).
    final_lr_fraction: float = 1.0
    # AdamW learning rate of the discriminator.
    disc_learning_rate: float = 2e-3
    # AdamW betas for both optimisers (taming uses (0.5, 0.9) for GAN stability).
    adam_betas: tuple[float, float] = (0.5, 0.9)
    # AdamW decoupled weight decay for both optimisers (0 makes AdamW equal to taming's Adam).
    weight_decay: float = 0.0
    # Clip the autoencoder's gradient norm to this value; None disables clipping.
    grad_clip_norm: float | None = None
    # Gumbel-softmax temperature at step 0 ...
    temperature_start: float = 0.9
    # ... and after `temperature_anneal_steps`, reached by cosine decay.
    temperature_end: float = 0.01
    # Steps of the cosine temperature decay; None anneals over the whole run.
    temperature_anneal_steps: int | None = None
    # Weight of the KL divergence between the code posterior and the uniform prior (taming: 1e-8 at
    # K=8192; the world default is larger because without it the straight-through quantizer of a
    # small run settles on a few dozen codes, too few to keep the hair colours apart).
    kl_weight: float = 1e-3
    # Weight of the per-pixel L1 reconstruction loss.
    l1_weight: float = 1.0
    # Weight of the LPIPS perceptual loss; applies only when both LPIPS weight files are given.
    perceptual_weight: float = 1.0
    # LPIPS VGG16 backbone weights (safetensors, torchvision `vgg16` key names); None: perceptual off.
    lpips_vgg_weights: str | None = None
    # sha256 the VGG16 weights file must have (checked before loading).
    lpips_vgg_sha256: str | None = None
    # LPIPS linear-layer weights (safetensors, keys lin0..lin4, as in the LPIPS release).
    lpips_linear_weights: str | None = None
    # sha256 the LPIPS linear-layer file must have.
    lpips_linear_sha256: str | None = None
    # Weight of the hinge GAN loss, multiplying the adaptive (gradient-balanced) weight; 0 turns the
    # discriminator off. taming and the paper use 0.8. The world default is 0: on the 32 px faces world,
    # switching the GAN on at step 1000 of 1500 lowered the oracle's accuracy on reconstructions from
    # 0.95x to 0.83x of its accuracy on the originals (PSNR 23.7 -> 20.8 dB).
    disc_weight: float = 0.0
    # Optimiser step at which the discriminator and the GAN loss switch on (a reconstruction warm-up).
    disc_start: int = 600
    # Strided conv layers of the PatchGAN discriminator (3 for 256 px; 2 keeps patches small at 32 px).
    disc_layers: int = 2
    # Width of the first discriminator layer (doubles per layer, at most 8x).
    disc_channels: int = 32
    # Upper bound on the adaptive GAN weight, so a vanishing GAN gradient cannot blow it up.
    adaptive_weight_max: float = 1e4
    # Write a resume snapshot (to the work folder) every this many steps.
    snapshot_every: int = 500
    # Write one loss-curve row (averaged over the interval) every this many steps.
    log_every: int = 50
    # Keep the whole training split in memory as one tensor (small worlds); else read per batch.
    preload: bool = True
    # DataLoader worker processes when not preloading.
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "snapshot_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr_warmup_steps < 0 or not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(
                "TokenizerTrainConfig needs lr_warmup_steps >= 0 and 0 <= final_lr_fraction <= 1, got "
                f"{self.lr_warmup_steps} and {self.final_lr_fraction}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"TokenizerTrainConfig.max_steps must be >= 1 or null, got {self.max_steps}")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ValueError(
                "TokenizerTrainConfig needs 0 < temperature_end <= temperature_start, got "
                f"{self.temperature_start} -> {self.temperature_end}"
            )
        if (self.lpips_vgg_weights is None) != (self.lpips_linear_weights is None):
            raise ValueError(
                "TokenizerTrainConfig: LPIPS needs both lpips_vgg_weights and lpips_linear_weights "
                f"(got vgg={self.lpips_vgg_weights!r}, linear={self.lpips_linear_weights!r})"
            )

    @property
    def perceptual_enabled(self) -> bool:
        return self.lpips_vgg_weights is not None and self.perceptual_weight > 0

    def total_steps(self, dataset_size: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return self.epochs * (dataset_size // self.batch_size)

    @classmethod
    def paper(cls) -> "TokenizerTrainConfig":
        """taming-style training of the paper's tokenizer: ~100 epochs of FFHQ at batch 32."""
        return cls(
            epochs=100,
            batch_size=32,
            learning_rate=4.5e-6 * 32,
            disc_learning_rate=4.5e-6 * 32,
            # taming-transformers' configs/custom_vqgan.yaml (its faceshq_vqgan.yaml uses 30001): the GAN
            # switches on after 10k reconstruction steps. Not released for CLIP-VQDiffusion's tokenizer.
            disc_start=10000,
            disc_weight=0.8,
            # The released CLIP-VQDiffusion tokenizer config (taming_f16_4096_ffhq.yaml: kl_weight 0.00005).
            kl_weight=5e-5,
            disc_layers=3,
            disc_channels=64,
            snapshot_every=2000,
            log_every=100,
            preload=False,
            num_workers=8,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "tokenizer training config") -> "TokenizerTrainConfig":
        return from_mapping(cls, values, source)

