"""The attribute oracle checked on what generators make (docs/design.md §6).

The oracle is trained on clean renders; generated images are blurred, noisy or tokenized. Its accuracy on
held-out renders (the oracle split's test fold) degraded the way generated images are says how far its
attribute accuracy can be trusted on them: Gaussian blur at several radii, additive Gaussian noise, JPEG,
down-and-up sampling, and the tokenizer's reconstructions (through the compacted vocabulary, the codes a
diffusion model can produce). Every level also gets a sharpness (the mean absolute Laplacian of the grey
image), so a method's samples can be placed on the blur scale (`sharpness`, `resembling_level`) and the
report can say which level of the curve they resemble.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

# (family, levels): sigma in pixels of the world's resolution; noise std of [0, 1] pixel values; JPEG
# quality; down-sampling factor (box down, bilinear up). "tokenizer" has one level, its reconstruction.
DEGRADATIONS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("gaussian_blur", (0.5, 1.0, 1.5, 2.0)),
    ("noise", (0.02, 0.05, 0.1, 0.2)),
    ("jpeg", (90.0, 70.0, 50.0, 30.0, 10.0)),
    ("down_up", (2.0, 4.0)),
)
THRESHOLD = 0.9  # below it on a level that samples resemble, the oracle is retrained with that degradation
_NOISE_STREAM = 91


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def degrade(images: torch.Tensor, family: str, level: float, seed: int = 0) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the same images degraded by `family` at `level`, uint8."""
    if family == "clean":
        return images.clone()
    if family == "gaussian_blur":
        return torch.stack([_tensor(_pil(image).filter(ImageFilter.GaussianBlur(radius=level))) for image in images])
    if family == "noise":
        generator = torch.Generator().manual_seed(int(seed) * 1000 + _NOISE_STREAM)
        noisy = images.float() / 255 + level * torch.randn(images.shape, generator=generator)
        return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)
    if family == "jpeg":
        out = []
        for image in images:
            buffer = io.BytesIO()
            _pil(image).save(buffer, format="JPEG", quality=int(level))
            out.append(_tensor(Image.open(io.BytesIO(buffer.getvalue()))))
        return torch.stack(out)
    if family == "down_up":
        size = images.shape[-1]
        small = max(1, int(round(size / level)))
        return torch.stack([_tensor(_pil(image).resize((small, small), Image.Resampling.BOX)
                                    .resize((size, size), Image.Resampling.BILINEAR)) for image in images])
    raise ValueError(f"unknown degradation {family!r} (known: clean, tokenizer, "
                     f"{', '.join(name for name, _ in DEGRADATIONS)})")


def sharpness(images: torch.Tensor) -> float:
    """Mean absolute response of a 3x3 Laplacian on the grey image in [0, 1]: falls as images blur."""
    grey = (images.float() / 255).mean(dim=1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return float(F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernel).abs().mean())


