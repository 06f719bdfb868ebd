"""A training job killed with SIGKILL mid-run continues from its last snapshot when rerun (what a rerun
of `snakemake` does after a crash or a pre-empted cluster job)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipvqd.checkpoint import load_meta

TOKENIZER = {
    "resize": False,
    "model": {"channels": 8, "channel_multipliers": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
              "norm_groups": 4, "z_channels": 8, "embed_dim": 8, "codebook_size": 16},
    "train": {"max_steps": 400, "batch_size": 4, "log_every": 10, "snapshot_every": 20},
}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipvqd", *args]


def _kill_after_snapshot(command: list[str], work: Path, log: Path, timeout: float = 120) -> None:
    """Start `command`, wait for its second snapshot, then SIGKILL it (no chance to clean up)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if len(list(work.glob("state-*.pt"))) >= 2:
                break
            if process.poll() is not None:
                pytest.fail(f"the job ended (rc {process.returncode}) before it was killed:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("no snapshot appeared in time")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


def _snapshot_step(work: Path) -> int:
    return max(int(p.name.split("-")[1].split(".")[0]) for p in work.glob("state-*.pt"))


def test_killed_tokenizer_training_resumes(small_faces, tmp_path):
    work, out = tmp_path / "work", tmp_path / "model.safetensors"
    command = _command("tokenizer", "train", "--params", json.dumps(TOKENIZER), "--train",
                       str(small_faces / "train.csv"), "--work", str(work), "--out", str(out), "--curve",
                       str(tmp_path / "curve.csv"), "--codebook", str(tmp_path / "codebook.json"))
    _kill_after_snapshot(command, work, tmp_path / "killed.log")
    assert not out.exists()
    saved = _snapshot_step(work)
    assert 0 < saved < 400
    output = _run(command)
    assert f"resuming from the snapshot at step {saved} of 400" in output
    assert load_meta(out)["step"] == 400
    steps = [int(line.split(",")[0]) for line in (tmp_path / "curve.csv").read_text().splitlines()[1:]]
    assert steps == list(range(10, 401, 10))  # no gap and no repeated rows across the kill


def test_killed_diffusion_training_resumes(small_faces, tmp_path):
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from clipvqd.hashing import sha256_file

    # A tokenized split and its embeddings, as the tokenize and clip_embed rules write them.
    rng = np.random.default_rng(0)
    np.save(tmp_path / "tokens.npy", rng.integers(0, 12, size=(32, 4, 4)).astype(np.int16))
    (tmp_path / "tokens.json").write_text(json.dumps({
        "kind": "tokenized_split", "codes_file": "tokens.npy", "codes_sha256": sha256_file(tmp_path / "tokens.npy"),
        "count": 32, "token_grid": [4, 4], "dtype": "int16", "vocab_size": 12, "codebook_size": 16,
        "provenance": {}}))
    save_file({"embeddings": torch.randn(32, 8)}, str(tmp_path / "emb.safetensors"), metadata={"count": "32"})
    params = {"model": {"hidden_dim": 16, "num_layers": 1, "num_heads": 2, "mlp_ratio": 1, "num_steps": 8},
              "train": {"steps": 300, "batch_size": 4, "warmup_steps": 2, "snapshot_every": 15, "log_every": 5}}
    work, out = tmp_path / "work", tmp_path / "model.safetensors"
    command = _command("diffusion", "train", "--mode", "language_free", "--params", json.dumps(params),
                       "--tokens", str(tmp_path / "tokens.json"), "--embeddings", str(tmp_path / "emb.safetensors"),
                       "--alpha", "0.5", "--work", str(work), "--out", str(out), "--curve", str(tmp_path / "c.csv"))
    _kill_after_snapshot(command, work, tmp_path / "killed.log")
    saved = _snapshot_step(work)
    assert 0 < saved < 300 and not out.exists()
    output = _run(command)
    assert f"resuming from the snapshot at step {saved} of 300" in output
    assert load_meta(out)["step"] == 300
    steps = [int(line.split(",")[0]) for line in (tmp_path / "c.csv").read_text().splitlines()[1:]]
    assert steps == list(range(5, 301, 5))
