"""Multi-GPU launching, exercised on CPU: the training rules start `torchrun --nproc_per_node=<gpu>` when a
profile gives them more than one GPU, and a 2-process gloo run of the diffusion CLI that is killed midway
resumes from its snapshot under torchrun again."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipvqd.checkpoint import load_meta
from conftest import REPO

TORCHRUN = Path(sys.executable).parent / "torchrun"


def _data(folder: Path) -> tuple[Path, Path]:
    """A tokenized split and its image embeddings, as the tokenize and clip_embed rules write them."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from clipvqd.hashing import sha256_file

    rng = np.random.default_rng(0)
    np.save(folder / "tokens.npy", rng.integers(0, 12, size=(32, 4, 4)).astype(np.int16))
    (folder / "tokens.json").write_text(json.dumps({
        "kind": "tokenized_split", "codes_file": "tokens.npy", "codes_sha256": sha256_file(folder / "tokens.npy"),
        "count": 32, "token_grid": [4, 4], "dtype": "int16", "vocab_size": 12, "codebook_size": 16,
        "provenance": {}}))
    save_file({"embeddings": torch.randn(32, 8, generator=torch.Generator().manual_seed(0))},
              str(folder / "emb.safetensors"), metadata={"count": "32"})
    return folder / "tokens.json", folder / "emb.safetensors"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.skipif(not TORCHRUN.is_file(), reason=f"torchrun is not installed beside {sys.executable}")
def test_two_gloo_processes_under_torchrun_are_killed_and_resume(tmp_path):
    tokens, embeddings = _data(tmp_path)
    params = {"model": {"hidden_dim": 16, "num_layers": 1, "num_heads": 2, "mlp_ratio": 1, "num_steps": 8},
              "train": {"steps": 90, "batch_size": 4, "warmup_steps": 2, "snapshot_every": 10, "log_every": 5}}
    work, out = tmp_path / "work", tmp_path / "model.safetensors"
    command = [str(TORCHRUN), "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "clipvqd", "diffusion",
               "train", "--mode", "language_free", "--params", json.dumps(params), "--tokens", str(tokens),
               "--embeddings", str(embeddings), "--alpha", "0.5", "--work", str(work), "--out", str(out),
               "--curve", str(tmp_path / "curve.csv"), "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    # First run: SIGKILL torchrun and both workers after the second snapshot.
    log = tmp_path / "killed.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    try:
        while len(list(work.glob("state-*.pt"))) < 2:
            if process.poll() is not None:
                pytest.fail(f"torchrun ended (rc {process.returncode}) before it was killed:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no snapshot within 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
    finally:
        # torchrun starts its workers in sessions of their own, so they are found through /proc and killed
        # with the agent, all at once (what a node failure or a pre-emption does).
        for pid in [process.pid, *_descendants(process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
        time.sleep(0.5)
    assert not out.exists()
    saved = max(int(re.match(r"state-(\d+)\.pt", p.name).group(1)) for p in work.glob("state-*.pt"))
    assert 0 < saved < 90

    # Second run, again 2 processes: it continues from that snapshot and finishes.
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert output.count(f"resuming from the snapshot at step {saved} of 90") == 1, output[-3000:]  # rank 0 only
    meta = load_meta(out)
    assert meta["step"] == 90 and meta["world_size"] == 2
    steps = [int(line.split(",")[0]) for line in (tmp_path / "curve.csv").read_text().splitlines()[1:]]
    assert steps == list(range(5, 91, 5))  # no gap and no repeated rows across the kill


def test_training_rules_launch_torchrun_for_more_than_one_gpu(tmp_path):
    """What the rules run for gpu=2 (a profile's set-resources): torchrun for the diffusion trainer, which
    has DDP; a clear refusal for the tokenizer, which trains in one process."""
    for item in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / item, tmp_path / item)
    for folder in ("workflow", "envs"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "tests" / "configs" / "tiny.yaml", tmp_path / "tiny.yaml")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    plan = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/tiny/models/seed=0/clip-vqdiffusion/alpha=0.5/pretrain.safetensors",
         "-n", "-p", "--cores", "1", "--set-resources", "diffusion_pretrain:gpu=2", "tokenizer_train:gpu=2",
         "--configfile", "tiny.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    commands = {}
    for block in plan.stdout.split("\nrule ")[1:]:
        match = re.search(r"Shell command: (.*)", block)
        if match:
            commands[block.split(":")[0].strip()] = match.group(1)
    pretrain, tokenizer = commands["diffusion_pretrain"], commands["tokenizer_train"]
    assert "torchrun --standalone --nnodes=1 --nproc_per_node=2; else echo python; fi) -m clipvqd diffusion train" in pretrain

    # The launcher prefix, run by bash as the job would (the trainer itself replaced by `--help`).
    launcher = pretrain.split(" -m clipvqd ")[0]
    shown = subprocess.run(["bash", "-c", launcher.replace("$(", "echo $(", 1)], capture_output=True, text=True)
    assert shown.stdout.split() == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    refused = subprocess.run(["bash", "-c", tokenizer.split("; python -m clipvqd")[0]], capture_output=True, text=True)
    assert refused.returncode == 1 and "resources.gpu=2" in refused.stderr and "no DDP" in refused.stderr
