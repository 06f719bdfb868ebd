"""Encode a split once into compact code maps, the diffusion models' training data.

Output: an `.npy` array (N, h, w) of compact codes (int16 when the vocabulary fits, else int32), in
the row order of the source dataset, plus a JSON manifest describing it (shape, vocabulary, and the
provenance the caller passes: tokenizer checkpoint and source manifest hashes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from clipvqd.hashing import sha256_file
from clipvqd.manifest import resolve_listed
from clipvqd.tokenizer.compaction import CodeMapping
from clipvqd.tokenizer.model import GumbelVQGAN


def code_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.int16) if vocab_size <= np.iinfo(np.int16).max + 1 else np.dtype(np.int32)


@torch.no_grad()
def tokenize_dataset(model: GumbelVQGAN, dataset: Dataset, mapping: CodeMapping, out_codes: str | Path,
                     out_manifest: str | Path, batch_size: int = 256, device: str | torch.device = "cpu",
                     progress: bool = True, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write compact code maps of every image in `dataset`; return the manifest written to `out_manifest`."""
    mapping.check_matches(model)
    model.eval().to(device)
    allowed = mapping.used_codes.to(device)
    dtype = code_dtype(mapping.vocab_size)
    height, width = model.config.token_grid
    codes = np.empty((len(dataset), height, width), dtype=dtype)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    start = 0
    for images in tqdm(loader, desc="tokenize", unit="batch", disable=not progress):
        # Restricting the argmax to the vocabulary keeps every token inside the diffusion model's vocabulary.
        compact = mapping.compact(model.encode(images.to(device), allowed_codes=allowed))
        codes[start:start + len(images)] = compact.cpu().numpy().astype(dtype)
        start += len(images)

    out_codes, out_manifest = Path(out_codes), Path(out_manifest)
    out_codes.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_codes.with_name(out_codes.name + ".tmp.npy")
    np.save(tmp, codes)
    os.replace(tmp, out_codes)
    manifest = {
        "kind": "tokenized_split",
        "codes_file": out_codes.name,
        "codes_sha256": sha256_file(out_codes),
        "count": int(codes.shape[0]),
        "token_grid": [height, width],
        "dtype": dtype.name,
        "vocab_size": mapping.vocab_size,
        "codebook_size": mapping.codebook_size,
        "provenance": dict(provenance or {}),
    }
    out_manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_manifest.with_name(out_manifest.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, out_manifest)
    return manifest


def load_code_maps(manifest_path: str | Path, verify: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a tokenized split; check the array's hash, shape, dtype and range against its manifest."""
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise FileNotFoundError(f"tokenized split manifest not found: {manifest_path}")
    manifest = json.loads(manifest_path.read_text())
    codes_path = resolve_listed(manifest_path, manifest["codes_file"])  # stays beside its manifest
    if verify and sha256_file(codes_path) != manifest["codes_sha256"]:
        raise ValueError(f"code maps {codes_path} do not have the sha256 recorded in {manifest_path}")
    codes = np.load(codes_path, allow_pickle=False)
    expected = (manifest["count"], *manifest["token_grid"])
    if codes.shape != expected or codes.dtype.name != manifest["dtype"]:
        raise ValueError(f"code maps {codes_path} are {codes.dtype.name} {codes.shape}; "
                         f"{manifest_path} records {manifest['dtype']} {expected}")
    if codes.size and (codes.min() < 0 or codes.max() >= manifest["vocab_size"]):
        raise ValueError(f"code maps {codes_path} hold codes outside [0, {manifest['vocab_size'] - 1}]")
    return codes, manifest
