"""The report's sample grids: each method's first samples of the first prompts, copied into the report folder
from their manifests (paths kept inside each manifest's folder, bytes checked against the recorded sha256)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

from clipvqd.manifest import ManifestError, read_listed_bytes, read_manifest
from clipvqd.report import figures
from clipvqd.report.errors import ReportError
from clipvqd.samples import SampleSetError, check_same_plan

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}




def _copy_asset(source: Path, out_dir: Path, relative: Path) -> str:
    if not source.is_file():
        raise ReportError(f"report asset {source} does not exist")
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return relative.as_posix()


def _copy_listed(manifest: Path, record: Mapping, out_dir: Path, relative: Path) -> str:
    """Copy one image a sample manifest lists into the report: its path must stay inside the manifest's
    folder and its bytes must have the recorded sha256 (the same rule as every reader of a manifest)."""
    try:
        data = read_listed_bytes(manifest, record["path"], record["sha256"])
    except ManifestError as error:
        raise ReportError(str(error)) from None
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return relative.as_posix()


def sample_grids_context(sample_grids: Mapping[str, str | Path] | None, out_dir: Path, max_prompts: int,
                         max_samples: int, plan=None) -> dict:
    """Sample manifests become per-prompt rows of every method's first samples; ready-made grid images are
    shown as they are. The manifests must hold the same (prompt, sample index, seed) rows, and each exactly
    `plan` (a `clipvqd.samples.SamplePlan`) when given; every copied image must have its recorded sha256."""
    manifests, images = {}, []
    for label, source in (sample_grids or {}).items():
        source = Path(source)
        if source.suffix.lower() == ".csv":
            try:
                frame = read_manifest(source, verify=False)  # paths checked here, each copied file's hash below
            except ManifestError as error:
                raise ReportError(str(error)) from None
            missing = [c for c in ("prompt_id", "prompt", "sample_index") if c not in frame.columns]
            if missing:
                raise ReportError(f"sample manifest {source} (grid {label!r}) lacks column(s) {', '.join(missing)}")
            manifests[label] = (source, frame)
        elif source.suffix.lower() in IMAGE_SUFFIXES:
            slug = figures.slug(label)
            images.append({"label": label, "path": _copy_asset(source, out_dir,
                                                               Path("assets", "grids", f"{slug}{source.suffix.lower()}"))})
        else:
            raise ReportError(f"sample grid {label!r}: {source} is neither a manifest (.csv) nor an image")
    try:
        for source, frame in manifests.values():
            if plan is not None:
                plan.check(frame, source)
        check_same_plan(manifests)
    except SampleSetError as error:
        raise ReportError(str(error)) from None
    prompt_order: dict[str, str] = {}
    for _, frame in manifests.values():
        for pid, prompt in frame.sort_values("prompt_id", kind="stable")[["prompt_id", "prompt"]].itertuples(index=False):
            prompt_order.setdefault(str(pid), str(prompt))
    prompts = []
    for prompt_index, (pid, prompt) in enumerate(list(prompt_order.items())[:max_prompts]):
        rows = []
        for label, (source, frame) in manifests.items():
            subset = frame[frame["prompt_id"].astype(str) == pid].sort_values("sample_index").head(max_samples)
            cells = []
            for record in subset.to_dict("records"):
                suffix = Path(record["path"]).suffix.lower()
                if suffix not in IMAGE_SUFFIXES:
                    raise ReportError(f"sample manifest {source} lists {record['path']!r}, which is not an image")
                relative = Path("assets", "samples", figures.slug(label),
                                f"p{prompt_index:03d}_s{int(record['sample_index']):03d}{suffix}")
                cells.append({"path": _copy_listed(source, record, out_dir, relative),
                              "caption": f"sample {record['sample_index']}"
                                         + (f", seed {record['seed']}" if "seed" in record else "")})
            rows.append({"label": label, "cells": cells})
        prompts.append({"prompt_id": pid, "prompt": prompt, "rows": rows})
    return {"prompts": prompts, "images": images, "n_prompts_total": len(prompt_order),
            "max_prompts": max_prompts, "max_samples": max_samples}
