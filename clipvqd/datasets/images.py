"""The one transform every prepared real image goes through: centre crop to a square, resize, PNG.

Centre crop keeps the aspect ratio of the content (COCO images are rarely square); bicubic resizing is
the filter the rest of the suite uses when it resizes (`clipvqd.manifest.load_rgb`). Writing happens
through a temporary name, so a killed job never leaves a truncated PNG under its final name.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from clipvqd.hashing import sha256_bytes

RESAMPLING = Image.Resampling.BICUBIC
DESCRIPTION = "centre crop to the shorter side, bicubic resize (PIL), RGB PNG"


class ImageDataError(ValueError):
    pass


def decode(data: bytes, name: str) -> Image.Image:
    """Open image bytes as RGB; an unreadable file is named."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except Exception as error:  # PIL raises several unrelated types for damaged files
        raise ImageDataError(f"cannot read image {name}: {error}") from error


def center_crop_resize(image: Image.Image, resolution: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if side != resolution:
        square = square.resize((resolution, resolution), RESAMPLING)
    return square


def write_png(image: Image.Image, path: str | Path) -> str:
    """Write `image` as PNG at `path` (atomically); return the file's sha256."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return sha256_bytes(data)


def prepare_one(data: bytes, name: str, resolution: int, out: str | Path) -> str:
    """Decode, crop, resize and write one image; return the sha256 of the PNG written."""
    return write_png(center_crop_resize(decode(data, name), resolution), out)
