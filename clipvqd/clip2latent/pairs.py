"""The prior's training set: (w, CLIP image embedding of G(w)) pairs, with the z-scoring statistics.

As scripts/generate_dataset.py does it: z ~ N(0, I), w = mapping(z), image = synthesis(w), embedding =
CLIP image embedding of the image. The images pass through uint8 first and are embedded by the same
`ClipEncoder.encode_images` that embedded the training split, so a generated face is embedded exactly as
a real one would be. Mean and std per channel of w and of the embeddings over the first `stats_count`
pairs are stored beside them (official load_data: a 10 000-pair batch, `make_data_stats`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from clipvqd.clip.encoder import ClipEncoder
from clipvqd.hashing import sha256_file
from clipvqd.lafite.generator import Generator
from clipvqd.manifest import to_uint8
from clipvqd.training.seeding import generator_for

from .config import PairsConfig
from .generator import mapping, synthesis

PAIRS_FORMAT = "clipvqd-clip2latent-pairs/1"
_STREAM_PAIRS = 31


@torch.no_grad()
def make_pairs(generator: Generator, clip: ClipEncoder, cfg: PairsConfig, seed: int,
               progress: bool = True) -> dict[str, Tensor]:
    """{'w': (N, w_dim), 'embeddings': (N, D)}; batch b draws its z from stream (seed, b)."""
    device = next(generator.parameters()).device
    ws, embeds = [], []
    for start in tqdm(range(0, cfg.count, cfg.batch_size), desc="clip2latent pairs", unit="batch",
                      disable=not progress):
        size = min(cfg.batch_size, cfg.count - start)
        z = torch.randn(size, generator.config.z_dim, generator=generator_for(seed, _STREAM_PAIRS, start))
        w = mapping(generator, z.to(device))
        images = to_uint8(synthesis(generator, w).float().cpu())
        ws.append(w.float().cpu())
        embeds.append(clip.encode_images(images).float().cpu())
    return {"w": torch.cat(ws), "embeddings": torch.cat(embeds)}


def pair_stats(pairs: dict[str, Tensor], stats_count: int) -> dict[str, Tensor]:
    w, e = pairs["w"][:stats_count], pairs["embeddings"][:stats_count]
    return {"w_mean": w.mean(0), "w_std": w.std(0), "embed_mean": e.mean(0), "embed_std": e.std(0)}


def save_pairs(path: str | Path, pairs: dict[str, Tensor], stats: dict[str, Tensor], meta: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {key: value.contiguous() for key, value in {**pairs, **stats}.items()}
    save_file(tensors, str(tmp), metadata={"format": PAIRS_FORMAT, **{k: str(v) for k, v in meta.items()}})
    tmp.replace(path)


def load_pairs(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every tensor of a pairs file (w, embeddings, w_mean, w_std, embed_mean, embed_std) and its metadata."""
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata() or {})
        if meta.get("format") != PAIRS_FORMAT:
            raise ValueError(f"{path} is not a clip2latent pairs file (format {meta.get('format')!r}, "
                             f"expected {PAIRS_FORMAT!r})")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    missing = sorted({"w", "embeddings", "w_mean", "w_std", "embed_mean", "embed_std"} - set(tensors))
    if missing:
        raise ValueError(f"pairs file {path} lacks {missing}")
    return tensors, meta


def pairs_file_meta(generator_path: str | Path, clip: ClipEncoder, cfg: PairsConfig, seed: int) -> dict[str, Any]:
    return {"generator_sha256": sha256_file(generator_path), "clip_sha256": clip.identity, "count": cfg.count,
            "seed": seed}
