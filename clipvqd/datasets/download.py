"""Checked, resumable HTTP(S) downloads.

Bytes arrive in `<dest>.part`; a rerun after an interruption asks the server only for the missing tail
(an HTTP Range request) and appends it. The file reaches `dest` only after its sha256 matches the
expected one (an atomic rename), so `dest` is either absent or complete and correct; a file with the
wrong hash is deleted, never left where a rule would take it for an output.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from clipvqd.hashing import sha256_file

_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(RuntimeError):
    pass


class ChecksumError(DownloadError):
    pass


class TransientError(DownloadError):
    """A dropped connection, a timeout or a server error: worth retrying, resuming from the partial file."""


def part_path(dest: str | Path) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _check_hash_argument(sha256: str | None, url: str) -> str:
    if not sha256:
        raise DownloadError(f"no sha256 given for {url}: every download is checked, so a hash is required")
    sha256 = sha256.lower()
    if not _SHA256.match(sha256):
        raise DownloadError(f"sha256 '{sha256}' given for {url} is not 64 hexadecimal digits")
    return sha256


def _hash_prefix(path: Path) -> "hashlib._Hash":
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "clipvqd-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch_once(url: str, part: Path, expected_size: int | None, timeout: float, progress: bool) -> "hashlib._Hash":
    """Bring `part` up to the whole file (appending when the server honours Range); return its digest."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        # Longer than the file can be: not a prefix of it. Start over.
        part.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size:
        return _hash_prefix(part)
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Range not satisfiable: the partial file already holds every byte (or is not a prefix);
            # the hash decides.
            return _hash_prefix(part)
        kind = TransientError if error.code >= 500 else DownloadError
        raise kind(f"download {url} failed: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise TransientError(f"download {url} failed: {error}") from error
    with response:
        status = getattr(response, "status", 200)
        if offset and status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(f"download {url}: asked for bytes from {offset}, server answered "
                                    f"Content-Range '{response.headers.get('Content-Range')}'")
            digest, mode = _hash_prefix(part), "ab"
        else:
            # 200: the server sends the whole file (it ignored or does not support Range).
            digest, mode, offset = hashlib.sha256(), "wb", 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else expected_size
        received = offset
        with open(part, mode) as handle, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                              desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            try:
                while chunk := response.read(_CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
                handle.flush()
                raise TransientError(f"download {url} interrupted after {received} bytes ({error}); "
                                    f"{part} keeps them and a rerun resumes from there") from error
        if total is not None and received < total:
            raise TransientError(f"download {url} interrupted after {received} of {total} bytes; "
                                f"{part} keeps them and a rerun resumes from there")
    return digest


def download(url: str, dest: str | Path, sha256: str | None, *, expected_size: int | None = None,
             retries: int = 3, timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch `url` to `dest`, resuming `<dest>.part`; move it into place only if its sha256 is `sha256`.

    An existing `dest` with the right hash is kept (nothing is fetched). A dropped connection, a timeout
    or an HTTP 5xx is retried `retries` times, each retry resuming where the last stopped. A wrong hash
    deletes the partial file and raises `ChecksumError` naming the URL, the file and both hashes.
    """
    expected = _check_hash_argument(sha256, url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        actual = sha256_file(dest)
        if actual == expected:
            return dest
        dest.unlink()
        print(f"{dest} had sha256 {actual}, expected {expected}: removed, downloading again")
    part = part_path(dest)
    for attempt in range(retries + 1):
        try:
            digest = _fetch_once(url, part, expected_size, timeout, progress)
            break
        except TransientError as error:
            if attempt == retries:
                raise
            print(f"{error}; retry {attempt + 1} of {retries}")
            time.sleep(min(2 ** attempt, 30))
    actual = digest.hexdigest()
    if actual != expected:
        size = part.stat().st_size
        part.unlink()
        raise ChecksumError(
            f"download {url} -> {dest}: sha256 {actual} ({size} bytes) but expected {expected}; "
            f"the file was removed. If the source changed on purpose, set the new hash in the config; "
            f"otherwise the download was corrupted or the URL serves something else"
        )
    os.replace(part, dest)
    return dest
