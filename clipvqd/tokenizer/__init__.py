"""The image tokenizer of CLIP-VQDiffusion: a Gumbel-softmax VQGAN (docs/design.md §4 "Tokenizer").

The names below are imported on first use (PEP 562): a job that only loads a tokenizer or reads code maps
(the diffusion trainers and samplers) then does not import what only evaluation and the perceptual loss
need (scikit-image and SciPy, torchvision's model zoo), about three CPU-seconds per job.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "CodeMapping": "compaction",
    "UnknownCodeError": "compaction",
    "build_code_mapping": "compaction",
    "count_code_usage": "compaction",
    "TokenizerConfig": "config",
    "TokenizerTrainConfig": "config",
    "PatchDiscriminator": "discriminator",
    "evaluate_tokenizer": "evaluate",
    "save_reconstruction_grid": "evaluate",
    "VQGANLoss": "losses",
    "GumbelVQGAN": "model",
    "load_tokenizer": "model",
    "LPIPS": "perceptual",
    "GumbelQuantizer": "quantizer",
    "Quantized": "quantizer",
    "cosine_temperature": "quantizer",
    "load_code_maps": "tokenize",
    "tokenize_dataset": "tokenize",
    "train_tokenizer": "train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
