"""The CLIP embedding cache: computed once per CLIP and data set, read by every downstream rule.

Each file stores the embeddings with the identity of the CLIP that made them (its sha256) and of the
manifest they embed, so a changed CLIP or data set is detected instead of silently mixed in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from clipvqd.clip.encoder import ClipEncoder
from clipvqd.hashing import sha256_file
from clipvqd.manifest import ManifestImages


class StaleEmbeddings(ValueError):
    pass


def _save(out: str | Path, embeddings: torch.Tensor, encoder: ClipEncoder, source: str | Path, kind: str) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"clip_sha256": encoder.identity, "source": str(source), "source_sha256": sha256_file(source),
                "kind": kind, "count": str(len(embeddings))}
    tmp = out.with_name(out.name + ".tmp")
    save_file({"embeddings": embeddings.contiguous()}, str(tmp), metadata=metadata)
    tmp.replace(out)


def embed_images(encoder: ClipEncoder, manifest: str | Path, out: str | Path, batch_size: int = 256,
                 progress: bool = True) -> torch.Tensor:
    """Embed every image of `manifest` and write the cache file. Images are decoded straight to uint8 (the
    encoder's input) and the next batch is decoded on a second thread while this one is encoded: PNG
    decoding and torch both release the GIL, so the encoder rarely waits for data."""
    dataset = ManifestImages(manifest)
    if len(dataset) == 0:
        raise ValueError(f"{manifest} lists no images to embed")
    starts = range(0, len(dataset), batch_size)

    def decode(start: int) -> torch.Tensor:
        return torch.stack([dataset.uint8(i) for i in range(start, min(start + batch_size, len(dataset)))])

    chunks = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(decode, starts[0])
        for position in tqdm(range(len(starts)), desc=f"embed images {Path(manifest).name}", disable=not progress):
            batch = pending.result()
            pending = pool.submit(decode, starts[position + 1]) if position + 1 < len(starts) else None
            chunks.append(encoder.encode_images(batch))
    embeddings = torch.cat(chunks)
    _save(out, embeddings, encoder, manifest, "image")
    return embeddings


def embed_text_column(encoder: ClipEncoder, table: str | Path, column: str, out: str | Path,
                      prefix: str = "", progress: bool = True) -> torch.Tensor:
    frame = pd.read_csv(table, keep_default_na=False, dtype=str)
    if column not in frame.columns:
        raise ValueError(f"{table} has no '{column}' column to embed")
    texts: Sequence[str] = [prefix + text for text in frame[column]]
    batch = 256
    chunks = [encoder.encode_texts(texts[i:i + batch])
              for i in tqdm(range(0, len(texts), batch), desc=f"embed texts {Path(table).name}", disable=not progress)]
    embeddings = torch.cat(chunks)
    _save(out, embeddings, encoder, table, "text")
    return embeddings


def load_embeddings(path: str | Path, expected_clip_sha256: str | None = None) -> torch.Tensor:
    """Read a cache file; refuse it if it was made by another CLIP than `expected_clip_sha256`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        embeddings = handle.get_tensor("embeddings")
    if expected_clip_sha256 and metadata.get("clip_sha256") != expected_clip_sha256:
        raise StaleEmbeddings(
            f"embedding cache {path} was made by CLIP {metadata.get('clip_sha256')}, not by the current CLIP "
            f"{expected_clip_sha256}; rerun the clip_embed rule"
        )
    return embeddings
