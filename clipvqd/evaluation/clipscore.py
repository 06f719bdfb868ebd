"""CLIPscore as CLIP-VQDiffusion and clip2latent report it, and best-of-N selection.

CLIPscore here is the raw cosine between the L2-normalised CLIP text embedding of the prompt and the
L2-normalised CLIP image embedding of a sample: not multiplied by 100, not clipped at 0 (the
"CLIP-S" of Hessel et al. rescales and clips; the papers compared here do not).

* `clipscore_best_of_n`: for each prompt, the best of its first N samples (by `sample_index`), averaged
  over prompts. N = 16 is the paper's FFHQ protocol (`clipscore_best16`).
* `clipscore_mean`: mean over every sample.
* The judge variant (`clipscore_judge_mean`) is the same mean scored by a CLIP that did not condition
  the generator, because a generator scored by its own conditioning CLIP is rewarded for exploiting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from clipvqd.evaluation.image_set import UInt8Images
from clipvqd.manifest import absolute_paths, read_manifest

SAMPLE_COLUMNS = ("path", "prompt_id", "prompt", "sample_index")


class ClipScoreError(ValueError):
    pass


def cosine_scores(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of paired embeddings (B, D) x (B, D) -> (B,).

    Inputs are normalised here again, so an un-normalised embedding cannot inflate the score; for
    already unit-length inputs this is the plain dot product.
    """
    if image_embeddings.shape != text_embeddings.shape or image_embeddings.dim() != 2:
        raise ClipScoreError(
            f"paired embeddings must both be (B, D); got images {tuple(image_embeddings.shape)}, "
            f"texts {tuple(text_embeddings.shape)}"
        )
    images = F.normalize(image_embeddings.double(), dim=-1)
    texts = F.normalize(text_embeddings.double(), dim=-1)
    return (images * texts).sum(dim=-1)


