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


# ---- one trainer per work folder ------------------------------------------------------------------------


def _holder_pid(work: Path) -> int:
    text = (work / "trainer.lock").read_text()
    return int(text.split()[1])  # "pid N on host, since ..."


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has ended; only its parent has not collected it yet


def test_a_second_trainer_refuses_a_live_ones_work_folder_and_takes_over_a_dead_ones(small_faces, tmp_path):
    work, out = tmp_path / "work", tmp_path / "model.safetensors"
    command = _command("tokenizer", "train", "--params", json.dumps(TOKENIZER), "--train",
                       str(small_faces / "train.csv"), "--work", str(work), "--out", str(out), "--curve",
                       str(tmp_path / "curve.csv"), "--codebook", str(tmp_path / "codebook.json"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(tmp_path / "first.log", "w") as handle:
        first = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while not list(work.glob("state-*.pt")):
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-2000:]
            time.sleep(0.05)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert first.poll() is None, "the first trainer should still be running"
        assert second.returncode != 0
        assert f"work folder {work} is in use by another tokenizer trainer (pid {first.pid} on" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    saved = _snapshot_step(work)
    output = _run(command)  # the lock of the killed trainer is stale: taken over, and training resumes
    assert f"taking over {work} from a trainer that no longer runs (pid {first.pid} on" in output
    assert f"resuming from the snapshot at step {saved} of 400" in output
    assert load_meta(out)["step"] == 400
    assert (work / "trainer.lock").read_text() == ""  # released at the end


# ---- kill -9 of Snakemake: no orphan, and `make run`'s recovery resumes ------------------------------------


def _workflow_copy(tmp_path: Path) -> Path:
    from conftest import copy_workflow

    return copy_workflow(tmp_path / "wf")


def _trainer_pid(folder: Path) -> int:
    """The tokenizer trainer running in `folder` (found from /proc: its command line and working folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"clipvqd" in argv and b"tokenizer" in argv and b"train" in argv and \
                    os.path.realpath(entry / "cwd") == os.path.realpath(folder):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    assert len(found) == 1, found
    return found[0]


def test_killing_snakemake_stops_its_trainer_and_the_rerun_recovers(tmp_path):
    from conftest import REPO

    work = _workflow_copy(tmp_path)
    (work / "overlay.yaml").write_text(json.dumps({
        "run": "killed", "tokenizer": {"train": {"max_steps": 200, "snapshot_every": 5, "log_every": 5}},
        "keep_final_snapshots": False}))
    target = "results/killed/tokenizer/model.safetensors"
    snakemake = [sys.executable, "-m", "snakemake", target, "--cores", "1", "--configfile", "tiny.yaml", "overlay.yaml"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    resume = work / "results" / "killed" / "work" / "tokenizer"
    with open(tmp_path / "first.log", "w") as handle:
        first = subprocess.Popen(snakemake, cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(resume.glob("state-*.pt")):
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.1)
        trainer = _trainer_pid(work)
        assert trainer == _holder_pid(resume) and not _ended(trainer)
    finally:
        first.send_signal(signal.SIGKILL)  # Snakemake only: its job's shell and the trainer are not signalled
        first.wait()
    try:
        deadline = time.monotonic() + 15
        while not _ended(trainer):
            assert time.monotonic() < deadline, f"trainer {trainer} outlived the Snakemake that started it"
            time.sleep(0.2)
    finally:
        if not _ended(trainer):
            os.kill(trainer, signal.SIGKILL)
    log = (work / "results" / "killed" / "logs" / "tokenizer_train.log").read_text()
    assert f"the Snakemake process {first.pid} that started this job has ended" in log
    assert list((work / ".snakemake" / "locks").glob("*.lock")), "kill -9 leaves Snakemake's lock behind"

    # What `make run` does: unlock when no Snakemake of the folder lives, then --rerun-incomplete.
    unlock = subprocess.run([sys.executable, "-m", "clipvqd.stale_lock"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    assert "interrupted and left its lock behind" in unlock.stdout and "unlocked" in unlock.stdout
    saved = _snapshot_step(resume)
    rerun = subprocess.run([*snakemake, "--rerun-incomplete"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    log = (work / "results" / "killed" / "logs" / "tokenizer_train.log").read_text()
    assert f"resuming from the snapshot at step {saved} of 200" in log
    assert load_meta(work / target)["step"] == 200
    # keep_final_snapshots: false kept the work folder through the kill (the rerun resumed from it) and removes
    # it once the weights are written.
    assert not resume.exists()


def test_make_run_recovers_by_itself():
    from conftest import REPO

    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nrun: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "python -m clipvqd.stale_lock" in recipe and "--rerun-incomplete" in recipe


def test_a_live_snakemake_keeps_its_lock(tmp_path):
    """stale_lock never unlocks a folder whose Snakemake is alive: it names the process and touches nothing."""
    from clipvqd.stale_lock import live_snakemake, unlock_if_stale

    lock = tmp_path / ".snakemake" / "locks" / "0.input.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    fake = tmp_path / "bin" / "snakemake"  # a process whose command line runs Snakemake, in that folder
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(120)\n")
    live = subprocess.Popen([sys.executable, str(fake)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while live_snakemake(tmp_path) != [live.pid]:  # until the new process has replaced pytest's image
            assert time.monotonic() < deadline, "the live Snakemake was not seen"
            time.sleep(0.05)
        with pytest.raises(SystemExit, match=rf"another Snakemake \(pid {live.pid}\) is running"):
            unlock_if_stale(tmp_path, snakemake=[sys.executable, "-c", "raise SystemExit('must not run')"])
        assert lock.exists()
    finally:
        live.kill()
        live.wait()
    removed = unlock_if_stale(tmp_path, snakemake=[sys.executable, "-c",
                                                   "import shutil; shutil.rmtree('.snakemake/locks')"])
    assert "unlocked" in removed and not lock.exists()
