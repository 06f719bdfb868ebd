"""Within-prompt diversity: how different a method's samples of one prompt are from each other.

For one prompt, the mean Euclidean distance over every unordered pair of its samples' L2-normalised judge-CLIP
image embeddings (so a value lies in [0, 2]); the metric `within_prompt_diversity` is the mean of that over the
alignment set's in-distribution prompts, each with its first `k` samples (`alignment.py`'s balanced k, at
least 2). Per prompt it is one unit of the units table (numerator = the prompt's value, denominator = 1), so
its interval is the same two-level bootstrap over seeds and prompts as the other alignment metrics, and the
paired comparisons with CLIP-VQDiffusion apply unchanged.

What it can show: a generator whose samples of a prompt are near-identical (mode collapse, a condition that
overrides the noise) scores near 0. What it cannot: it is a distance in the judge's feature space, so
differences the judge does not encode (small shifts, textures) are invisible, and a high value is not better by
itself: unrelated images, or noise, are far apart too. It has no "better" direction; read it beside precision
and attribute accuracy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

DIVERSITY_METRIC = "within_prompt_diversity"
DIVERSITY_DEFINITION = (
    "per prompt, the mean Euclidean distance over every unordered pair of its samples' L2-normalised judge-CLIP "
    "image embeddings (range [0, 2]); the metric is the mean over the alignment set's in-distribution prompts, "
    "each contributing its first samples_per_prompt samples")
DIVERSITY_READING = (
    "near-identical samples of a prompt score near 0 (mode collapse); a distance in the judge's feature space, "
    "blind to what the judge does not encode, and not better when higher by itself (unrelated images and noise "
    "are far apart too): read it beside precision and attribute accuracy")


class DiversityError(ValueError):
    pass


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean L2 distance over the n(n-1)/2 unordered pairs of rows of `features` (n, d), rows L2-normalised
    first; at least two rows."""
    if features.ndim != 2 or len(features) < 2:
        raise DiversityError(f"within-prompt diversity needs at least 2 samples of shape (n, d), got "
                             f"{tuple(features.shape)}")
    unit = F.normalize(features.double(), dim=-1)
    distances = torch.pdist(unit)
    return float(distances.mean())


def within_prompt_diversity(features: torch.Tensor, groups: Sequence | np.ndarray) -> float:
    """Mean over groups (prompts; in order of first appearance) of `mean_pairwise_distance` of the rows of
    `features` whose entry of `groups` is that group."""
    groups = np.asarray(groups)
    if len(groups) != len(features):
        raise DiversityError(f"{len(groups)} group labels for {len(features)} feature rows")
    values = [mean_pairwise_distance(features[torch.from_numpy(groups == group)])
              for group in dict.fromkeys(groups.tolist())]
    if not values:
        raise DiversityError("within-prompt diversity of an empty set")
    return float(np.mean(values))


def diversity_units(samples: pd.DataFrame, embeddings: torch.Tensor, prompts: pd.DataFrame, k: int) -> list[dict]:
    """One unit per in-distribution prompt (a prompt table's `ood` is "1" for a held-out combination; a table
    without the column has none): its value over its first `k` samples (`sample_index` < k) as numerator,
    1 as denominator, k images as n. `samples` holds `prompt_id` and `sample_index` rows aligned with
    `embeddings`. No units when k < 2 (one sample has no pair)."""
    if len(samples) != len(embeddings):
        raise DiversityError(f"{len(samples)} samples but {len(embeddings)} embeddings")
    if k < 2:
        return []
    ood = (set(prompts.loc[prompts["ood"].astype(str) == "1", "prompt_id"].astype(str))
           if "ood" in prompts.columns else set())
    prompt_ids = samples["prompt_id"].astype(str).to_numpy()
    used = samples["sample_index"].astype(int).to_numpy() < k
    units = []
    for prompt_id in sorted(set(prompt_ids) - ood):
        rows = np.nonzero(used & (prompt_ids == prompt_id))[0]
        if len(rows) != k:
            raise DiversityError(f"prompt {prompt_id} has {len(rows)} of its first {k} samples")
        units.append({"metric": DIVERSITY_METRIC, "unit": prompt_id,
                      "numerator": mean_pairwise_distance(embeddings[torch.from_numpy(rows)]),
                      "denominator": 1.0, "n": k})
    return units


def diversity_entry(*, clip_label: str, clip_identity: str, samples: pd.DataFrame, k: int, n_prompts: int,
                    input_resolution: int | None = None) -> dict:
    """The protocol entry behind one seed's within_prompt_diversity row."""
    from clipvqd.evaluation.protocol import make_entry, sampling_description
    from clipvqd.hashing import sha256_of_hashes

    fields = dict(
        metrics=[DIVERSITY_METRIC],
        definition=DIVERSITY_DEFINITION,
        reading=DIVERSITY_READING,
        features={"clip": {"label": clip_label, "weights_sha256": clip_identity},
                  "embedding": "the judge CLIP's image embedding (its image tower's output), L2-normalised",
                  "preprocessing": (f"uint8 RGB, bicubic-antialiased resize to {input_resolution}x{input_resolution} "
                                    "when the size differs" if input_resolution else "uint8 RGB")},
        prompts={"in_distribution": n_prompts, "samples_per_prompt_used": k,
                 "held_out_combinations": "left out (the attribute accuracy on them is attr_acc_ood)"},
        sampling=sampling_description(samples.drop(columns=["clipscore"], errors="ignore")),
    )
    if "sha256" in samples.columns:
        fields["samples_content_sha256"] = sha256_of_hashes(samples["sha256"].astype(str))
    return make_entry("within_prompt_diversity", **fields)


__all__ = [
    "DIVERSITY_METRIC",
    "DiversityError",
    "diversity_entry",
    "diversity_units",
    "mean_pairwise_distance",
    "within_prompt_diversity",
]
