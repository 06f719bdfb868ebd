"""Manifests: one CSV per split, one row per item, with each file's sha256.

Columns: `path` (relative to the manifest's folder), `sha256`, one column per attribute (worlds), and
`caption` where the split has captions. Every reader checks that a file exists and has the recorded hash
before using it, so a damaged or swapped image is named instead of silently trained on.

The one rule for every reader of a manifest (or of any file that names other files by a relative path):
a listed path must stay inside the manifest's folder. `resolve_listed` refuses absolute paths, and paths
that leave the folder through `..` or through a symbolic link pointing out of it; `read_manifest` applies
it to every row, so no reader can be handed /etc/passwd by an edited manifest.
"""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipvqd.hashing import sha256_bytes, sha256_file

REQUIRED_COLUMNS = ("path", "sha256")


class ManifestError(ValueError):
    pass


class _ListedPaths:
    """Resolves the paths one listing names (see `resolve_listed`), caching the real location of each
    folder so that a manifest of many thousand files costs one `lstat` per file."""

    def __init__(self, listing: str | Path, root: str | Path | None = None):
        self.listing = Path(listing)
        self.root = Path(root) if root is not None else self.listing.parent
        self.real_root = os.path.realpath(self.root)
        self._real_dirs: dict[Path, str] = {}

    def __call__(self, relative: str) -> Path:
        text = str(relative)
        if not text.strip():
            raise ManifestError(f"{self.listing} lists an empty path")
        if (PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()
                or PureWindowsPath(text).drive or text.startswith("~")):
            raise ManifestError(f"{self.listing} lists the absolute path {text!r}; listed paths must be relative "
                                f"to {self.root} and stay inside it")
        file = self.root / text
        if os.path.islink(file):
            real = os.path.realpath(file)
        else:
            folder = self._real_dirs.get(file.parent)
            if folder is None:
                folder = self._real_dirs[file.parent] = os.path.realpath(file.parent)
            real = os.path.join(folder, file.name)
        if os.path.commonpath([self.real_root, real]) != self.real_root:
            how = "through '..'" if ".." in PurePosixPath(text).parts else "through a symbolic link"
            raise ManifestError(f"{self.listing} lists {text!r}, which leaves {self.root} {how} (it resolves to "
                                f"{real}); listed paths must stay inside that folder")
        return file


def resolve_listed(listing: str | Path, relative: str, root: str | Path | None = None) -> Path:
    """The file that `listing` (a manifest, or any file naming others relative to its folder) means by
    `relative`, as `<root>/<relative>` (root: the listing's folder). Refused, naming the listing and the
    path: an empty or absolute path, and one whose real location (`..` and symbolic links resolved) is
    outside the root's real location."""
    return _ListedPaths(listing, root)(relative)


def read_manifest(path: str | Path, verify: bool = True, exist_only: bool = False) -> pd.DataFrame:
    """Read a manifest; every listed path must stay inside the manifest's folder (`resolve_listed`). With
    `verify`, check every file exists and matches its sha256 (only that it exists with `exist_only`, for
    readers that check each file's hash as they read it, see `read_listed_bytes`)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    text_columns = {"path": str, "sha256": str, "prompt_id": str, "prompt": str}  # ids like "0001" stay text
    frame = pd.read_csv(path, keep_default_na=False, dtype=text_columns)
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise ManifestError(f"manifest {path} has no '{column}' column")
    resolve = _ListedPaths(path)
    files = [resolve(relative) for relative in frame["path"]]
    if verify:
        for file, expected in zip(files, frame["sha256"]):
            if not file.is_file():
                raise ManifestError(f"manifest {path} lists {file}, which does not exist")
            if exist_only:
                continue
            _check_hash(path, file, sha256_file(file), expected)
    return frame


def _check_hash(manifest: Path, file: Path, actual: str, expected: str) -> None:
    if actual != expected:
        raise ManifestError(f"file {file} has sha256 {actual}, but manifest {manifest} records {expected}")


def read_listed_bytes(manifest_path: str | Path, relative: str, expected_sha256: str) -> bytes:
    """The bytes of one file a manifest lists, read once: its path checked by `resolve_listed`, its
    content by the recorded sha256 (for readers that use a few files of a manifest, such as the report)."""
    manifest_path = Path(manifest_path)
    file = resolve_listed(manifest_path, relative)
    if not file.is_file():
        raise ManifestError(f"manifest {manifest_path} lists {file}, which does not exist")
    data = file.read_bytes()
    _check_hash(manifest_path, file, sha256_bytes(data), str(expected_sha256))
    return data


def absolute_paths(manifest_path: str | Path, frame: pd.DataFrame) -> list[Path]:
    """Where the rows of `frame` (read from `manifest_path`) point; each checked by `resolve_listed`."""
    resolve = _ListedPaths(manifest_path)
    return [resolve(relative) for relative in frame["path"]]


def load_rgb(path: str | Path, resolution: int | None = None, resize: bool = False,
             data: bytes | None = None) -> Image.Image:
    """Open an image as RGB (from `data`, the file's bytes already read, when given); a wrong size is
    resized when `resize`, else refused naming the file."""
    with Image.open(path if data is None else io.BytesIO(data)) as image:
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
                 verify: bool = True, verify_on_read: bool = False):
        """`verify` checks every file's sha256 up front; `verify_on_read` instead checks only that the
        files exist, then hashes each file's bytes as it is read and decoded (one read instead of two:
        for a reader that passes over every image once, such as the CLIP embedding cache)."""
        self.manifest_path = Path(manifest_path)
        self.frame = read_manifest(self.manifest_path, verify=verify or verify_on_read, exist_only=verify_on_read)
        self.paths = absolute_paths(self.manifest_path, self.frame)
        self.expected = list(self.frame["sha256"]) if verify_on_read else None
        self.resolution = resolution
        self.resize = resize

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Image.Image:
        path = self.paths[index]
        if self.expected is None:
            return load_rgb(path, self.resolution, self.resize)
        data = path.read_bytes()  # read once: hashed, then decoded from memory
        _check_hash(self.manifest_path, path, sha256_bytes(data), self.expected[index])
        return load_rgb(path, self.resolution, self.resize, data=data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_tensor(self._load(index))

    def uint8(self, index: int) -> torch.Tensor:
        """Image `index` as uint8 (3, H, W), decoded straight from the file."""
        return to_uint8_tensor(self._load(index))

    def all(self) -> torch.Tensor:
        """Every image stacked in one tensor (the worlds are small enough to keep in memory)."""
        return torch.stack([self[i] for i in range(len(self))])
