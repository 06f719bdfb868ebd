"""External CLIP weights are pinned by sha256: a local file (clip.source: file) and the checkpoint open_clip
downloads for a tag (clip.source: pretrained). Offline, open_clip's download is replaced by a local file of
a tiny architecture registered under a made-up tag, so the real checking and loading code runs."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from clipvqd.clip import sources
from clipvqd.clip.encoder import ClipEncoder, register_model_config
from clipvqd.clip.standin import StandinClipConfig
from clipvqd.hashing import ChecksumMismatch, sha256_file

NAME = "clipvqd-test-sources"
TAG = "clipvqd_offline_tag"


@pytest.fixture()
def checkpoint(tmp_path, monkeypatch):
    cfg = StandinClipConfig(model_name=NAME)
    register_model_config(NAME, cfg.model_cfg())
    torch.manual_seed(0)
    path = tmp_path / "downloaded.pt"
    torch.save(open_clip.create_model(NAME, pretrained=None).state_dict(), path)
    published = open_clip.list_pretrained()
    monkeypatch.setattr(open_clip, "list_pretrained", lambda *a, **k: published + [(NAME, TAG)])
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda model, tag: {"url": f"offline://{model}/{tag}"})
    downloads = []
    monkeypatch.setattr(open_clip, "download_pretrained",
                        lambda cfg, cache_dir=None, **k: downloads.append(cfg) or str(path))
    return {"path": path, "sha256": sha256_file(path), "downloads": downloads}


def test_pretrained_tag_is_checked_and_recorded(checkpoint, tmp_path):
    out = tmp_path / "clip.safetensors"
    with pytest.raises(ChecksumMismatch, match=rf"CLIP checkpoint of {NAME}/{TAG} \(clip.sha256\)"):
        sources.fetch_pretrained(NAME, TAG, out, expected_sha256="0" * 64)
    assert not out.exists()  # nothing loaded, nothing written

    sources.fetch_pretrained(NAME, TAG, out, expected_sha256=checkpoint["sha256"].upper())
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["source"] == {"kind": "pretrained", "model": NAME, "tag": TAG, "sha256": checkpoint["sha256"]}
    # The weights written are the downloaded ones.
    encoder = ClipEncoder.load(out)
    expected = torch.load(checkpoint["path"], weights_only=True)
    assert all(torch.equal(encoder.model.state_dict()[k], v) for k, v in expected.items())


def test_unknown_tag_fails_before_any_download(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="clip.pretrained 'no-such-tag' is not a published tag"):
        sources.fetch_pretrained(NAME, "no-such-tag", tmp_path / "clip.safetensors")
    assert checkpoint["downloads"] == []


def test_local_weights_file_is_checked(checkpoint, tmp_path):
    with pytest.raises(ChecksumMismatch, match=r"CLIP weights file \(clip.weights\)"):
        sources.import_weights_file(NAME, checkpoint["path"], "1" * 64, tmp_path / "a.safetensors")
    sources.import_weights_file(NAME, checkpoint["path"], checkpoint["sha256"], tmp_path / "b.safetensors")
    assert json.loads((tmp_path / "b.json").read_text())["source"]["sha256"] == checkpoint["sha256"]


def test_a_clip_file_copied_over_another_is_named(checkpoint, tmp_path):
    from clipvqd.checkpoint import CheckpointMismatch

    sources.import_weights_file(NAME, checkpoint["path"], checkpoint["sha256"], tmp_path / "conditioner.safetensors")
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save(open_clip.create_model(NAME, pretrained=None).state_dict(), other)
    sources.import_weights_file(NAME, other, sha256_file(other), tmp_path / "judge.safetensors")
    (tmp_path / "conditioner.safetensors").write_bytes((tmp_path / "judge.safetensors").read_bytes())
    with pytest.raises(CheckpointMismatch, match=f"checkpoint {tmp_path / 'conditioner.safetensors'} has sha256"):
        ClipEncoder.load(tmp_path / "conditioner.safetensors")
    assert ClipEncoder.load(tmp_path / "judge.safetensors").identity == sha256_file(tmp_path / "judge.safetensors")


def test_loading_a_clip_file_does_not_claim_random_weights(checkpoint, tmp_path, caplog):
    """open_clip warns that a model built without a pretrained tag is initialised randomly; reading a CLIP
    file loads its weights right after, so that warning is not shown there (and only that one)."""
    import logging

    out = tmp_path / "clip.safetensors"
    sources.import_weights_file(NAME, checkpoint["path"], checkpoint["sha256"], out)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ClipEncoder.load(out)
        assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
        logging.warning("another warning")
        open_clip.create_model(NAME, pretrained=None)  # outside the loader the library's warning still shows
    messages = [r.getMessage() for r in caplog.records]
    assert "another warning" in messages and any("initialized randomly" in m for m in messages)


def test_registering_and_loading_a_clip_leaves_no_temporary_folder(checkpoint, tmp_path):
    """open_clip reads custom configs from files; the folder they are written to must be gone when the process
    ends (it used to be created at import and never removed: one per job in the temporary folder)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "clip.safetensors"
    sources.import_weights_file(NAME, checkpoint["path"], checkpoint["sha256"], out)
    scratch = tmp_path / "scratch-tmp"
    scratch.mkdir()
    script = (
        "import sys, open_clip, tempfile\n"
        "from clipvqd.clip.encoder import ClipEncoder, register_model_config\n"
        "from clipvqd.clip.standin import StandinClipConfig\n"
        "assert tempfile.gettempdir() == sys.argv[2], tempfile.gettempdir()\n"
        "encoder = ClipEncoder.load(sys.argv[1])\n"  # registers the file's config
        "other = StandinClipConfig(model_name='test-other-standin', embed_dim=16)\n"
        "register_model_config(other.model_name, other.model_cfg())\n"
        "assert open_clip.get_model_config(encoder_name := sys.argv[3]) is not None\n"  # a later scan keeps it
        "open_clip.create_model(encoder_name, pretrained=None)\n"
        "print(encoder.encode_texts(['a face']).shape)\n"
    )
    env = {**os.environ, "TMPDIR": str(scratch)}
    done = subprocess.run([sys.executable, "-c", script, str(out), str(scratch), NAME], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch.Size([1," in done.stdout
    assert list(scratch.iterdir()) == []
