"""clip2latent's image model: an unconditional StyleGAN2, trained with LAFITE's backbone and trainer.

clip2latent takes a pretrained StyleGAN2 and never changes it. Offline, the suite trains one on the same
language-free training split every method sees, with `clipvqd.lafite.train_lafite` in its unconditional
mode (zero condition, no contrastive losses, no CLIP). The prior works in W: w = mapping(z) is the vector
it learns to sample, and an image is synthesis(w) with the stored constant noise maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from clipvqd.lafite.generator import Generator
from clipvqd.lafite.train import load_generator as load_lafite_generator
from clipvqd.lafite.train import train_lafite

from .config import GeneratorModelConfig, GeneratorTrainConfig

NOISE_MODE = "const"


def train_generator(images: Tensor, model_cfg: GeneratorModelConfig, train_cfg: GeneratorTrainConfig,
                    work_dir: str | Path, out_weights: str | Path, curve_csv: str | Path,
                    device: str | torch.device = "cpu", seed: int = 0, progress: bool = True,
                    milestones: Mapping[int, str | Path] | None = None,
                    final_snapshot: bool = True) -> dict[str, Any]:
    """Train (or resume) the unconditional generator; the EMA weights go to `out_weights` + JSON sidecar (and
    those after each step of `milestones` to its path, for the quality-versus-compute curve). final_snapshot:
    as in `train_lafite`."""
    return train_lafite(images, None, None, model_cfg.to_lafite(), train_cfg.to_lafite(), work_dir, out_weights,
                        curve_csv, device=device, seed=seed, progress=progress, milestones=milestones,
                        final_snapshot=final_snapshot)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """The EMA generator of `train_generator`, refusing a conditional (LAFITE) checkpoint."""
    generator, meta = load_lafite_generator(path, device=device)
    if meta.get("conditional", True):
        raise ValueError(f"{path} is a conditional LAFITE generator; clip2latent needs the unconditional one "
                         "written by `clip2latent train-generator`")
    return generator, meta


def mapping(generator: Generator, z: Tensor) -> Tensor:
    """w = mapping(z) (the mapping network is unconditional in LAFITE's backbone too)."""
    return generator.mapping(z)


def synthesis(generator: Generator, w: Tensor) -> Tensor:
    """Images (B, 3, R, R), roughly in [-1, 1], from w with the constant noise maps (zero condition)."""
    condition = torch.zeros(w.shape[0], generator.config.condition_dim, device=w.device, dtype=w.dtype)
    x = img = None
    for block in generator.blocks:
        x, img = block(x, img, w, condition, NOISE_MODE, None)
    return img
