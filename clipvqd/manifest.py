"""Manifests: one CSV per split, one row per item, with each file's sha256.

Columns: `path` (relative to the manifest's folder), `sha256`, one column per attribute (worlds), and
`caption` where the split has captions. Every reader checks that a file exists and has the recorded hash
before using it, so a damaged or swapped image is named instead of silently trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipvqd.hashing import sha256_file

REQUIRED_COLUMNS = ("path", "sha256")


class ManifestError(ValueError):
    pass


def read_manifest(path: str | Path, verify: bool = True) -> pd.DataFrame:
    """Read a manifest; with `verify`, check every file exists and matches its sha256."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    frame = pd.read_csv(path, keep_default_na=False, dtype={"path": str, "sha256": str})
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise ManifestError(f"manifest {path} has no '{column}' column")
    if verify:
        for relative, expected in zip(frame["path"], frame["sha256"]):
            file = path.parent / relative
            if not file.is_file():
                raise ManifestError(f"manifest {path} lists {file}, which does not exist")
            actual = sha256_file(file)
            if actual != expected:
                raise ManifestError(
                    f"file {file} has sha256 {actual}, but manifest {path} records {expected}"
                )
    return frame


def absolute_paths(manifest_path: str | Path, frame: pd.DataFrame) -> list[Path]:
    base = Path(manifest_path).parent
    return [base / relative for relative in frame["path"]]


def load_rgb(path: str | Path, resolution: int | None = None, resize: bool = False) -> Image.Image:
    """Open an image as RGB; a wrong size is resized when `resize`, else refused naming the file."""
    with Image.open(path) as image:
        image = image.convert("RGB") if image.mode != "RGB" else image.copy()
    if resolution is not None and image.size != (resolution, resolution):
        if not resize:
            raise ManifestError(
                f"image {path} is {image.size[0]}x{image.size[1]}, expected {resolution}x{resolution} "
                "(set the data's resize option to resize it)"
            )
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 HWC image -> float CHW tensor in [-1, 1], the range every generator here works in."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 HWC image -> uint8 CHW tensor, without a round trip through floats (what CLIP preprocessing
    and FID libraries start from)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float (B, 3, H, W) in [-1, 1] -> uint8 (B, 3, H, W), as FID libraries and PNG writers expect."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ManifestImages(torch.utils.data.Dataset):
    """The images of a manifest as float tensors in [-1, 1], shape (3, resolution, resolution)."""

    def __init__(self, manifest_path: str | Path, resolution: int | None = None, resize: bool = False,
                 verify: bool = True):
        self.manifest_path = Path(manifest_path)
        self.frame = read_manifest(self.manifest_path, verify=verify)
        self.paths = absolute_paths(self.manifest_path, self.frame)
        self.resolution = resolution
        self.resize = resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_tensor(load_rgb(self.paths[index], self.resolution, self.resize))

    def uint8(self, index: int) -> torch.Tensor:
        """Image `index` as uint8 (3, H, W), decoded straight from the file."""
        return to_uint8_tensor(load_rgb(self.paths[index], self.resolution, self.resize))

    def all(self) -> torch.Tensor:
        """Every image stacked in one tensor (the worlds are small enough to keep in memory)."""
        return torch.stack([self[i] for i in range(len(self))])
