"""Image sets identified by their contents, the inputs of every feature-based metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from clipvqd.hashing import sha256_file, sha256_of_hashes
from clipvqd.manifest import absolute_paths, read_manifest

__all__ = ["FeatureError", "ImageSet", "UInt8Images"]


class FeatureError(ValueError):
    pass


@dataclass(frozen=True)
class ImageSet:
    """A multiset of image files identified by their contents.

    Files are kept in a canonical order (by sha256, then path) so that features, and every metric
    that subsamples them with a seeded RNG (KID), depend only on the contents and not on listing order.
    """

    paths: tuple[Path, ...]
    sha256s: tuple[str, ...]
    label: str

    def __post_init__(self):
        if len(self.paths) != len(self.sha256s):
            raise FeatureError(f"image set {self.label}: {len(self.paths)} paths but {len(self.sha256s)} hashes")
        if not self.paths:
            raise FeatureError(f"image set {self.label} is empty")

    @classmethod
    def build(cls, paths: Iterable[str | Path], sha256s: Iterable[str], label: str) -> "ImageSet":
        pairs = sorted(zip((str(s).lower() for s in sha256s), (Path(p) for p in paths)))
        return cls(tuple(p for _, p in pairs), tuple(h for h, _ in pairs), label)

    @classmethod
    def from_manifest(cls, manifest_path: str | Path, verify: bool = True) -> "ImageSet":
        """The images a manifest lists; with `verify` every file is re-hashed and checked first, so the
        cache key really is the content that will be read."""
        frame = read_manifest(manifest_path, verify=verify)
        return cls.build(absolute_paths(manifest_path, frame), frame["sha256"], label=str(manifest_path))

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path], label: str | None = None) -> "ImageSet":
        paths = [Path(p) for p in paths]
        for path in paths:
            if not path.is_file():
                raise FeatureError(f"image {path} does not exist")
        label = label or (str(paths[0].parent) if paths else "<empty>")
        return cls.build(paths, [sha256_file(p) for p in paths], label)

    @classmethod
    def from_folder(cls, folder: str | Path, pattern: str = "*.png") -> "ImageSet":
        folder = Path(folder)
        paths = sorted(folder.glob(pattern))
        if not paths:
            raise FeatureError(f"no images matching {pattern} in {folder}")
        return cls.from_paths(paths, label=str(folder))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def content_sha256(self) -> str:
        """Identity of the set: order-independent, counts duplicates, blind to file names."""
        return sha256_of_hashes(self.sha256s)

    def image_size(self) -> tuple[int, int]:
        """(width, height) shared by every image; a set of mixed sizes is refused naming the odd file,
        because FID on mixed resolutions silently measures the resizer."""
        sizes: dict[tuple[int, int], Path] = {}
        for path in self.paths:
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
        if len(sizes) > 1:
            described = ", ".join(f"{w}x{h} (e.g. {p})" for (w, h), p in sizes.items())
            raise FeatureError(f"image set {self.label} mixes image sizes: {described}")
        return next(iter(sizes))

    def dataset(self) -> "UInt8Images":
        return UInt8Images(self.paths)

    def describe(self) -> dict:
        width, height = self.image_size()
        return {
            "label": self.label,
            "content_sha256": self.content_sha256,
            "n": len(self),
            "resolution": [width, height],
        }


class UInt8Images(torch.utils.data.Dataset):
    """Images as uint8 tensors (3, H, W), the input torch-fidelity's extractors expect."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except OSError as error:
            raise FeatureError(f"cannot read image {path}: {error}") from error
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
