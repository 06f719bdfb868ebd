"""Every setting of the clip2latent baseline (Pinkney & Li 2022, arXiv 2210.02347), each field documented.

Six blocks, one per stage: the unconditional StyleGAN2 generator (sizes, training), the (w, CLIP image
embedding) pairs, the diffusion prior (network, training) and its sampling. Defaults are the embedded
world's CPU-sized run at 32 px; `paper()` on each class gives the official value. The official code is
github.com/justinpinkney/clip2latent (config/config.yaml, config/model/*.yaml, config/data/sg2-ffhq.yaml,
clip2latent/data.py, clip2latent/latent_prior.py), which builds on lucidrains' DALLE2-pytorch 0.2.38
(`DiffusionPrior`, `DiffusionPriorNetwork`, `DiffusionPriorTrainer`); a field says which file its
official value comes from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping

from clipvqd.config_blocks import check_fields as _check
from clipvqd.config_blocks import from_mapping as _from_dict

if TYPE_CHECKING:  # imported where used: importing clipvqd.lafite pulls in torch, which the CLI parser avoids
    from clipvqd.lafite.config import LafiteModelConfig, LafiteTrainConfig

BETA_SCHEDULES = ("cosine", "linear")
POSTERIOR_VARIANCES = ("respaced", "full_schedule")
# The DiffAugment policies and training forms of clipvqd.lafite.config (restated: importing clipvqd.lafite pulls in torch,
# which the CLI parser avoids; tests/test_clip2latent.py keeps the two equal).
AUGMENT_POLICIES = ("color", "translation", "cutout")
MODULATED_CONV_FORMS = ("grouped", "scaled")  # restated likewise
DOWNSAMPLE_FORMS = ("pool", "strided")


class _Block:
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "clip2latent"):
        return _from_dict(cls, values, source)


# ---- the unconditional generator -----------------------------------------------------------------------

@dataclass(frozen=True)
class GeneratorModelConfig(_Block):
    """The StyleGAN2 generator/discriminator sizes (LAFITE's backbone, trained without a condition).

    clip2latent itself takes NVIDIA's pretrained StyleGAN2 (stylegan2-ffhq-1024x1024.pkl, config-f); the
    paper preset is that architecture at this suite's FFHQ resolution (256 px)."""

    resolution: int = 32
    """Output side in pixels, a power of two >= 8 (paper preset: 256, the suite's FFHQ size)."""
    z_dim: int = 64
    """Latent z length (StyleGAN2 config-f: 512)."""
    w_dim: int = 64
    """Intermediate latent w length, the vector the prior learns to sample (StyleGAN2 config-f: 512)."""
    mapping_layers: int = 2
    """Fully connected layers of the mapping network z -> w (StyleGAN2: 8)."""
    mapping_lr_multiplier: float = 0.01
    """Learning-rate multiplier of the mapping network (StyleGAN2: 0.01)."""
    channel_base: int = 1024
    """Feature maps at resolution r are min(channel_base // r, channel_max) (StyleGAN2 config-f: 32768)."""
    channel_max: int = 32
    """Upper bound on feature maps per layer (StyleGAN2: 512). World default 32: twice as fast a step as
    64 on one CPU thread, which buys more steps in the budget."""
    use_noise: bool = True
    """Per-pixel noise inputs in every synthesis layer (StyleGAN2). Pairs and samples are rendered with the
    stored constant noise maps, so an image is a function of w alone."""
    mbstd_group_size: int = 4
    """Minibatch standard-deviation group size of the discriminator (StyleGAN2: 4); 0 disables it."""

    def __post_init__(self) -> None:
        r = self.resolution
        _check("GeneratorModelConfig", {
            "resolution": r >= 8 and (r & (r - 1)) == 0, "z_dim": self.z_dim >= 1, "w_dim": self.w_dim >= 1,
            "mapping_layers": self.mapping_layers >= 1, "mapping_lr_multiplier": self.mapping_lr_multiplier > 0,
            "channel_base": self.channel_base >= 1, "channel_max": self.channel_max >= 1,
            "mbstd_group_size": self.mbstd_group_size >= 0,
        }, self)

    @classmethod
    def paper(cls) -> "GeneratorModelConfig":
        return cls(resolution=256, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512)

    def to_lafite(self) -> "LafiteModelConfig":
        """The LAFITE backbone with a 1-d condition that the unconditional trainer holds at zero: the styles
        then see only w (the condition MLP adds a constant) and the projection term of D vanishes."""
        from clipvqd.lafite.config import LafiteModelConfig

        return LafiteModelConfig(resolution=self.resolution, condition_dim=1, z_dim=self.z_dim, w_dim=self.w_dim,
                                 mapping_layers=self.mapping_layers, mapping_lr_multiplier=self.mapping_lr_multiplier,
                                 condition_hidden=1, channel_base=self.channel_base, channel_max=self.channel_max,
                                 use_noise=self.use_noise, mbstd_group_size=self.mbstd_group_size)


@dataclass(frozen=True)
class GeneratorTrainConfig(_Block):
    """StyleGAN2's optimisation (non-saturating loss, lazy R1, G EMA), run by LAFITE's trainer without
    contrastive losses."""

    steps: int = 1440
    """Optimiser steps of G and of D. World default 1440 (and 1200 prior steps): generator, pairs and prior
    together cost CLIP-VQDiffusion's chain's training CPU-seconds, read off the quality-versus-compute curve
    (README, "Configuration": 1800 + 1500 steps cost 477 CPU-s against the chain's 373, so 0.8 of both). The
    generator alone reached precision 0.06 / 0.14 / 0.23 at 600 / 1200 / 1800 steps, and clip2latent's samples
    follow it (docs/baselines.md). Paper preset: 25 000 kimg at batch 32 (StyleGAN2 FFHQ config-f)."""
    batch_size: int = 16
    """Images per step (StyleGAN2 config-f: 32)."""
    learning_rate: float = 0.0025
    """Adam learning rate of G and D (StyleGAN2 below 1024 px: 0.0025; config-f at 1024: 0.002)."""
    adam_betas: tuple[float, float] = (0.0, 0.99)
    """Adam betas (StyleGAN2)."""
    r1_gamma: float = 10.0
    """R1 weight gamma (StyleGAN2 FFHQ: 10)."""
    r1_interval: int = 16
    """Lazy regularisation: R1 every this many steps, scaled by it (StyleGAN2: 16)."""
    ema_half_life_images: float = 5000.0
    """Half-life of the generator EMA in images (StyleGAN2-ADA: batch * 10 / 32 kimg; config-f: 10 kimg)."""
    ema_rampup: float = 0.05
    """The EMA half-life is capped at this fraction of the images seen (StyleGAN2-ADA: 0.05); 0 = off."""
    augment: tuple[str, ...] = ()
    """DiffAugment policies on every discriminator input (LAFITE's trainer, `clipvqd.lafite.augment`):
    any of 'color', 'translation', 'cutout'. NVIDIA's StyleGAN2 config-f: none."""
    modulated_conv: str = "grouped"
    """How G's modulated convolutions are computed while training: 'grouped' or 'scaled', two forms of the same
    function (LafiteTrainConfig.modulated_conv; 'scaled' is how NVIDIA's StyleGAN2-ADA trains)."""
    discriminator_downsample: str = "pool"
    """How D's down-sampling layers compute convolution + pooling: 'pool' or 'strided', two forms of the same
    function (LafiteTrainConfig.discriminator_downsample)."""
    channels_last: bool = False
    """G, D and the image batches in channels-last memory format (LafiteTrainConfig.channels_last). The three
    cheaper forms (0.67x the CPU a StyleGAN2 step, benchmarks/README.md) are off by default, as LAFITE's: the
    headline's budget is equal training CPU-seconds (benchmarks/README.md, "The default run side by side")."""
    snapshot_every: int = 200
    """Steps between resume snapshots."""
    log_every: int = 20
    """Steps averaged into one row of the loss curve."""

    def __post_init__(self) -> None:
        _check("GeneratorTrainConfig", {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 2, "learning_rate": self.learning_rate > 0,
            "adam_betas": len(self.adam_betas) == 2 and all(0.0 <= b < 1.0 for b in self.adam_betas),
            "r1_gamma": self.r1_gamma >= 0, "r1_interval": self.r1_interval >= 1,
            "ema_half_life_images": self.ema_half_life_images >= 0, "ema_rampup": self.ema_rampup >= 0,
            "augment": all(p in AUGMENT_POLICIES for p in self.augment) and len(set(self.augment)) == len(self.augment),
            "modulated_conv": self.modulated_conv in MODULATED_CONV_FORMS,
            "discriminator_downsample": self.discriminator_downsample in DOWNSAMPLE_FORMS,
            "snapshot_every": self.snapshot_every >= 1, "log_every": self.log_every >= 1,
        }, self)

    @classmethod
    def paper(cls) -> "GeneratorTrainConfig":
        return cls(steps=781_250, batch_size=32, learning_rate=0.002, ema_half_life_images=10_000.0,
                   ema_rampup=0.0, snapshot_every=2000, log_every=100)

    def to_lafite(self) -> "LafiteTrainConfig":
        from clipvqd.lafite.config import LafiteTrainConfig

        return LafiteTrainConfig(steps=self.steps, batch_size=self.batch_size, learning_rate=self.learning_rate,
                                 adam_betas=self.adam_betas, itd_weight=0.0, itc_weight=0.0, r1_gamma=self.r1_gamma,
                                 r1_interval=self.r1_interval, ema_half_life_images=self.ema_half_life_images,
                                 ema_rampup=self.ema_rampup, augment=self.augment,
                                 modulated_conv=self.modulated_conv,
                                 discriminator_downsample=self.discriminator_downsample,
                                 channels_last=self.channels_last, snapshot_every=self.snapshot_every,
                                 log_every=self.log_every)


# ---- the pairs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairsConfig(_Block):
    """(w, CLIP image embedding of G(w)) pairs, w = mapping(z), z ~ N(0, I) (scripts/generate_dataset.py)."""

    count: int = 6000
    """Number of pairs (official: 1 000 000, --n-samples). World default: about 25 CPU-seconds (rendering
    and embedding cost about 4 ms a pair on one thread)."""
    batch_size: int = 500
    """Pairs rendered and embedded per batch (memory only; official --batch-size 32)."""
    stats_count: int = 10_000
    """Pairs the z-scoring mean and std are computed from, at most all of them (official load_data:
    n_stats=10_000)."""

    def __post_init__(self) -> None:
        _check("PairsConfig", {"count": self.count >= 2, "batch_size": self.batch_size >= 1,
                               "stats_count": self.stats_count >= 2}, self)

    @classmethod
    def paper(cls) -> "PairsConfig":
        return cls(count=1_000_000, batch_size=32)


# ---- the diffusion prior ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PriorModelConfig(_Block):
    """The prior network (DALLE2-pytorch DiffusionPriorNetwork) and its Gaussian diffusion."""

    latent_dim: int = 64
    """Length of the latent the prior samples (w); set from the pairs (official: 512)."""
    embed_dim: int = 128
    """Length of the CLIP embedding it is conditioned on; set from the pairs (ViT-B/32: 512)."""
    dim: int = 64
    """Transformer width (official config/model/mid.yaml: 512 = the CLIP and w length, so no projections;
    with other lengths the latent and embedding enter and leave through linear layers)."""
    depth: int = 3
    """Transformer layers (official mid.yaml: 12; small.yaml: 6)."""
    heads: int = 4
    """Attention heads (official mid.yaml: 12; small.yaml: 8)."""
    dim_head: int = 16
    """Width of each query head; the single shared key/value head has it too (official: 64)."""
    ff_mult: int = 4
    """Feed-forward hidden width as a multiple of dim (DALLE2-pytorch default: 4)."""
    timesteps: int = 1000
    """Diffusion steps T (official: 1000); the timestep enters as a learned embedding of each of them."""
    beta_schedule: str = "cosine"
    """Noise schedule: 'cosine' (Nichol & Dhariwal 2021, s=0.008, betas clipped at 0.999; official) or
    'linear' (DDPM)."""
    predict_x_start: bool = True
    """The network predicts the clean latent x0 (official: True); False predicts the noise."""

    def __post_init__(self) -> None:
        _check("PriorModelConfig", {
            "latent_dim": self.latent_dim >= 1, "embed_dim": self.embed_dim >= 1, "dim": self.dim >= 1,
            "depth": self.depth >= 1, "heads": self.heads >= 1, "dim_head": self.dim_head >= 2 and self.dim_head % 2 == 0,
            "ff_mult": self.ff_mult >= 1, "timesteps": self.timesteps >= 2,
            "beta_schedule": self.beta_schedule in BETA_SCHEDULES,
        }, self)

    @classmethod
    def paper(cls) -> "PriorModelConfig":
        """config/model/mid.yaml, the default of config/config.yaml."""
        return cls(latent_dim=512, embed_dim=512, dim=512, depth=12, heads=12, dim_head=64)


@dataclass(frozen=True)
class PriorTrainConfig(_Block):
    """Training of the prior: MSE on x0, CFG dropout, embedding noise, z-scored latents, EMA."""

    steps: int = 1200
    """Optimiser steps (official max_it: 1 000 000). World default 1200, 0.8 of the 1500 it had, with the
    generator's 0.8 (see generator_train.steps): about 45 CPU-seconds for the default network."""
    batch_size: int = 128
    """Pairs per step (official config/data/sg2-ffhq.yaml: bs 512)."""
    learning_rate: float = 0.001
    """AdamW learning rate (official: 1e-4). World default 1e-3: 1200 steps of a small network instead of
    10^6 of a large one."""
    weight_decay: float = 0.01
    """AdamW weight decay (official: 1e-2)."""
    cond_drop_prob: float = 0.2
    """Probability that a pair's CLIP embedding is hidden from the network (official cond_drop_prob 0.2):
    the same network then also learns the unconditional prior classifier-free guidance needs."""
    embed_noise_scale: float = 1.0
    """Noise on the CLIP image embedding e during training, as the official data loader adds it
    (clip2latent/data.py add_noise, embed_noise_scale 1.0 in config/data/sg2-ffhq.yaml):
    |e| * normalize(e/|e| + scale * eps/|eps|). 0 disables it."""
    znorm_latent: bool = True
    """Z-score the latents with the pairs' per-channel mean and std (official znorm_latent: true)."""
    znorm_embed: bool = False
    """Z-score the CLIP embeddings too (official znorm_embed: false)."""
    ema_decay: float = 0.99
    """Decay of the weights' EMA the sampler uses (official ema_beta 0.9999, over 10^6 steps)."""
    ema_update_every: int = 1
    """Steps between EMA updates (official ema_update_every: 10)."""
    snapshot_every: int = 500
    """Steps between resume snapshots."""
    log_every: int = 50
    """Steps averaged into one row of the loss curve."""

    def __post_init__(self) -> None:
        _check("PriorTrainConfig", {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0, "cond_drop_prob": 0.0 <= self.cond_drop_prob <= 1.0,
            "embed_noise_scale": self.embed_noise_scale >= 0, "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "ema_update_every": self.ema_update_every >= 1, "snapshot_every": self.snapshot_every >= 1,
            "log_every": self.log_every >= 1,
        }, self)

    @classmethod
    def paper(cls) -> "PriorTrainConfig":
        """config/config.yaml train block and config/data/sg2-ffhq.yaml."""
        return cls(steps=1_000_000, batch_size=512, learning_rate=1e-4, ema_decay=0.9999, ema_update_every=10,
                   snapshot_every=10_000, log_every=100)


@dataclass(frozen=True)
class PriorSamplingConfig(_Block):
    """How w is sampled from a CLIP text embedding."""

    steps: int = 10
    """Reverse steps: the T timesteps respaced with a stride of T/steps (official set_timestep_skip; the demo's
    'Fast' setting is skip 100 = 10 steps of 1000, eval.py sweeps 1000, 10 and 4). Must divide T."""
    guidance_scale: float = 2.0
    """Classifier-free guidance on x0: x0_u + s (x0_c - x0_u) (official cond_scale; train.py validates at 1
    and 2, eval.py sweeps 1 to 10). 1 = conditional only."""
    batch_size: int = 512
    """Samples per batch (memory only)."""
    posterior_variance: str = "respaced"
    """Noise of each reverse step. 'respaced': the posterior variance of the respaced schedule (exact
    DDPM ancestral sampling on the kept timesteps); 'full_schedule': the 1000-step schedule's variance at
    each kept timestep, what the released sampler adds because set_timestep_skip (clip2latent/
    latent_prior.py) leaves DALLE2-pytorch's posterior_log_variance_clipped untouched: far less noise,
    so samples vary less."""

    def __post_init__(self) -> None:
        _check("PriorSamplingConfig", {"steps": self.steps >= 1, "guidance_scale": self.guidance_scale >= 0,
                                       "batch_size": self.batch_size >= 1,
                                       "posterior_variance": self.posterior_variance in POSTERIOR_VARIANCES}, self)

    @classmethod
    def paper(cls) -> "PriorSamplingConfig":
        return cls(steps=10, guidance_scale=2.0, posterior_variance="full_schedule")
