"""The two evaluation sets of every (method, variant, seed) branch (docs/design.md §6).

* The **alignment set**: the prompt table (test prompts, or the validation prompts of a tuning run) times
  `sampling.samples_per_prompt`, with the first `sampling.best_of_prompts` prompts drawn 16 times for
  best-of-16 CLIPscore. CLIPscore, attr_acc and attr_acc_ood are measured on it.
* The **distribution set**: one sample per reference image, prompted with that image's own caption: the COCO
  "FID-30k from val captions" protocol, transplanted to the worlds. FID, KID, precision/recall and CMMD are
  measured on it only, against exactly those reference images, so a method is compared with the images its
  prompts describe and not with a prompt mix the reference never shows.

`distribution_prompt_table` writes the distribution set's prompt table. It is a manifest of the reference
images it pairs with (`path`, `sha256`, relative to the same data folder), so the metrics job reads the
matched reference from it. FFHQ has no captions: its reference images are all prompted with one generic
caption (`generic_prompt`), which asks for a face and nothing in particular.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

ALIGNMENT_SET, VALIDATION_SET, DISTRIBUTION_SET = "alignment", "validation", "distribution"
EVALUATION_SETS = (ALIGNMENT_SET, VALIDATION_SET, DISTRIBUTION_SET)
DISTRIBUTION_COLUMNS = ("prompt_id", "prompt", "ood", "path", "sha256", "caption_source")
_SUBSET_STREAM = 0xD15  # the seeded subset when evaluation.distribution_samples is below the reference size


class EvaluationSetError(ValueError):
    pass


def distribution_prompt_table(reference_csv: str | Path, out_csv: str | Path, *, count: int | None = None,
                              generic_prompt: str | None = None, world_summary: str | Path | None = None,
                              seed: int = 0) -> pd.DataFrame:
    """Write the distribution set's prompts: one row per reference image (a seeded subset of `count` when
    given), prompted with its `caption` column, or with `generic_prompt` when the reference has no captions.

    With a world's `world.json` (`world_summary`), every row's attributes are checked against the world's
    held-out combinations: the reference split never renders one, so no held-out-combination prompt can
    enter this set (it is refused, naming the image, if one ever did).
    """
    reference = pd.read_csv(reference_csv, keep_default_na=False, dtype=str)
    for column in ("path", "sha256"):
        if column not in reference.columns:
            raise EvaluationSetError(f"reference manifest {reference_csv} has no '{column}' column")
    if len(reference) == 0:
        raise EvaluationSetError(f"reference manifest {reference_csv} lists no images")
    from clipvqd.manifest import ManifestError, read_manifest

    try:  # every listed path stays inside the reference's folder (the table lists them as they are, so it
        # goes beside the reference manifest; the metrics job hashes every image it reads from it)
        read_manifest(reference_csv, verify=False)
    except ManifestError as error:
        raise EvaluationSetError(str(error)) from None
    has_captions = "caption" in reference.columns
    if not has_captions and not generic_prompt:
        raise EvaluationSetError(f"{reference_csv} has no 'caption' column and no generic prompt was given "
                                 "(data.ffhq.distribution_prompt for captionless data sets)")
    if count is not None:
        if count < 1:
            raise EvaluationSetError(f"evaluation.distribution_samples must be at least 1, got {count}")
        if count > len(reference):
            raise EvaluationSetError(f"evaluation.distribution_samples is {count}, but the reference split has "
                                     f"only {len(reference)} images")
        if count < len(reference):
            rng = np.random.default_rng([seed, _SUBSET_STREAM])
            reference = reference.iloc[sorted(rng.choice(len(reference), size=count, replace=False).tolist())]
    if world_summary is not None:
        _check_no_heldout(reference, world_summary)
    prompts = (reference["caption"] if has_captions else pd.Series([generic_prompt] * len(reference)))
    prompts = [" ".join(str(text).split()) for text in prompts]
    empty = [path for path, text in zip(reference["path"], prompts) if not text]
    if empty:
        raise EvaluationSetError(f"{reference_csv}: reference image(s) {empty[:5]} have an empty caption")
    table = pd.DataFrame({
        "prompt_id": [f"d{index:06d}" for index in range(len(reference))],
        "prompt": prompts,
        "ood": 0,
        "path": reference["path"].to_numpy(),
        "sha256": reference["sha256"].to_numpy(),
        "caption_source": "reference caption" if has_captions else "generic prompt",
    })
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False)
    return table


def _check_no_heldout(reference: pd.DataFrame, world_summary: str | Path) -> None:
    from clipvqd.worlds.base import matches_any

    heldout: Sequence[Mapping[str, str]] = json.loads(Path(world_summary).read_text()).get("heldout", [])
    for row in reference.to_dict("records"):
        if matches_any(row, heldout):
            raise EvaluationSetError(f"reference image {row['path']} shows a held-out combination; its caption "
                                     "would put a held-out-combination prompt into the distribution set")


def check_distribution_prompts(table: pd.DataFrame, prompts_csv: str | Path) -> None:
    """The distribution set's prompts are exactly the reference captions of its table, one per image, and it
    holds no held-out-combination prompt."""
    missing = [c for c in DISTRIBUTION_COLUMNS[:5] if c not in table.columns]
    if missing:
        raise EvaluationSetError(f"distribution prompt table {prompts_csv} lacks column(s) {', '.join(missing)}")
    if (table["ood"].astype(str) != "0").any():
        raise EvaluationSetError(f"distribution prompt table {prompts_csv} holds held-out-combination prompts")
    if table["path"].duplicated().any():
        raise EvaluationSetError(f"distribution prompt table {prompts_csv} lists a reference image twice")


__all__ = [
    "ALIGNMENT_SET",
    "DISTRIBUTION_SET",
    "EVALUATION_SETS",
    "EvaluationSetError",
    "VALIDATION_SET",
    "check_distribution_prompts",
    "distribution_prompt_table",
]
