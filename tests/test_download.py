"""Checked, resumable downloads against an HTTP server on 127.0.0.1 (no network needed)."""

import hashlib
import os

import pytest

from clipvqd.datasets.download import ChecksumError, DownloadError, download, part_path
from local_http import LocalFiles

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with LocalFiles({"/archive.zip": PAYLOAD}) as files:
        yield files


def test_download_gets_the_file_with_the_right_hash(server, tmp_path):
    dest = tmp_path / "out" / "archive.zip"
    download(server.url("/archive.zip"), dest, SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    # A second call finds the checked file and fetches nothing.
    download(server.url("/archive.zip"), dest, SHA, progress=False)
    assert len(server.requests) == 1


def test_wrong_hash_is_refused_named_and_removed(server, tmp_path):
    dest = tmp_path / "archive.zip"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as error:
        download(server.url("/archive.zip"), dest, wrong, progress=False)
    message = str(error.value)
    for part in (server.url("/archive.zip"), str(dest), SHA, wrong):
        assert part in message
    assert not dest.exists() and not part_path(dest).exists()


def test_a_hash_is_required(server, tmp_path):
    with pytest.raises(DownloadError, match="sha256"):
        download(server.url("/archive.zip"), tmp_path / "a.zip", None, progress=False)
    with pytest.raises(DownloadError, match="not 64 hexadecimal"):
        download(server.url("/archive.zip"), tmp_path / "a.zip", "abc", progress=False)


def test_half_downloaded_part_is_resumed_with_a_range_request(server, tmp_path):
    dest = tmp_path / "archive.zip"
    half = len(PAYLOAD) // 2
    part_path(dest).write_bytes(PAYLOAD[:half])
    download(server.url("/archive.zip"), dest, SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [{"path": "/archive.zip", "range": f"bytes={half}-", "sent": len(PAYLOAD) - half}]


def test_dropped_connection_keeps_the_part_and_a_rerun_resumes(server, tmp_path):
    dest = tmp_path / "archive.zip"
    server.drop_after["/archive.zip"] = 100_000
    with pytest.raises(DownloadError, match="rerun resumes"):
        download(server.url("/archive.zip"), dest, SHA, retries=0, progress=False)
    assert not dest.exists()
    assert part_path(dest).stat().st_size == 100_000
    download(server.url("/archive.zip"), dest, SHA, retries=0, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == "bytes=100000-"
    assert server.requests[-1]["sent"] == len(PAYLOAD) - 100_000


def test_retries_resume_within_one_call(server, tmp_path):
    dest = tmp_path / "archive.zip"
    server.drop_after["/archive.zip"] = 50_000
    download(server.url("/archive.zip"), dest, SHA, retries=1, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [None, "bytes=50000-"]


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "archive.zip"
    part_path(dest).write_bytes(b"garbage that is not a prefix")
    server.ignore_range = True
    download(server.url("/archive.zip"), dest, SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_with_wrong_bytes_is_removed(server, tmp_path):
    dest = tmp_path / "archive.zip"
    part_path(dest).write_bytes(b"x" * len(PAYLOAD))  # as long as the file: the server answers 416
    with pytest.raises(ChecksumError):
        download(server.url("/archive.zip"), dest, SHA, progress=False)
    assert not part_path(dest).exists() and not dest.exists()
    download(server.url("/archive.zip"), dest, SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_missing_url_names_the_status(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/nothing.zip"), tmp_path / "n.zip", SHA, progress=False)
