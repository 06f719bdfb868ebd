"""The interface every generator shares: prompts in, PNGs + a manifest out (docs/design.md §3).

A sample set is a folder of PNGs and `manifest.csv` with one row per image: `path` (relative to the
manifest), `sha256`, `prompt_id`, `prompt`, `sample_index`, `seed`, `method`, `variant`, and the
settings the method used (`alpha`, `s`, `r`, `steps`, `purity`, ... where they apply). Metrics only ever
read this, so they cannot tell which method made the images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipvqd.hashing import sha256_file

SAMPLE_COLUMNS = ("path", "sha256", "prompt_id", "prompt", "sample_index", "seed", "method", "variant")


def read_prompts(prompts_csv: str | Path) -> pd.DataFrame:
    """The prompt table (`prompt_id`, `prompt`, ...), every cell as text, blank cells kept blank."""
    frame = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str)
    for column in ("prompt_id", "prompt"):
        if column not in frame.columns:
            raise ValueError(f"prompt table {prompts_csv} has no '{column}' column")
    if frame["prompt_id"].duplicated().any():
        duplicated = sorted(frame.loc[frame["prompt_id"].duplicated(), "prompt_id"])[:5]
        raise ValueError(f"prompt table {prompts_csv} repeats prompt ids {duplicated}")
    return frame


def sample_plan(prompts: pd.DataFrame, samples_per_prompt: int, best_of_prompts: int = 0,
                best_of: int = 16) -> pd.DataFrame:
    """One row per image to draw, in a fixed order (prompt order, then sample index): image i of the
    plan always gets the same random stream, whichever method draws it. The first `best_of_prompts` prompts
    of the table get `best_of` samples (at least `samples_per_prompt`), for best-of-N CLIPscore; the
    metrics use the first `samples_per_prompt` samples of every prompt for everything else."""
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
    if best_of_prompts < 0:
        raise ValueError(f"best_of_prompts must be >= 0, got {best_of_prompts}")
    rows = [{"prompt_index": index, "prompt_id": row.prompt_id, "prompt": row.prompt, "sample_index": j}
            for index, row in enumerate(prompts.itertuples(index=False))
            for j in range(max(samples_per_prompt, best_of) if index < best_of_prompts else samples_per_prompt)]
    return pd.DataFrame(rows)


def write_sample_set(images: torch.Tensor, plan: pd.DataFrame, out_dir: str | Path, manifest: str | Path,
                     *, method: str, variant: str, seed: int, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Write `images` (uint8 `(N, 3, H, W)`, in `plan` order) as PNGs and the manifest, atomically last."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if len(images) != len(plan):
        raise ValueError(f"{len(images)} images for a plan of {len(plan)} samples")
    out_dir, manifest = Path(out_dir), Path(manifest)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for image, row in zip(images, plan.itertuples(index=False)):
        name = f"{row.prompt_id}_{row.sample_index:03d}.png"
        path = image_dir / name
        Image.fromarray(image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)).save(path)
        rows.append({"path": os.path.relpath(path, manifest.parent), "sha256": sha256_file(path),
                     "prompt_id": row.prompt_id, "prompt": row.prompt, "sample_index": row.sample_index,
                     "seed": seed, "method": method, "variant": variant, **dict(settings or {})})
    frame = pd.DataFrame(rows)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(manifest.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, manifest)
    return frame


def prompt_rows(embeddings: torch.Tensor, prompts: pd.DataFrame, plan: pd.DataFrame) -> torch.Tensor:
    """The embedding of each planned sample's prompt (embeddings are in prompt-table order)."""
    if len(embeddings) != len(prompts):
        raise ValueError(f"{len(embeddings)} prompt embeddings for {len(prompts)} prompts: "
                         "the embedding cache is stale, rerun clip_embed")
    return embeddings[torch.tensor(plan["prompt_index"].tolist(), dtype=torch.long)]


__all__: Sequence[str] = ("SAMPLE_COLUMNS", "read_prompts", "sample_plan", "write_sample_set", "prompt_rows")
