"""The image tokenizer of CLIP-VQDiffusion: a Gumbel-softmax VQGAN (docs/design.md §4 "Tokenizer")."""

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

__all__ = [
    "CodeMapping",
    "GumbelQuantizer",
    "GumbelVQGAN",
    "LPIPS",
    "PatchDiscriminator",
    "Quantized",
    "TokenizerConfig",
    "TokenizerTrainConfig",
    "UnknownCodeError",
    "VQGANLoss",
    "build_code_mapping",
    "cosine_temperature",
    "count_code_usage",
    "evaluate_tokenizer",
    "load_code_maps",
    "load_tokenizer",
    "save_reconstruction_grid",
    "tokenize_dataset",
    "train_tokenizer",
]
