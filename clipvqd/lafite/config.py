"""Sizes and optimisation settings of the LAFITE baseline (docs/design.md §4), each field documented.

Defaults are the embedded world's CPU-sized model at 32 px; `paper()` / `paper_train()` are the official
settings at 256 px. Where a value comes from the official implementation (github.com/drboog/Lafite) the
field says which file; the architecture follows StyleGAN2 (Karras et al. 2020) as used there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from clipvqd.config_blocks import check_fields as _check
from clipvqd.config_blocks import from_mapping as _from_dict

CONTRASTIVE_FORMS = ("official", "infonce")
MODULATED_CONV_FORMS = ("grouped", "scaled")  # clipvqd.lafite.layers.modulated_conv2d
DOWNSAMPLE_FORMS = ("pool", "strided")  # clipvqd.lafite.layers.EqualConv2d
PROJECTION_REDUCTIONS = ("batch", "sample")
AUGMENT_POLICIES = ("color", "translation", "cutout")


@dataclass(frozen=True)
class LafiteModelConfig:
    """Generator and discriminator sizes. World default: about 0.4 M generator parameters at 32 px."""

    resolution: int = 32
    """Output side in pixels, a power of two >= 8 (paper/FFHQ: 256). Images of another size are refused
    unless the lafite block's resize option is set."""
    condition_dim: int = 512
    """Length of the CLIP embedding the styles are conditioned on; the trainer sets it from the cached
    embeddings (CLIP ViT-B/32: 512)."""
    z_dim: int = 64
    """Latent noise z length (paper: 512)."""
    w_dim: int = 64
    """Intermediate latent w length (paper: 512)."""
    mapping_layers: int = 2
    """Fully connected layers of the mapping network z -> w (paper: 8)."""
    mapping_lr_multiplier: float = 0.01
    """Learning-rate multiplier of the mapping network's equalised layers (StyleGAN2: 0.01)."""
    condition_hidden: int = 64
    """Width of the per-layer MLP that embeds the pseudo text feature before it joins w in each style
    affine (official: 512, see training/networks.py SynthesisLayer)."""
    channel_base: int = 512
    """Feature maps at resolution r are min(channel_base // r, channel_max), in G and D alike
    (official: 32768 at fmap=1, train.py:92-93, 243, 251). World default 512 (64, 64, 32, 16 maps at 4, 8,
    16, 32 px): on validation prompts it trains about 1.7x faster a step than 1024 and, at 1800 steps,
    reaches precision 0.39 (docs/baselines.md)."""
    channel_max: int = 64
    """Upper bound on feature maps per layer (official: 512)."""
    use_noise: bool = True
    """Per-pixel noise inputs with learned strength in every synthesis layer (StyleGAN2, official: on).
    On, re-chosen on the validation prompts (README, rule 4): +0.026 [+0.007, +0.046] attr_acc over no
    noise inputs at lr 0.01 and 1440 steps. (An earlier 600-step run at the official lr 0.0025 had grown
    the strengths into per-pixel speckle, which is why the world default was once off.)"""
    mbstd_group_size: int = 4
    """Minibatch standard-deviation group size in the discriminator epilogue (official: min(batch, 4));
    0 disables it."""
    projection_reduction: str = "sample"
    """How the discriminator's projection term <proj(phi(x)), h'> enters its logits. 'batch': every
    image's logit gets the same term, summed over the batch, as the released code computes it
    (training/networks.py DiscriminatorEpilogue.forward, `x + (d_fts * fts).sum()`); 'sample': each
    image gets its own, as in a projection discriminator (Miyato & Koyama 2018)."""

    def __post_init__(self) -> None:
        r = self.resolution
        _check("LafiteModelConfig", {
            "resolution": r >= 8 and (r & (r - 1)) == 0,
            "condition_dim": self.condition_dim >= 1,
            "z_dim": self.z_dim >= 1,
            "w_dim": self.w_dim >= 1,
            "mapping_layers": self.mapping_layers >= 1,
            "mapping_lr_multiplier": self.mapping_lr_multiplier > 0,
            "condition_hidden": self.condition_hidden >= 1,
            "channel_base": self.channel_base >= 1,
            "channel_max": self.channel_max >= 1,
            "mbstd_group_size": self.mbstd_group_size >= 0,
            "projection_reduction": self.projection_reduction in PROJECTION_REDUCTIONS,
        }, self)

    def channels(self, resolution: int) -> int:
        return max(1, min(self.channel_base // resolution, self.channel_max))

    @property
    def block_resolutions(self) -> list[int]:
        """4, 8, ..., resolution."""
        out, r = [], 4
        while r <= self.resolution:
            out.append(r)
            r *= 2
        return out

    @classmethod
    def paper(cls) -> "LafiteModelConfig":
        """The official 256 px network (train.py 'auto' config with fmap=1, map_num=8, f_dim=512)."""
        return cls(resolution=256, condition_dim=512, z_dim=512, w_dim=512, mapping_layers=8,
                   condition_hidden=512, channel_base=32768, channel_max=512, use_noise=True,
                   projection_reduction="batch")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "lafite.model") -> "LafiteModelConfig":
        return _from_dict(cls, values, source)


@dataclass(frozen=True)
class LafiteTrainConfig:
    """Optimisation and loss settings. Defaults: the world run; losses as in the official train.py."""

    steps: int = 1440
    """Optimiser steps of G and of D (one each per step). A resumed run stops at the same total. World default
    1440: the same training CPU-seconds as CLIP-VQDiffusion's chain (tokenizer, pretraining, fine-tune), read
    off the quality-versus-compute curve (README, "Configuration": 1800 steps cost 466 CPU-s against the chain's
    373, so 0.8 of them). Precision on validation prompts rose 0.17 / 0.31 / 0.39 at 600 / 1200 / 1800 steps and
    stayed at 0.39 at 3000 (docs/baselines.md)."""
    batch_size: int = 16
    """Images per step (official: 16 per GPU)."""
    learning_rate: float = 0.01
    """Adam learning rate of G and D (official train.py: 0.0025 below 1024 px). The world default is 4x
    higher: at 0.0025 a 600-step run had not left the blurry start (attribute accuracy 0.50, and by
    reading noise); at 0.01 it draws conditioned faces (0.69)."""
    adam_betas: tuple[float, float] = (0.0, 0.99)
    """Adam betas of G and D (StyleGAN2 / official)."""
    xi: float = 1.0
    """Noise scale of the pseudo text feature h' = normalize(h + xi * eps/|eps|). The official language-free
    path (training/loss.py) forms normalize(0.25 h + 0.75 eps/|eps|), i.e. xi = 0.75 / 0.25 = 3, which puts
    h' at cosine 1/sqrt(1 + xi^2) = 0.32 from h, about where CLIP ViT-B/32 puts a caption from its image.
    The world's stand-in conditioner puts its held-out captions at mean cosine 0.62 from their images, i.e.
    xi = 1.28 by the same rule. World default 1: on validation prompts at 1800 steps, precision 0.39 and
    recall 0.93 against 0.21 and 0.63 with xi 3 (docs/baselines.md)."""
    temperature: float = 0.5
    """Temperature of both contrastive losses (official train.py default --temp=0.5)."""
    itd_weight: float = 10.0
    """Weight of the contrastive loss between discriminator features and h' (official --itd=10; its
    README's language-free example uses 20)."""
    itc_weight: float = 10.0
    """Weight of the contrastive loss between CLIP(G(z, h')) and h' (official --itc=10; README example 20)."""
    iic_weight: float = 0.0
    """Weight of the contrastive loss between CLIP(G(z, h')) and the *clean* CLIP image embedding h of the
    real image whose h' conditioned G (official --iic, default 0: `img_img_c` in training/loss.py)."""
    iid_weight: float = 0.0
    """Weight of the contrastive loss between the discriminator features of G(z, h') and of the real image
    whose h' conditioned G (official --iid, default 0: `img_img_d` in training/loss.py)."""
    contrastive_lambda: float = 0.0
    """Mix of the two softmax directions: 0 normalises over the images for each condition (official
    --lam default 0), 1 over the conditions for each image."""
    contrastive_form: str = "official"
    """'official': logits exp(cos/temperature), as the released code computes them (its comment calls this
    incorrect but says it reproduces the published results with these weights); 'infonce': cos/temperature."""
    r1_gamma: float = 0.01
    """R1 penalty weight gamma (official README example at 256 px: --gamma=10; docs/design.md §4). The world
    default follows StyleGAN2-ADA at 32 px (its cifar config: 0.01; its heuristic 0.0002 * res^2 / batch
    gives 0.0128), which the official train.py's 'auto' config also uses when --gamma is not given."""
    r1_interval: int = 16
    """Lazy regularisation: R1 every this many steps, scaled by it (StyleGAN2: 16); 1 = every step."""
    ema_half_life_images: float = 5000.0
    """Half-life of the generator EMA in images (official ema_kimg = batch * 10 / 32 = 5 kimg)."""
    ema_rampup: float = 0.05
    """The EMA half-life is capped at this fraction of the images seen so far (official: 0.05); 0 = off."""
    augment: tuple[str, ...] = ()
    """DiffAugment policies applied to every image the discriminator sees, real and generated, in both
    updates (`clipvqd.lafite.augment`): any of 'color', 'translation', 'cutout', applied in the order
    listed. Official: none (train.py: aug='noaug')."""
    modulated_conv: str = "grouped"
    """How G's modulated convolutions are computed while training (`layers.modulated_conv2d`), two forms of the
    same function: 'grouped', one grouped convolution over B per-sample weight tensors; 'scaled', activations
    scaled by the styles, one convolution with the shared weight, outputs scaled by the demodulation
    coefficients, which is how the official code trains (training/networks.py:56-65, fused_modconv=False
    whenever G is in training mode, :629-631). Sampling uses 'grouped' (the official choice in eval mode).
    They differ by float rounding only; 'scaled' is the cheaper on a CPU (benchmarks/README.md: 0.59x the
    CPU a LAFITE step with the next two). Off by default: the default run remeasured with the three on
    (benchmarks/README.md, "The default run side by side") kept LAFITE's attr_acc, but the headline's budget
    is equal training CPU-seconds, so turning them on means re-matching the GANs' steps to spend what they save."""
    discriminator_downsample: str = "pool"
    """How D's down-sampling layers compute convolution + 2x2 average pooling (`layers.EqualConv2d`), two forms
    of the same function: 'pool', the convolution at full resolution, then the pooling; 'strided', one stride-2
    convolution with the kernel folded with the 2x2 box (1x1 skips pool first). They differ by float rounding
    only; 'strided' is the cheaper (benchmarks/README.md). Off by default, as modulated_conv."""
    channels_last: bool = False
    """G, D, the CLIP of the itc loss and the image batches in channels-last memory format, the layout oneDNN's
    CPU convolutions prefer; the same arithmetic up to float rounding (benchmarks/README.md). Off by default, as
    modulated_conv."""
    snapshot_every: int = 200
    """Steps between resume snapshots in the work folder."""
    log_every: int = 20
    """Steps averaged into one row of the loss-curve CSV."""

    def __post_init__(self) -> None:
        _check("LafiteTrainConfig", {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 2,  # contrastive losses need negatives
            "learning_rate": self.learning_rate > 0,
            "adam_betas": len(self.adam_betas) == 2 and all(0.0 <= b < 1.0 for b in self.adam_betas),
            "xi": self.xi >= 0,
            "temperature": self.temperature > 0,
            "itd_weight": self.itd_weight >= 0,
            "itc_weight": self.itc_weight >= 0,
            "iic_weight": self.iic_weight >= 0,
            "iid_weight": self.iid_weight >= 0,
            "contrastive_lambda": 0.0 <= self.contrastive_lambda <= 1.0,
            "contrastive_form": self.contrastive_form in CONTRASTIVE_FORMS,
            "r1_gamma": self.r1_gamma >= 0,
            "r1_interval": self.r1_interval >= 1,
            "ema_half_life_images": self.ema_half_life_images >= 0,
            "ema_rampup": self.ema_rampup >= 0,
            "augment": all(p in AUGMENT_POLICIES for p in self.augment) and len(set(self.augment)) == len(self.augment),
            "modulated_conv": self.modulated_conv in MODULATED_CONV_FORMS,
            "discriminator_downsample": self.discriminator_downsample in DOWNSAMPLE_FORMS,
            "snapshot_every": self.snapshot_every >= 1,
            "log_every": self.log_every >= 1,
        }, self)

    @classmethod
    def paper(cls) -> "LafiteTrainConfig":
        """The official language-free run's losses and optimiser; steps are a budget choice (25 000 kimg
        at batch 16 would be 1.56 M steps)."""
        return cls(steps=200_000, learning_rate=0.0025, xi=3.0, r1_gamma=10.0, snapshot_every=2000, log_every=100)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["adam_betas"] = list(self.adam_betas)
        values["augment"] = list(self.augment)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "lafite.train") -> "LafiteTrainConfig":
        return _from_dict(cls, values, source)
