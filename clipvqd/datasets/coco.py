"""COCO 2014 for language-free training and caption-prompted evaluation.

Reads the official archives (`train2014.zip`, `val2014.zip`, `annotations_trainval2014.zip`, no
extraction needed) or an extracted copy (`train2014/`, `val2014/`, `annotations/captions_*2014.json`).

- train: train2014 images by default; `train_on="train+val"` adds val2014, as the paper's released
  code trained on both (the FID reference then overlaps the training set; the summary says so).
- reference (FID and the other distribution metrics): val2014 images, each with one seeded caption among
  its own (the distribution set prompts every method with it: COCO's FID-from-val-captions protocol).
- prompts: one caption per val2014 image, chosen with the seed.
- train_captions: one caption per training image, chosen with the seed (paired control only).
Optional counts take seeded subsets, in image-id order, for quick runs.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Mapping

import numpy as np

from clipvqd.datasets import images as image_ops
from clipvqd.datasets.parallel import parallel_map
from clipvqd.datasets.tables import prompt_rows, write_csv, write_json

SPLITS = ("train2014", "val2014")
TRAIN_ON = {"train": ("train2014",), "train+val": ("train2014", "val2014")}
# Fixed stream ids: a seeded choice never depends on which other choices a config makes.
_STREAM = {"reference": 1, "prompt_images": 2, "prompt_captions": 3, "train": 4, "train_captions": 5,
           "reference_captions": 6}


class CocoError(ValueError):
    pass


@dataclass(frozen=True)
class CocoSource:
    """Where the images and caption files are: three zips, or one extracted folder."""

    kind: str  # "zips" or "folder"
    train: str = ""
    val: str = ""
    annotations: str = ""
    root: str = ""

    @classmethod
    def from_zips(cls, train: str | Path, val: str | Path, annotations: str | Path) -> "CocoSource":
        for what, path in (("train2014 archive", train), ("val2014 archive", val), ("annotations archive", annotations)):
            if not Path(path).is_file():
                raise CocoError(f"COCO {what} not found: {path}")
        return cls("zips", train=str(train), val=str(val), annotations=str(annotations))

    @classmethod
    def from_folder(cls, root: str | Path) -> "CocoSource":
        root = Path(root)
        for sub in ("train2014", "val2014", "annotations"):
            if not (root / sub).is_dir():
                raise CocoError(f"data.coco.path {root} has no {sub}/ folder (expected train2014/, val2014/, "
                                "annotations/ as extracted from the official zips)")
        return cls("folder", root=str(root))

    def describe(self) -> dict:
        if self.kind == "zips":
            return {"kind": "zips", "train2014": self.train, "val2014": self.val, "annotations": self.annotations}
        return {"kind": "folder", "path": self.root}

    def captions(self, split: str) -> dict:
        name = f"captions_{split}.json"
        if self.kind == "folder":
            path = Path(self.root) / "annotations" / name
            if not path.is_file():
                raise CocoError(f"COCO caption file not found: {path}")
            return json.loads(path.read_text())
        with zipfile.ZipFile(self.annotations) as archive:
            members = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == name]
            if not members:
                raise CocoError(f"annotations archive {self.annotations} has no {name}")
            return json.loads(archive.read(members[0]))

    def available(self, split: str) -> set[str]:
        """File names of the images present for `split`."""
        if self.kind == "folder":
            return {p.name for p in (Path(self.root) / split).iterdir() if p.is_file()}
        with zipfile.ZipFile(self._zip(split)) as archive:
            return {m.rsplit("/", 1)[-1] for m in archive.namelist() if not m.endswith("/")}

    def _zip(self, split: str) -> str:
        return {"train2014": self.train, "val2014": self.val}[split]


_OPEN_ZIPS: dict[str, tuple[zipfile.ZipFile, dict[str, str]]] = {}


def _read(source: CocoSource, split: str, file_name: str) -> bytes:
    if source.kind == "folder":
        return (Path(source.root) / split / file_name).read_bytes()
    path = source._zip(split)
    if path not in _OPEN_ZIPS:
        # One handle per worker process, kept open: reopening a 13 GB zip per image rereads its directory.
        archive = zipfile.ZipFile(path)
        _OPEN_ZIPS[path] = (archive, {m.rsplit("/", 1)[-1]: m for m in archive.namelist() if not m.endswith("/")})
    archive, members = _OPEN_ZIPS[path]
    return archive.read(members[file_name])


def _prepare_image(task: tuple[str, str, str], source: CocoSource, resolution: int) -> str:
    split, file_name, out = task
    return image_ops.prepare_one(_read(source, split, file_name), f"{split}/{file_name}", resolution, out)


def _subset(items: list, count: int | None, seed: int, stream: int) -> list:
    if count is None or count >= len(items):
        return list(items)
    if count < 1:
        raise CocoError(f"a COCO subset count must be at least 1, got {count}")
    rng = np.random.default_rng([seed, stream])
    return [items[i] for i in sorted(rng.choice(len(items), size=count, replace=False).tolist())]


def _images_with_captions(source: CocoSource, split: str) -> list[dict]:
    """Images of `split` sorted by id, each with its captions (in annotation-id order); checks presence."""
    data = source.captions(split)
    by_image: dict[int, list[tuple[int, str]]] = {}
    for annotation in data.get("annotations", []):
        by_image.setdefault(annotation["image_id"], []).append((annotation["id"], annotation["caption"]))
    images = sorted(data.get("images", []), key=lambda image: image["id"])
    if not images:
        raise CocoError(f"captions_{split}.json lists no images")
    present = source.available(split)
    missing = [image["file_name"] for image in images if image["file_name"] not in present]
    if missing:
        raise CocoError(f"{len(missing)} of {len(images)} {split} images listed in captions_{split}.json are missing "
                        f"from {source.describe()}: {missing[:5]}")
    without = [image["file_name"] for image in images if not by_image.get(image["id"])]
    if without:
        raise CocoError(f"{len(without)} {split} images have no caption in captions_{split}.json: {without[:5]}")
    return [{"split": split, "image_id": image["id"], "file_name": image["file_name"],
             "captions": [text for _, text in sorted(by_image[image["id"]])]} for image in images]


def _choose_captions(images: list[dict], seed: int, stream: int) -> list[str]:
    rng = np.random.default_rng([seed, stream])
    return [image["captions"][int(rng.integers(len(image["captions"])))] for image in images]


def prepare_coco(source: CocoSource, out_dir: str | Path, *, resolution: int, train_on: str = "train", seed: int = 0,
                 train_count: int | None = None, reference_count: int | None = None,
                 prompt_count: int | None = None, workers: int = 1, progress: bool = True,
                 inputs: Mapping[str, str] | None = None) -> dict:
    """Write train/reference PNGs and train.csv, train_captions.csv, reference.csv, prompts.csv,
    dataset.json under `out_dir`; return the summary."""
    if train_on not in TRAIN_ON:
        raise CocoError(f"data.coco.train_on is '{train_on}', expected one of {sorted(TRAIN_ON)}")
    out_dir = Path(out_dir)
    listed = {split: _images_with_captions(source, split) for split in SPLITS}
    val = listed["val2014"]
    reference = _subset(val, reference_count, seed, _STREAM["reference"])
    prompt_images = _subset(val, prompt_count, seed, _STREAM["prompt_images"])
    train = _subset([image for split in TRAIN_ON[train_on] for image in listed[split]], train_count, seed,
                    _STREAM["train"])

    def location(image: dict) -> str:
        return f"{image['split']}/{Path(image['file_name']).stem}.png"

    needed = {(image["split"], image["file_name"]): image for image in train + reference}
    tasks = [(split, name, str(out_dir / location(image))) for (split, name), image in needed.items()]
    hashes = parallel_map(partial(_prepare_image, source=source, resolution=resolution), tasks, workers,
                          desc="COCO images", progress=progress)
    sha = {(split, name): digest for (split, name, _), digest in zip(tasks, hashes)}

    def manifest_row(image: dict) -> dict:
        return {"path": location(image), "sha256": sha[(image["split"], image["file_name"])],
                "image_id": image["image_id"], "source_split": image["split"]}

    write_csv(out_dir / "train.csv", [manifest_row(i) for i in train], ["path", "sha256", "image_id", "source_split"])
    train_captions = _choose_captions(train, seed, _STREAM["train_captions"])
    write_csv(out_dir / "train_captions.csv",
              [{"path": location(i), "caption": " ".join(c.split())} for i, c in zip(train, train_captions)],
              ["path", "caption"])
    reference_captions = _choose_captions(reference, seed, _STREAM["reference_captions"])
    write_csv(out_dir / "reference.csv",
              [dict(manifest_row(i), caption=" ".join(c.split())) for i, c in zip(reference, reference_captions)],
              ["path", "sha256", "image_id", "source_split", "caption"])
    prompts = _choose_captions(prompt_images, seed, _STREAM["prompt_captions"])
    write_csv(out_dir / "prompts.csv",
              prompt_rows(prompts, [{"image_id": i["image_id"], "source_split": i["split"]} for i in prompt_images]),
              ["prompt_id", "prompt", "ood", "image_id", "source_split"])
    summary = {
        "dataset": "coco2014",
        "source": source.describe(),
        "inputs_sha256": dict(inputs or {}),
        "train_on": train_on,
        "train_splits": list(TRAIN_ON[train_on]),
        "reference_overlaps_training": "val2014" in TRAIN_ON[train_on],
        "resolution": resolution,
        "transform": image_ops.DESCRIPTION,
        "seed": seed,
        "images_listed": {split: len(images) for split, images in listed.items()},
        "sizes": {"train": len(train), "reference": len(reference), "prompts": len(prompt_images)},
        "prompts": "one caption per val2014 image (seeded choice among its captions)",
        "reference": "val2014 images, each with one seeded caption of its own (the distribution set's prompt)",
        "subsets": {"train_count": train_count, "reference_count": reference_count, "prompt_count": prompt_count},
    }
    write_json(out_dir / "dataset.json", summary)
    return summary
