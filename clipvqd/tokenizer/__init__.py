"""The image tokenizer of CLIP-VQDiffusion: a Gumbel-softmax VQGAN (docs/design.md §4 "Tokenizer").

The names below are imported on first use (`clipvqd.lazy_exports`): `config` imports without torch.
"""

from typing import TYPE_CHECKING

from clipvqd.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from clipvqd.tokenizer.compaction import CodeMapping, UnknownCodeError, build_code_mapping, count_code_usage
    from clipvqd.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
    from clipvqd.tokenizer.discriminator import PatchDiscriminator
    from clipvqd.tokenizer.evaluate import evaluate_tokenizer, save_reconstruction_grid
    from clipvqd.tokenizer.losses import VQGANLoss
    from clipvqd.tokenizer.model import GumbelVQGAN, load_tokenizer
    from clipvqd.tokenizer.perceptual import LPIPS
    from clipvqd.tokenizer.quantizer import GumbelQuantizer, Quantized, cosine_temperature
    from clipvqd.tokenizer.tokenize import load_code_maps, tokenize_dataset
    from clipvqd.tokenizer.train import train_tokenizer

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
