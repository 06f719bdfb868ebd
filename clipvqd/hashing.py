"""Content hashes: the identity of files, image sets and weights throughout the suite."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of_hashes(hashes: Iterable[str]) -> str:
    """Order-independent identity of a set of files, from their individual sha256s."""
    digest = hashlib.sha256()
    for item in sorted(hashes):
        digest.update(item.encode())
    return digest.hexdigest()


class ChecksumMismatch(ValueError):
    pass


def verify_sha256(path: str | Path, expected: str | None, what: str = "file") -> str:
    """Return the file's sha256; raise naming the file and both hashes if it differs from `expected`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        raise ChecksumMismatch(
            f"{what} {path} has sha256 {actual}, but the config expects {expected.lower()}"
        )
    return actual
