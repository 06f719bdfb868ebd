"""Render a world's splits to PNG files with sha256 manifests.

Splits (all drawn from one seed, each from its own random stream, so they are disjoint):
- `clip_pairs`: captioned images (the conditioner wording); they train the conditioner stand-in CLIP and
  nothing else (the role of CLIP's web pretraining). The last `clip_holdout_fraction` of the first
  `sizes.clip_pairs` are never trained on and measure both CLIPs' zero-shot quality; `sizes.clip_pairs_extra`
  more pairs, drawn after them from the same stream, train the conditioner too (the held-out fold stays put).
- `judge_pairs`: captioned images for the judge stand-in CLIP only, in the judge wording (the prompts'
  wording plus paraphrases the conditioner never sees): its own images and its own vocabulary, so the
  judge is independent of the conditioner. Not rendered when its size is 0. Both pair splits give each
  caption a hard negative (`negative_caption`: the same caption with one named attribute changed, a
  two-valued one whenever it names one) and list every named attribute's (`negative_captions`, a JSON
  object attribute -> caption), colours included, for a CLIP trained with `text_negatives: every`.
- `train`: the image-only training set of every generator. Its captions go to a separate file read
  only by the paired-caption control, so language-free methods cannot see them.
- `reference`: reference images from the training distribution (FID and the other distribution metrics),
  each with a caption from the split's own caption stream: the distribution set prompts every method with
  them, one sample per reference image (docs/design.md §6). Like `train`, it never shows a held-out
  combination, so no held-out-combination prompt can enter the distribution set.
- `oracle`: renders with their true attributes, for the attribute oracle, covering every combination
  (held-out ones included: the oracle is a measuring instrument, not a generator).
- `prompts`: the test prompts (the alignment set's), naming a few attributes each, plus out-of-distribution
  prompts built on the held-out combinations that no training image shows.
- `validation_prompts`: prompts of the same distribution from another stream, none repeating a test prompt's
  text: tuning runs (`evaluation.prompts: validation`) are measured on them, never on the test prompts.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from clipvqd.hashing import sha256_bytes
from clipvqd.worlds import get_world
from clipvqd.worlds.base import World, matches_any

IMAGE_SPLITS = ("clip_pairs", "train", "reference", "oracle")
# The CLIPs' captions name 1 to all attributes, like web alt-text from a phrase to a full description; the
# train split's captions (the paired control's) keep the world's dataset style (3 or more for faces). Without
# one-attribute captions a CLIP trained as briefly as the stand-ins barely tells "no hat" from "a hat"
# (zero-shot 0.72 against 0.95 with them, measured on the faces world).
CLIP_CAPTION_MIN_ATTRIBUTES = 1
OPTIONAL_SPLITS = ("judge_pairs",)
# Fixed stream ids: adding a split later never changes the images of the existing ones.
_STREAM = {"clip_pairs": 1, "train": 2, "reference": 3, "oracle": 4, "prompts": 5, "captions": 6, "judge_pairs": 7,
           "negatives": 8, "validation_prompts": 9}


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _sample_allowed(world: World, rng: np.random.Generator, heldout: Sequence[Mapping[str, str]]) -> dict[str, str]:
    while True:
        attributes = world.sample_attributes(rng)
        if not matches_any(attributes, heldout):
            return attributes


def _render_split(world: World, split: str, count: int, out_dir: Path, seed: int, resolution: int,
                  heldout: Sequence[Mapping[str, str]], wording: str | None, progress: bool) -> list[dict]:
    """Render `count` images of `split`; captions in `wording` (None: no captions). A pair split's rows carry
    each caption's hard negative and every named attribute's (`negative_captions`)."""
    if count == 0:
        return []
    rng = np.random.default_rng([seed, _STREAM[split]])
    caption_rng = np.random.default_rng([seed, _STREAM["captions"], _STREAM[split]])
    negative_rng = np.random.default_rng([seed, _STREAM["negatives"], _STREAM[split]])
    pairs = split in ("clip_pairs", "judge_pairs")
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    rows = []
    for index in tqdm(range(count), desc=f"{world.name}/{split}", disable=not progress):
        attributes = world.sample_attributes(rng) if split == "oracle" else _sample_allowed(world, rng, heldout)
        data = _png_bytes(world.render(attributes, rng, resolution))
        relative = f"{split}/{index:06d}.png"
        (out_dir / relative).write_bytes(data)
        row = {"path": relative, "sha256": sha256_bytes(data), **attributes}
        if split != "oracle" and matches_any(attributes, heldout):  # the generators' and FID's splits never do
            raise AssertionError(f"{split} image {index} shows a held-out combination: {attributes}")
        if wording:
            if pairs:  # a CLIP's pairs: the caption's hard negative (empty when it names nothing), one per attribute
                caption, negative, every = world.caption_with_negatives(attributes, caption_rng, negative_rng,
                                                                        wording, CLIP_CAPTION_MIN_ATTRIBUTES)
                row["caption"], row["negative_caption"] = caption, negative or ""
                row["negative_captions"] = json.dumps(every)
            else:
                row["caption"] = world.caption(attributes, caption_rng, wording)
            row["wording"] = wording
        rows.append(row)
    return rows


def make_prompts(world: World, seed: int, count: int, attributes_per_prompt: int,
                 heldout: Sequence[Mapping[str, str]], ood_per_combination: int, *, stream: str = "prompts",
                 exclude: Sequence[str] = (), id_prefix: str = "p") -> list[dict]:
    """In-distribution prompts (never a held-out combination) and OOD prompts (each contains one), in that
    order; each names the world's `prompt_anchors` and other attributes drawn at random, `attributes_per_prompt`
    in all (an OOD prompt: more when its combination and the anchors are more). `stream` names the random stream (the test prompts: "prompts"; the validation prompts:
    "validation_prompts"); texts in `exclude` are skipped, so a validation table never repeats a test prompt."""
    rng = np.random.default_rng([seed, _STREAM[stream]])
    names = world.attribute_names
    k = min(attributes_per_prompt, len(names))
    anchors = list(world.prompt_anchors)
    if k < len(anchors):
        raise ValueError(f"data.world.prompts.attributes_per_prompt is {attributes_per_prompt}, but every prompt of "
                         f"world '{world.name}' names {anchors}: at least {len(anchors)}")
    free = [n for n in names if n not in anchors]
    seen: set[str] = set(exclude)
    prompts: list[dict] = []

    def add(specified: dict[str, str], ood: bool) -> None:
        text = world.prompt(specified)
        if text not in seen:
            seen.add(text)
            prompts.append({"prompt": text, "ood": ood, "specified": specified})

    attempts = 0
    while sum(not p["ood"] for p in prompts) < count:
        attempts += 1
        if attempts > 100 * count:
            raise ValueError(f"cannot find {count} distinct prompts with {k} attributes in world '{world.name}'")
        full = world.sample_attributes(rng)
        keys = sorted([*anchors, *rng.choice(free, size=k - len(anchors), replace=False).tolist()], key=names.index)
        specified = {key: full[key] for key in keys}
        if not matches_any(specified, heldout):
            add(specified, ood=False)
    for combination in heldout:
        made = 0
        attempts = 0
        while made < ood_per_combination and attempts < 100 * ood_per_combination:
            attempts += 1
            full = {**world.sample_attributes(rng), **combination}
            fixed = set(combination) | set(anchors)
            others = [n for n in names if n not in fixed]
            extra = max(0, k - len(fixed))
            keys = fixed | set(rng.choice(others, size=min(extra, len(others)), replace=False).tolist())
            before = len(prompts)
            add({key: full[key] for key in names if key in keys}, ood=True)
            made += len(prompts) > before
    rows = []
    for index, prompt in enumerate(prompts):
        row = {"prompt_id": f"{id_prefix}{index:04d}", "prompt": prompt["prompt"], "ood": int(prompt["ood"])}
        row.update({name: prompt["specified"].get(name, "") for name in names})
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def generate_world(world_name: str, out_dir: str | Path, *, seed: int, resolution: int,
                   sizes: Mapping[str, int], heldout: Sequence[Mapping[str, str]], prompt_count: int,
                   attributes_per_prompt: int, ood_prompts_per_combination: int,
                   oracle_test_fraction: float, clip_holdout_fraction: float, judge_wording: str = "judge",
                   progress: bool = True) -> dict:
    """Write every split of `world_name` under `out_dir`; return a summary (also written to world.json).

    `sizes.judge_pairs` (0 when absent) captioned pairs in `judge_wording` train the judge stand-in CLIP;
    `sizes.clip_pairs_extra` (0 when absent) conditioner pairs follow the held-out fold of clip_pairs."""
    world = get_world(world_name)
    world.check_wording(judge_wording)
    for number, combination in enumerate(heldout):
        world.validate_combination(combination, f"world.heldout[{number}]")
    for split in IMAGE_SPLITS:
        if sizes.get(split, 0) < 1:
            raise ValueError(f"world.sizes.{split} must be at least 1, got {sizes.get(split)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    attribute_columns = world.attribute_names

    # Both pair splits list every named attribute's negative beside the chosen one; it is drawn from the
    # caption streams' saved states, so captions, chosen negatives and images are what they were without it.
    pair_columns = ["path", "sha256", *attribute_columns, "caption", "negative_caption", "negative_captions",
                    "wording", "fold"]
    # The extra pairs continue the clip_pairs stream past the held-out fold (the last clip_holdout_fraction of
    # the first sizes.clip_pairs): the conditioner gets more pairs, the fold both CLIPs are measured on is the
    # same images and captions, and the rows before it are unchanged.
    extra = sizes.get("clip_pairs_extra", 0)
    if extra < 0:
        raise ValueError(f"world.sizes.clip_pairs_extra must be at least 0, got {extra}")
    clip_rows = _render_split(world, "clip_pairs", sizes["clip_pairs"] + extra, out_dir, seed, resolution, heldout,
                              "conditioner", progress)
    holdout_start = sizes["clip_pairs"] - int(round(clip_holdout_fraction * sizes["clip_pairs"]))
    for index, row in enumerate(clip_rows):
        row["fold"] = "test" if holdout_start <= index < sizes["clip_pairs"] else "train"
    _write_csv(out_dir / "clip_pairs.csv", clip_rows, pair_columns)

    judge_rows = _render_split(world, "judge_pairs", sizes.get("judge_pairs", 0), out_dir, seed, resolution, heldout,
                               judge_wording, progress)
    for row in judge_rows:
        row["fold"] = "train"  # the judge is measured on the held-out clip_pairs, like the conditioner
    if judge_rows:
        _write_csv(out_dir / "judge_pairs.csv", judge_rows, pair_columns)

    train_rows = _render_split(world, "train", sizes["train"], out_dir, seed, resolution, heldout, "conditioner",
                               progress)
    for row in train_rows:
        row.pop("wording")
    _write_csv(out_dir / "train_captions.csv", [{"path": r["path"], "caption": r.pop("caption")} for r in train_rows],
               ["path", "caption"])
    _write_csv(out_dir / "train.csv", train_rows, ["path", "sha256", *attribute_columns])

    reference_rows = _render_split(world, "reference", sizes["reference"], out_dir, seed, resolution, heldout,
                                   "conditioner", progress)
    for row in reference_rows:
        row.pop("wording")
    _write_csv(out_dir / "reference.csv", reference_rows, ["path", "sha256", *attribute_columns, "caption"])

    oracle_rows = _render_split(world, "oracle", sizes["oracle"], out_dir, seed, resolution, heldout, None, progress)
    test_start = len(oracle_rows) - int(round(oracle_test_fraction * len(oracle_rows)))
    for index, row in enumerate(oracle_rows):
        row["fold"] = "train" if index < test_start else "test"
    _write_csv(out_dir / "oracle.csv", oracle_rows, ["path", "sha256", *attribute_columns, "fold"])

    prompt_rows = make_prompts(world, seed, prompt_count, attributes_per_prompt, heldout, ood_prompts_per_combination)
    _write_csv(out_dir / "prompts.csv", prompt_rows, ["prompt_id", "prompt", "ood", *attribute_columns])
    validation_rows = make_prompts(world, seed, prompt_count, attributes_per_prompt, heldout,
                                   ood_prompts_per_combination, stream="validation_prompts",
                                   exclude=[row["prompt"] for row in prompt_rows], id_prefix="v")
    _write_csv(out_dir / "validation_prompts.csv", validation_rows, ["prompt_id", "prompt", "ood", *attribute_columns])

    summary = {
        "world": world.name,
        "seed": seed,
        "resolution": resolution,
        "attributes": {a.name: list(a.values) for a in world.attributes},
        "heldout": [dict(c) for c in heldout],
        "sizes": {split: sizes.get(split, 0) for split in (*IMAGE_SPLITS, *OPTIONAL_SPLITS)}
        | ({"clip_pairs_extra": extra} if extra else {}),  # absent when 0: such worlds' world.json is as before
        # Which captioned images (and which wording) train and measure each stand-in CLIP role.
        "clip_pairs": {
            "conditioner": {"split": "clip_pairs", "fold": "train", "pairs": holdout_start + extra,
                            "wording": "conditioner"},
            "judge": {"split": "judge_pairs", "fold": "train", "pairs": len(judge_rows), "wording": judge_wording},
            "held_out": {"split": "clip_pairs", "fold": "test", "pairs": sizes["clip_pairs"] - holdout_start},
        },
        "caption_wordings": world.wording_tables(),
        "prompts": {"in_distribution": sum(1 for r in prompt_rows if not r["ood"]),
                    "out_of_distribution": sum(1 for r in prompt_rows if r["ood"])},
        "validation_prompts": {"in_distribution": sum(1 for r in validation_rows if not r["ood"]),
                               "out_of_distribution": sum(1 for r in validation_rows if r["ood"])},
    }
    (out_dir / "world.json").write_text(json.dumps(summary, indent=2))
    return summary