def _resize_for(clip, images: torch.Tensor) -> torch.Tensor:
    resolution = getattr(clip, "input_resolution", None)
    if resolution is None or tuple(images.shape[-2:]) == (resolution, resolution):
        return images
    resized = F.interpolate(images.float(), size=(resolution, resolution), mode="bicubic", antialias=True,
                            align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def score_manifest(clip, manifest_path: str | Path, batch_size: int = 64, verify: bool = True) -> pd.DataFrame:
    """One CLIPscore per sample of a method's manifest.

    `clip` needs `encode_images(uint8 (B,3,H,W)) -> (B,D)` and `encode_texts(list[str]) -> (B,D)`.
    Returns the manifest's columns plus `clipscore`, in manifest order.
    """
    return score_and_embed_manifest(clip, manifest_path, batch_size, verify)[0]


@torch.no_grad()
def score_and_embed_manifest(clip, manifest_path: str | Path, batch_size: int = 64,
                             verify: bool = True) -> tuple[pd.DataFrame, torch.Tensor]:
    """`score_manifest`'s table and the image embeddings it scored, (N, D) float32 in manifest order (the
    within-prompt diversity reads the judge's without encoding the images twice)."""
    frame = read_manifest(manifest_path, verify=verify)
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ClipScoreError(f"sample manifest {manifest_path} lacks column(s) {', '.join(missing)}")
    prompts = sorted(set(frame["prompt"]))
    text_embeddings = clip.encode_texts(prompts).detach().float().cpu()
    if text_embeddings.shape[0] != len(prompts):
        raise ClipScoreError(f"encode_texts returned {text_embeddings.shape[0]} rows for {len(prompts)} prompts")
    text_by_prompt = {prompt: text_embeddings[i] for i, prompt in enumerate(prompts)}
    images = UInt8Images(absolute_paths(manifest_path, frame))
    scores, embedded = [], []
    for start in range(0, len(images), batch_size):
        indices = range(start, min(start + batch_size, len(images)))
        batch = torch.stack([images[i] for i in indices])
        image_embeddings = clip.encode_images(_resize_for(clip, batch)).detach().float().cpu()
        texts = torch.stack([text_by_prompt[frame["prompt"].iloc[i]] for i in indices])
        scores.append(cosine_scores(image_embeddings, texts))
        embedded.append(image_embeddings)
    result = frame.copy()
    result["clipscore"] = torch.cat(scores).numpy()
    return result, torch.cat(embedded) if embedded else torch.empty(0)


@dataclass
class BestOfN:
    """The outcome of best-of-N selection.

    `chosen`: one row per prompt (the highest-scoring of its first N samples; ties go to the lowest
    `sample_index`, so the choice is deterministic). `candidates`: every sample that took part, with
    `rank` (1 = best within its prompt) and `chosen` (bool), so the choice can be audited and displayed.
    """

    n: int
    chosen: pd.DataFrame
    candidates: pd.DataFrame

    @property
    def score(self) -> float:
        return float(self.chosen["clipscore"].mean())


def select_best_of_n(scores: pd.DataFrame, n: int = 16, score_column: str = "clipscore") -> BestOfN:
    """Pick the best of the first `n` samples (by `sample_index`) of every prompt.

    A prompt with fewer than `n` samples is refused, naming it: "best of 16" over 9 samples would be a
    different, lower-variance number under the same name.
    """
    for column in ("prompt_id", "sample_index", score_column):
        if column not in scores.columns:
            raise ClipScoreError(f"best-of-{n}: scores lack column {column!r}")
    if n < 1:
        raise ClipScoreError(f"best-of-N needs N >= 1, got {n}")
    ordered = scores.sort_values(["prompt_id", "sample_index"], kind="stable")
    duplicated = ordered.duplicated(["prompt_id", "sample_index"])
    if duplicated.any():
        row = ordered[duplicated].iloc[0]
        raise ClipScoreError(f"prompt {row['prompt_id']!r} has sample_index {row['sample_index']} twice")
    counts = ordered.groupby("prompt_id", sort=True).size()
    short = counts[counts < n]
    if len(short):
        listed = ", ".join(f"{pid!r} ({count})" for pid, count in short.head(5).items())
        raise ClipScoreError(f"best-of-{n} needs {n} samples per prompt; too few for prompt(s) {listed}")
    candidates = ordered.groupby("prompt_id", sort=True).head(n).copy()
    # Rank by score descending, ties broken by sample_index ascending (stable sort over the order above).
    candidates = candidates.sort_values(["prompt_id", score_column], ascending=[True, False], kind="stable")
    candidates["rank"] = candidates.groupby("prompt_id").cumcount() + 1
    candidates["chosen"] = candidates["rank"] == 1
    candidates = candidates.sort_values(["prompt_id", "sample_index"], kind="stable").reset_index(drop=True)
    chosen = candidates[candidates["chosen"]].reset_index(drop=True)
    return BestOfN(n=n, chosen=chosen, candidates=candidates)


def clipscore_best_of_n(scores: pd.DataFrame, n: int = 16) -> float:
    """Best of `n` samples per prompt, averaged over prompts."""
    return select_best_of_n(scores, n).score


def clipscore_mean(scores: pd.DataFrame) -> float:
    """Mean CLIPscore over every sample."""
    if "clipscore" not in scores.columns or len(scores) == 0:
        raise ClipScoreError("clipscore_mean: no scores")
    return float(np.mean(scores["clipscore"].to_numpy(dtype=np.float64)))


def summarize_clipscores(scores: pd.DataFrame, role: str = "generator", best_of: int | None = 16) -> dict:
    """The table's CLIPscore metrics as {metric: (value, n)}.

    role="generator" (the CLIP that conditioned the method): `clipscore_best16` (n = prompts; only when
    `best_of` is 16, the one best-of protocol the table names) and `clipscore_mean` (n = samples).
    role="judge" (a CLIP that conditioned no method): `clipscore_judge_mean`.
    """
    if role == "judge":
        return {"clipscore_judge_mean": (clipscore_mean(scores), len(scores))}
    if role != "generator":
        raise ClipScoreError(f"role must be 'generator' or 'judge', got {role!r}")
    out = {}
    if best_of is not None:
        if best_of != 16:
            raise ClipScoreError(f"the metrics table only names best-of-16 (clipscore_best16); got best_of={best_of}")
        selection = select_best_of_n(scores, best_of)
        out["clipscore_best16"] = (selection.score, len(selection.chosen))
    out["clipscore_mean"] = (clipscore_mean(scores), len(scores))
    return out
