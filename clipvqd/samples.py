"""The interface every generator shares: prompts in, PNGs + a manifest out (docs/design.md §3).

A sample set is a folder of PNGs and `manifest.csv` with one row per image: `path` (relative to the
manifest), `sha256`, `prompt_id`, `prompt`, `sample_index`, `seed`, `method`, `variant`, and the
settings the method used (`alpha`, `s`, `r`, `steps`, `purity`, ... where they apply). Metrics only ever
read this, so they cannot tell which method made the images.

A sample set is only comparable with another if both hold exactly their plan: every prompt of the table
times `samples_per_prompt`, each (prompt, sample index) once, drawn from the same seed. `SamplePlan`
states a plan and checks a manifest against it; `check_same_plan` checks that several sets (the methods
a table or report compares) share one plan. A missing, extra or repeated row is an error naming the
manifest and the rows, so a deleted row can never quietly change a number.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipvqd.hashing import sha256_file

SAMPLE_COLUMNS = ("path", "sha256", "prompt_id", "prompt", "sample_index", "seed", "method", "variant")
# What identifies a planned image: which prompt (id and the text CLIP read), which sample of it, which seed.
PLAN_COLUMNS = ("prompt_id", "prompt", "sample_index", "seed")
_SHOWN_ROWS = 5  # rows listed in a plan mismatch message; the rest are counted


class SampleSetError(ValueError):
    """A sample set that does not hold its plan (missing, extra or repeated rows), or sets that differ."""


def read_prompts(prompts_csv: str | Path) -> pd.DataFrame:
    """The prompt table (`prompt_id`, `prompt`, ...), every cell as text, blank cells kept blank; an empty
    prompt or prompt id is refused, naming the file and the rows (CLIP would embed the empty string)."""
    frame = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str)
    for column in ("prompt_id", "prompt"):
        if column not in frame.columns:
            raise ValueError(f"prompt table {prompts_csv} has no '{column}' column")
        blank = [int(i) + 2 for i in frame.index[frame[column].str.strip() == ""]]  # + header, 1-based
        if blank:
            raise ValueError(f"prompt table {prompts_csv} has an empty {column} on line(s) {blank[:_SHOWN_ROWS]}"
                             + (f" and {len(blank) - _SHOWN_ROWS} more" if len(blank) > _SHOWN_ROWS else ""))
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


# --------------------------------------------------------------------------------------------------
# Checking a sample set against its plan
# --------------------------------------------------------------------------------------------------


def plan_rows(frame: pd.DataFrame, source: str | Path) -> list[tuple[str, str, int, int]]:
    """The (prompt_id, prompt, sample_index, seed) of every row of a sample manifest, in its order."""
    missing = [column for column in PLAN_COLUMNS if column not in frame.columns]
    if missing:
        raise SampleSetError(f"sample manifest {source} lacks column(s) {', '.join(missing)}")
    rows = []
    for line, (pid, prompt, index, seed) in enumerate(frame[list(PLAN_COLUMNS)].itertuples(index=False), start=2):
        try:
            rows.append((str(pid), str(prompt), int(index), int(seed)))
        except (TypeError, ValueError):
            raise SampleSetError(f"sample manifest {source}, line {line}: sample_index {index!r} and seed {seed!r} "
                                 "must be integers") from None
    return rows


def _describe(rows: Iterable[tuple[str, str, int, int]]) -> str:
    rows = sorted(rows, key=lambda row: (row[0], row[2], row[3], row[1]))
    shown = "; ".join(f"(prompt_id {pid}, sample_index {index}, seed {seed}, prompt {prompt!r})"
                      for pid, prompt, index, seed in rows[:_SHOWN_ROWS])
    return shown + (f"; and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else "")


def compare_rows(found: Sequence[tuple], expected: Sequence[tuple], source: str | Path, against: str) -> None:
    """Raise SampleSetError naming `source` and every missing, extra and repeated row, unless `found`
    holds exactly the rows of `expected` (in any order)."""
    found_counts, expected_counts = Counter(found), Counter(expected)
    if found_counts == expected_counts:
        return
    missing = list((expected_counts - found_counts).elements())
    extra = list((found_counts - expected_counts).elements())
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing row(s): {_describe(missing)}")
    if extra:
        problems.append(f"{len(extra)} extra or repeated row(s): {_describe(extra)}")
    raise SampleSetError(f"sample manifest {source} holds {len(found)} row(s), but {against} has {len(expected)}; "
                         + "; ".join(problems))


@dataclass(frozen=True)
class SamplePlan:
    """What a sample set must hold: every prompt of `prompts_csv` (with `prompt_prefix` before its text, as
    CLIP read it) times `samples_per_prompt`, the first `best_of_prompts` prompts `best_of` times instead
    (best-of-16 CLIPscore), image i of a prompt drawn from `seed`. The sample rule's plan (`sample_plan`)
    is this with the set's sampling seed: an alignment set is the prompt table's plan, a distribution set
    the plan of its distribution prompt table with one sample per row (its reference image's caption),
    and every training seed's set holds the same plan drawn from that seed's sampling seed."""

    prompts_csv: Path
    samples_per_prompt: int
    seed: int
    prompt_prefix: str = ""
    best_of_prompts: int = 0
    best_of: int = 16

    def __post_init__(self) -> None:
        if int(self.samples_per_prompt) < 1:
            raise ValueError(f"samples_per_prompt must be >= 1, got {self.samples_per_prompt}")
        if int(self.best_of_prompts) < 0:
            raise ValueError(f"best_of_prompts must be >= 0, got {self.best_of_prompts}")

    def rows(self) -> list[tuple[str, str, int, int]]:
        prompts = read_prompts(self.prompts_csv)
        prompts["prompt"] = self.prompt_prefix + prompts["prompt"]
        plan = sample_plan(prompts, int(self.samples_per_prompt), int(self.best_of_prompts), int(self.best_of))
        return [(str(row.prompt_id), str(row.prompt), int(row.sample_index), int(self.seed))
                for row in plan.itertuples(index=False)]

    def describe(self) -> str:
        more = (f", {max(self.samples_per_prompt, self.best_of)} of the first {self.best_of_prompts}"
                if self.best_of_prompts else "")
        return (f"the plan ({self.samples_per_prompt} sample(s) of every prompt of {self.prompts_csv}{more}, "
                f"seed {self.seed})")

    def check(self, frame: pd.DataFrame, source: str | Path) -> None:
        """Refuse a sample manifest (`frame`, read from `source`) that does not hold exactly this plan."""
        compare_rows(plan_rows(frame, source), self.rows(), source, self.describe())


def check_same_plan(sets: Mapping[str, tuple[str | Path, pd.DataFrame]]) -> None:
    """Refuse sample sets, {label: (manifest path, frame)}, that do not all hold the same (prompt_id,
    prompt, sample_index, seed) rows as the first: methods compared side by side must have drawn the
    same images of the same prompts from the same seeds."""
    items = list(sets.items())
    if len(items) < 2:
        return
    first_label, (first_source, first_frame) = items[0]
    expected = plan_rows(first_frame, first_source)
    for label, (source, frame) in items[1:]:
        compare_rows(plan_rows(frame, source), expected, f"{source} ({label})",
                     f"{first_source} ({first_label}), which it is compared with,")


__all__: Sequence[str] = ("PLAN_COLUMNS", "SAMPLE_COLUMNS", "SamplePlan", "SampleSetError", "check_same_plan",
                          "compare_rows", "plan_rows", "prompt_rows", "read_prompts", "sample_plan",
                          "write_sample_set")
