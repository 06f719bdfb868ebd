"""LAFITE (Zhou et al., CVPR 2022), the language-free StyleGAN2 baseline (docs/design.md §4).

config        LafiteModelConfig / LafiteTrainConfig (world default at 32 px, paper presets at 256 px)
conditioning  the pseudo text feature h' = normalize(h + xi eps/|eps|); the text condition at sampling
layers        StyleGAN2 blocks: equalised layers, modulated convs, noise, the conditioned style affine
generator     mapping + synthesis network, styles conditioned on h'
discriminator residual D with logit + projection onto h' (and the features itd compares)
losses        non-saturating GAN, R1, the contrastive itd / itc losses
clip_features differentiable CLIP image embeddings of generated images (itc)
train         resumable trainer (EMA generator, loss curve, safetensors + JSON sidecar)
sample        text embeddings in, uint8 images out

The names below are imported on first use (`clipvqd.lazy_exports`): `config` imports without torch.
"""

from typing import TYPE_CHECKING

from clipvqd.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .conditioning import pseudo_text_feature, text_condition
    from .config import LafiteModelConfig, LafiteTrainConfig
    from .discriminator import Discriminator
    from .generator import Generator
    from .losses import contrastive_loss
    from .sample import generate_images
    from .train import load_generator, train_lafite

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
