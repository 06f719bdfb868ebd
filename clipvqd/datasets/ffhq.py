"""FFHQ from a local copy: validated (count, readability, sizes), hashed, then resized.

Most cluster users already have FFHQ (e.g. NVlabs' `images1024x1024/` with 70 folders of 1000 PNGs),
so the workflow validates that copy instead of downloading it again. Validation writes a source
manifest (absolute path, sha256, width, height per file); preparation reads the files through it,
checking each file's hash as it reads it, and writes the resized training PNGs.

FFHQ has no held-out split and no captions: FID is conventionally measured against the training
images (the reference is a seeded subset of them, or all), and the prompts are a text file, by default
the 64 clip2latent prompts shipped in `clipvqd/data/`.
"""

from __future__ import annotations

import csv
import os
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from clipvqd.datasets import images as image_ops
from clipvqd.datasets.parallel import parallel_map
from clipvqd.datasets.tables import prompt_rows, write_csv, write_json
from clipvqd.hashing import sha256_bytes, sha256_file

_STREAM = {"train": 1, "reference": 2}


class FfhqError(ValueError):
    pass


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FfhqError(f"data.ffhq.path: folder {root} does not exist")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".png" and p.is_file())


def _inspect(path: Path) -> dict:
    """sha256 and size of one file, or the reason it cannot be used."""
    try:
        with Image.open(path) as image:
            image.verify()  # checks the PNG structure without decoding every pixel
        with Image.open(path) as image:
            width, height = image.size
    except Exception as error:  # PIL raises several unrelated types for damaged files
        return {"path": str(path), "error": f"unreadable ({error})"}
    return {"path": str(path), "sha256": sha256_file(path), "width": width, "height": height}


def validate_ffhq(root: str | Path, manifest: str | Path, *, expected_count: int | None, min_side: int,
                  image_size: int | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Check the copy at `root` and write its source manifest; raise naming every kind of problem found."""
    root = Path(root).resolve()
    files = list_images(root)
    if expected_count is not None and len(files) != expected_count:
        raise FfhqError(f"data.ffhq.path {root} holds {len(files)} PNG files, but data.ffhq.expected_count is "
                        f"{expected_count} (the full data set has 70000; set expected_count to what your copy "
                        "should hold, or null to accept any number)")
    if not files:
        raise FfhqError(f"data.ffhq.path {root} holds no PNG files")
    rows = parallel_map(_inspect, files, workers, desc="validate FFHQ", progress=progress)
    problems = [f"{row['path']}: {row['error']}" for row in rows if "error" in row]
    for row in rows:
        if "error" in row:
            continue
        width, height = row["width"], row["height"]
        if width != height:
            problems.append(f"{row['path']}: {width}x{height} is not square")
        elif image_size is not None and width != image_size:
            problems.append(f"{row['path']}: {width}x{height}, data.ffhq.image_size is {image_size}")
        elif width < min_side:
            problems.append(f"{row['path']}: {width}x{height} is smaller than data.ffhq.resolution {min_side}")
    if problems:
        shown = "\n  ".join(problems[:10])
        raise FfhqError(f"{len(problems)} of {len(files)} files in data.ffhq.path {root} cannot be used:\n  {shown}"
                        + ("\n  ..." if len(problems) > 10 else ""))
    write_csv(manifest, rows, ["path", "sha256", "width", "height"])
    return {"path": str(root), "count": len(rows),
            "sizes": sorted({row["width"] for row in rows})}


def _prepare_image(task: tuple[str, str, str], resolution: int) -> str:
    source, expected, out = task
    data = Path(source).read_bytes()
    actual = sha256_bytes(data)
    if actual != expected:
        raise FfhqError(f"FFHQ file {source} has sha256 {actual}, but the validated manifest records {expected}: "
                        "the copy changed after validation; rerun the ffhq_validate rule")
    return image_ops.prepare_one(data, source, resolution, out)


def _subset(count: int | None, total: int, seed: int, stream: int) -> list[int]:
    if count is None or count >= total:
        return list(range(total))
    if count < 1:
        raise FfhqError(f"an FFHQ subset count must be at least 1, got {count}")
    rng = np.random.default_rng([seed, stream])
    return sorted(rng.choice(total, size=count, replace=False).tolist())


def read_prompts_file(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FfhqError(f"data.ffhq.prompts_file: {path} does not exist")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise FfhqError(f"data.ffhq.prompts_file {path} holds no prompts")
    return prompts


def prepare_ffhq(source_manifest: str | Path, out_dir: str | Path, *, resolution: int, prompts_file: str | Path,
                 seed: int = 0, train_count: int | None = None, reference_count: int | None = None,
                 workers: int = 1, progress: bool = True) -> dict:
    """Write ffhq/ PNGs at `resolution`, train.csv, reference.csv, prompts.csv and dataset.json."""
    out_dir = Path(out_dir)
    with open(source_manifest, newline="") as handle:
        sources = list(csv.DictReader(handle))
    if not sources:
        raise FfhqError(f"FFHQ source manifest {source_manifest} lists no files")
    # Keep the copy's folder layout (NVlabs: 00000/00000.png ...) below ffhq/, so names never collide.
    common = Path(os.path.commonpath([row["path"] for row in sources]))
    if len(sources) == 1:
        common = common.parent
    chosen = _subset(train_count, len(sources), seed, _STREAM["train"])
    tasks = []
    for index in chosen:
        row = sources[index]
        relative = Path(row["path"]).relative_to(common).with_suffix(".png")
        tasks.append((row["path"], row["sha256"], str(out_dir / "ffhq" / relative)))
    hashes = parallel_map(partial(_prepare_image, resolution=resolution), tasks, workers, desc="FFHQ images",
                          progress=progress)
    rows = [{"path": str(Path(out).relative_to(out_dir)), "sha256": digest, "source": source}
            for (source, _, out), digest in zip(tasks, hashes)]
    write_csv(out_dir / "train.csv", rows, ["path", "sha256", "source"])
    reference = [rows[i] for i in _subset(reference_count, len(rows), seed, _STREAM["reference"])]
    write_csv(out_dir / "reference.csv", reference, ["path", "sha256", "source"])
    prompts = read_prompts_file(prompts_file)
    write_csv(out_dir / "prompts.csv", prompt_rows(prompts), ["prompt_id", "prompt", "ood"])
    summary = {
        "dataset": "ffhq",
        "source_manifest": str(source_manifest),
        "source_files": len(sources),
        "resolution": resolution,
        "transform": image_ops.DESCRIPTION,
        "seed": seed,
        "sizes": {"train": len(rows), "reference": len(reference), "prompts": len(prompts)},
        "reference": "the training images (FFHQ has no held-out split)"
                     + ("" if reference_count is None else f", a seeded subset of {len(reference)}"),
        "prompts_file": str(prompts_file),
        "subsets": {"train_count": train_count, "reference_count": reference_count},
    }
    write_json(out_dir / "dataset.json", summary)
    return summary
