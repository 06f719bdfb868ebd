"""What the diffusion trainer reads: the tokenized training split and, per mode, the condition embeddings
that describe the same images, checked against each other before any compute is spent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .train import TrainingMode


class TrainingDataError(ValueError):
    """The token maps and the condition embeddings of a training job do not belong together."""


@dataclass(frozen=True)
class DiffusionTrainingData:
    tokens: Tensor  # (N, H, W) int64 compact codes
    conditions: Tensor | None  # (N, D) condition embeddings; None for the unconditional control
    vocab_size: int  # K, the compact vocabulary of the tokenizer
    grid: tuple[int, int]  # (H, W) of the token maps
    condition_dim: int  # D, which sizes the denoiser's condition input (and the null vector)


def training_conditions(mode: TrainingMode | str, embeddings_path: str | Path | None, tokens_path: str | Path,
                        tokens_manifest: dict, count: int) -> Tensor | None:
    """The condition embeddings of `mode` (None for the unconditional control), checked to describe the
    same images as the `count` token maps of `tokens_path`: the same number of rows, and, except for the
    paired control's caption embeddings, the same source manifest (its sha256, as tokenize recorded it)."""
    from clipvqd.clip.embed import read_embedding_cache

    mode = TrainingMode.parse(mode)
    if mode is TrainingMode.UNCONDITIONAL:
        return None
    if not embeddings_path:
        raise TrainingDataError(f"mode '{mode.value}' needs condition embeddings (--embeddings)")
    embeddings, meta = read_embedding_cache(embeddings_path)
    if len(embeddings) != count:
        raise TrainingDataError(f"{embeddings_path} holds {len(embeddings)} embeddings but {tokens_path} has "
                                f"{count} token maps: they were made from different splits")
    expected = tokens_manifest.get("provenance", {}).get("manifest_sha256")
    if not mode.uses_text_condition and expected and meta.get("source_sha256") != expected:
        raise TrainingDataError(f"{embeddings_path} embeds {meta.get('source')} (sha256 {meta.get('source_sha256')}), "
                                f"but the token maps come from a manifest with sha256 {expected}; rerun clip_embed")
    return embeddings


def load_training_data(tokens_path: str | Path, mode: TrainingMode | str, embeddings_path: str | Path | None = None,
                       default_condition_dim: int = 512) -> DiffusionTrainingData:
    """The token maps of `tokens_path` (a tokenize manifest) with the conditions of `mode`.

    The condition size comes from the embeddings; the unconditional control, which reads none, is sized
    by `embeddings_path` when given (its null condition then has the size the other models' conditions
    have) and by `default_condition_dim` otherwise."""
    from clipvqd.clip.embed import read_embedding_cache
    from clipvqd.tokenizer import load_code_maps

    codes, manifest = load_code_maps(tokens_path)
    conditions = training_conditions(mode, embeddings_path, tokens_path, manifest, len(codes))
    if conditions is not None:
        condition_dim = int(conditions.shape[1])
    elif embeddings_path:
        condition_dim = int(read_embedding_cache(embeddings_path)[0].shape[1])
    else:
        condition_dim = default_condition_dim
    height, width = manifest["token_grid"]
    return DiffusionTrainingData(tokens=torch.from_numpy(codes.astype("int64")), conditions=conditions,
                                 vocab_size=int(manifest["vocab_size"]), grid=(int(height), int(width)),
                                 condition_dim=condition_dim)
