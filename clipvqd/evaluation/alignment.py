"""The alignment metrics of one sample set as per-prompt units (docs/design.md §6).

Every prompt of the set contributes its first `k` samples, `k` being the fewest samples any prompt has
(`sampling.samples_per_prompt`; the first `sampling.best_of_prompts` prompts have 16 for best-of-16,
whose extra samples serve only that metric). Every prompt then weighs the same, and a metric is
sum(numerator) / sum(denominator) over its prompts (`uncertainty.UNITS_COLUMNS`):

* clipscore_mean, clipscore_judge_mean: per prompt the sum of its k scores over k, every prompt;
* clipscore_best16: per prompt with at least 16 samples, the best of its first 16, over 1;
* attr_acc (in-distribution prompts), attr_acc_ood (held-out-combination prompts): per prompt the number
  of (image, requested attribute) pairs the oracle confirms over the number of pairs;
* attr_acc/<attribute>: per prompt that requests the attribute, the images showing it over k.

`n` is what the table's `n` counts: images (prompts, for best-of-16).
"""

from __future__ import annotations

import pandas as pd

BEST_OF = 16  # the paper's FFHQ protocol; the table names only clipscore_best16


def balanced_samples(frame: pd.DataFrame) -> int:
    """The number of samples every prompt of the set has (the fewest any prompt has)."""
    if frame.empty:
        raise ValueError("the sample set is empty")
    return int(frame.groupby("prompt_id").size().min())


def _first(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    return frame[frame["sample_index"].astype(int) < k]


def clipscore_units(scores: pd.DataFrame, metric: str, k: int) -> list[dict]:
    """Per prompt: the sum of its first k CLIPscores over k."""
    used = _first(scores, k)
    return [{"metric": metric, "unit": str(prompt_id), "numerator": float(group["clipscore"].sum()),
             "denominator": float(len(group)), "n": len(group)}
            for prompt_id, group in used.groupby("prompt_id", sort=True)]


def best_of_units(scores: pd.DataFrame) -> tuple[list[dict], pd.DataFrame | None]:
    """clipscore_best16 per prompt with at least 16 samples, and the candidates (every sample of those prompts
    that took part, with rank and `chosen`); ([], None) when no prompt has 16 samples."""
    from clipvqd.evaluation.clipscore import select_best_of_n

    counts = scores.groupby("prompt_id").size()
    eligible = counts[counts >= BEST_OF].index
    if len(eligible) == 0:
        return [], None
    selection = select_best_of_n(scores[scores["prompt_id"].isin(eligible)], BEST_OF)
    units = [{"metric": "clipscore_best16", "unit": str(row["prompt_id"]), "numerator": float(row["clipscore"]),
              "denominator": 1.0, "n": 1} for row in selection.chosen.to_dict("records")]
    return units, selection.candidates


def attribute_units(checks: pd.DataFrame, prompts: pd.DataFrame, k: int) -> list[dict]:
    """attr_acc, attr_acc_ood and attr_acc/<attribute> per prompt, from the oracle's checks."""
    used = _first(checks, k)
    ood = prompts.set_index("prompt_id")["ood"].astype(str)
    units = []
    for prompt_id, group in used.groupby("prompt_id", sort=True):
        images = group["sample_index"].nunique()
        metric = "attr_acc_ood" if ood.get(prompt_id) == "1" else "attr_acc"
        units.append({"metric": metric, "unit": str(prompt_id), "numerator": float(group["correct"].sum()),
                      "denominator": float(len(group)), "n": images})
        for attribute, part in group.groupby("attribute", sort=True):
            units.append({"metric": f"attr_acc/{attribute}", "unit": str(prompt_id),
                          "numerator": float(part["correct"].sum()), "denominator": float(len(part)), "n": len(part)})
    return units


def values_from_units(units: pd.DataFrame) -> dict[str, tuple[float, int]]:
    """{metric: (value, n)} of one seed's units."""
    values = {}
    for metric, group in units.groupby("metric", sort=False):
        values[metric] = (float(group["numerator"].sum() / group["denominator"].sum()), int(group["n"].sum()))
    return values
