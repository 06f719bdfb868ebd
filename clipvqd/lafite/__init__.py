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
"""

from .conditioning import pseudo_text_feature, text_condition
from .config import LafiteModelConfig, LafiteTrainConfig
from .discriminator import Discriminator
from .generator import Generator
from .losses import contrastive_loss
from .sample import generate_images
from .train import load_generator, train_lafite

__all__ = ["Discriminator", "Generator", "LafiteModelConfig", "LafiteTrainConfig", "contrastive_loss",
           "generate_images", "load_generator", "pseudo_text_feature", "text_condition", "train_lafite"]
