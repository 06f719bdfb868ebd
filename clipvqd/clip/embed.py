"""The CLIP embedding cache: computed once per CLIP and data set, read by every downstream rule.

Each file stores the embeddings with the identity of the CLIP that made them (its sha256) and of the
manifest they embed, so a changed CLIP or data set is detected instead of silently mixed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from clipvqd.hashing import sha256_file
from clipvqd.manifest import ManifestImages

if TYPE_CHECKING:  # the readers below need no CLIP: jobs that only read a cache do not import open_clip
    from clipvqd.clip.encoder import ClipEncoder


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


class _Uint8Batches(torch.utils.data.Dataset):
    """Batch i of a manifest's images as uint8 (B, 3, H, W), decoded straight from the files."""

    def __init__(self, dataset: ManifestImages, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __getitem__(self, index: int) -> torch.Tensor:
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.dataset))
        return torch.stack([self.dataset.uint8(i) for i in range(start, stop)])


def embed_images(encoder: ClipEncoder, manifest: str | Path, out: str | Path, batch_size: int = 256,
                 progress: bool = True, decode_workers: int = 1) -> torch.Tensor:
    """Embed every image of `manifest` and write the cache file. Images are decoded straight to uint8 (the
    encoder's input) by `decode_workers` loader processes while the encoder works (a process, not a thread:
    decoding small PNGs is mostly Python, which would hold the GIL the encoder's forward also needs);
    0 decodes in this process. Each file's sha256 is checked as the worker reads it (one read, no separate
    hashing pass); a mismatch stops the job, naming the file, before the cache is written."""
    dataset = ManifestImages(manifest, verify_on_read=True)
    if len(dataset) == 0:
        raise ValueError(f"{manifest} lists no images to embed")
    batches = torch.utils.data.DataLoader(_Uint8Batches(dataset, batch_size), batch_size=None, shuffle=False,
                                          num_workers=decode_workers)
    chunks = [encoder.encode_images(batch)
              for batch in tqdm(batches, desc=f"embed images {Path(manifest).name}", disable=not progress)]
    embeddings = torch.cat(chunks)
    _save(out, embeddings, encoder, manifest, "image")
    return embeddings


def embed_text_column(encoder: ClipEncoder, table: str | Path, column: str, out: str | Path,
                      prefix: str = "", progress: bool = True) -> torch.Tensor:
    frame = pd.read_csv(table, keep_default_na=False, dtype=str)
    if column not in frame.columns:
        raise ValueError(f"{table} has no '{column}' column to embed")
    blank = [int(i) + 2 for i in frame.index[frame[column].str.strip() == ""]]  # line numbers (after the header)
    if blank:
        raise ValueError(f"{table} has an empty {column} on line(s) {blank[:5]}{' ...' if len(blank) > 5 else ''}: "
                         "CLIP would embed the empty string as if it were a prompt")
    texts: Sequence[str] = [prefix + text for text in frame[column]]
    batch = 256
    chunks = [encoder.encode_texts(texts[i:i + batch])
              for i in tqdm(range(0, len(texts), batch), desc=f"embed texts {Path(table).name}", disable=not progress)]
    embeddings = torch.cat(chunks)
    _save(out, embeddings, encoder, table, "text")
    return embeddings


def read_embedding_cache(path: str | Path) -> tuple[torch.Tensor, dict[str, str]]:
    """A cache file's embeddings and its metadata (`clip_sha256`, `source`, `source_sha256`, ...), unchecked."""
    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor("embeddings"), dict(handle.metadata() or {})


def load_embeddings(path: str | Path, expected_clip_sha256: str | None = None) -> torch.Tensor:
    """Read a cache file; refuse it if it was made by another CLIP than `expected_clip_sha256`."""
    embeddings, metadata = read_embedding_cache(path)
    if expected_clip_sha256 and metadata.get("clip_sha256") != expected_clip_sha256:
        raise StaleEmbeddings(
            f"embedding cache {path} was made by CLIP {metadata.get('clip_sha256')}, not by the current CLIP "
            f"{expected_clip_sha256}; rerun the clip_embed rule"
        )
    return embeddings