@torch.no_grad()
def tokenizer_reconstructions(images: torch.Tensor, tokenizer: str | Path, codebook: str | Path,
                              resize: bool = False, batch_size: int = 128) -> torch.Tensor:
    """The tokenizer's reconstructions of uint8 images through its compacted vocabulary, uint8."""
    from clipvqd.manifest import to_uint8
    from clipvqd.tokenizer import CodeMapping, load_tokenizer

    model, _ = load_tokenizer(tokenizer)
    mapping = CodeMapping.load(codebook)
    mapping.check_matches(model)
    allowed = mapping.used_codes
    size = model.config.resolution
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].float() / 127.5 - 1.0
        if batch.shape[-1] != size:
            if not resize:
                raise ValueError(f"images are {batch.shape[-1]} px, the tokenizer takes {size} px (--resize)")
            batch = F.interpolate(batch, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out.append(to_uint8(model.decode_codes(model.encode(batch.clamp(-1, 1), allowed))))
    reconstructed = torch.cat(out)
    if reconstructed.shape[-1] != images.shape[-1]:
        reconstructed = to_uint8(F.interpolate(reconstructed.float() / 127.5 - 1, size=images.shape[-2:],
                                               mode="bicubic", antialias=True, align_corners=False))
    return reconstructed


def calibrate_oracle(oracle_path: str | Path, manifest: str | Path, *, fold: str = "test",
                     tokenizer: str | Path | None = None, codebook: str | Path | None = None, resize: bool = False,
                     degradations: Sequence[tuple[str, Sequence[float]]] = DEGRADATIONS, seed: int = 0) -> dict:
    """The oracle's per-attribute accuracy on the `fold` renders of `manifest`, clean and at every level of
    every degradation (plus the tokenizer's reconstructions when given); with each level's sharpness."""
    from clipvqd.hashing import sha256_file
    from clipvqd.manifest import ManifestImages
    from clipvqd.oracle import Oracle

    oracle = Oracle(oracle_path)
    dataset = ManifestImages(manifest)
    index = [i for i in range(len(dataset)) if "fold" not in dataset.frame or dataset.frame["fold"].iloc[i] == fold]
    if not index:
        raise ValueError(f"{manifest} has no rows in fold {fold!r}")
    images = torch.stack([dataset.uint8(i) for i in index])
    truth = dataset.frame.iloc[index]
    levels = [("clean", 0.0)] + [(family, float(level)) for family, values in degradations for level in values]
    if tokenizer is not None:
        levels.append(("tokenizer", 0.0))
    rows = []
    for family, level in levels:
        if family == "tokenizer":
            degraded = tokenizer_reconstructions(images, tokenizer, codebook, resize=resize)
        else:
            degraded = degrade(images, family, level, seed=seed)
        predicted = oracle.predict(degraded)
        accuracy = {name: float(np.mean([p == t for p, t in zip(predicted[name], truth[name])]))
                    for name in oracle.attributes}
        rows.append({"family": family, "level": level, "label": _label(family, level), "accuracy": accuracy,
                     "min": min(accuracy.values()), "mean": float(np.mean(list(accuracy.values()))),
                     "sharpness": sharpness(degraded)})
    return {
        "oracle_sha256": sha256_file(oracle_path),
        "renders": {"manifest": str(manifest), "fold": fold, "n": len(index)},
        "tokenizer_sha256": sha256_file(tokenizer) if tokenizer is not None else None,
        "threshold": THRESHOLD,
        "levels": rows,
        "below_threshold": [row["label"] for row in rows if row["min"] < THRESHOLD],
        "definitions": {
            "gaussian_blur": "PIL GaussianBlur, radius = sigma in pixels",
            "noise": "additive Gaussian noise, std in [0, 1] pixel units, clipped",
            "jpeg": "PIL JPEG at the given quality",
            "down_up": "box down-sampling by the factor, bilinear up-sampling back",
            "tokenizer": "the tokenizer's reconstruction through its compacted vocabulary",
            "sharpness": "mean absolute 3x3 Laplacian of the grey image in [0, 1]",
        },
    }


def reconstruction_bound(oracle_path: str | Path, manifest: str | Path, tokenizer: str | Path, codebook: str | Path,
                         work_dir: str | Path, *, resize: bool = False, seed: int = 0) -> dict:
    """What can be read off the tokenizer's reconstructions at all: an oracle with `oracle_path`'s settings,
    trained on reconstructions of the oracle split's train fold, tested on reconstructions of its test fold.
    Where the render-trained oracle's accuracy on reconstructions is near this bound, the tokenizer, not the
    oracle, loses the attribute. A diagnostic (it trains a second oracle), not part of the default run."""
    import pandas as pd
    from PIL import Image

    from clipvqd.checkpoint import load_meta
    from clipvqd.hashing import sha256_file
    from clipvqd.manifest import ManifestImages
    from clipvqd.oracle import Oracle, OracleConfig, train_oracle

    meta = load_meta(oracle_path)
    work_dir = Path(work_dir)
    (work_dir / "images").mkdir(parents=True, exist_ok=True)
    dataset = ManifestImages(manifest)
    images = torch.stack([dataset.uint8(i) for i in range(len(dataset))])
    reconstructed = tokenizer_reconstructions(images, tokenizer, codebook, resize=resize)
    rows = []
    for index, (image, row) in enumerate(zip(reconstructed, dataset.frame.to_dict("records"))):
        path = f"images/{index:06d}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(work_dir / path)
        rows.append({**row, "path": path, "sha256": sha256_file(work_dir / path)})
    pd.DataFrame(rows).to_csv(work_dir / "reconstructions.csv", index=False)
    train_oracle(work_dir / "reconstructions.csv", meta["world"], OracleConfig(**meta["config"]), work_dir / "work",
                 work_dir / "oracle.safetensors", work_dir / "curve.csv", seed=seed, progress=False)
    accuracy = Oracle(work_dir / "oracle.safetensors").accuracy_on_manifest(work_dir / "reconstructions.csv",
                                                                           fold="test")
    return {"accuracy": accuracy, "min": min(accuracy.values()), "trained_on": "tokenizer reconstructions of the "
            "oracle split's train fold", "tested_on": "reconstructions of its test fold"}


def _label(family: str, level: float) -> str:
    if family in ("clean", "tokenizer"):
        return family
    return f"{family} {level:g}"


def resembling_level(calibration: dict, sample_sharpness: float) -> dict:
    """The level of the calibration (clean, a blur, a down-up or the tokenizer: the degradations that make
    images softer) whose sharpness is closest to a sample set's."""
    candidates = [row for row in calibration["levels"] if row["family"] in ("clean", "gaussian_blur", "down_up",
                                                                            "tokenizer")]
    return min(candidates, key=lambda row: abs(row["sharpness"] - sample_sharpness))
