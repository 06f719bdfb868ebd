"""The training core shared by every trainer: streams, EMA, schedules, fingerprints and TrainingRun."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from clipvqd.checkpoint import save_weights
from clipvqd.training import (CorruptResumeState, ExponentialMovingAverage, TrainingRun, derive_seed, generator_for,
                              seeded_global_rng, settings_fingerprint, tensor_sha256, warmup_cosine,
                              without_bookkeeping)

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- seeding ---------------------------------------------------------------------------------------------

def test_derive_seed_is_splitmix64_known_answer():
    # SplitMix64's first output from state 0 is 0xE220A8397B1DCDAF (Steele, Lea & Flood 2014; Vigna's
    # reference splitmix64.c); derive_seed keeps its low 63 bits.
    assert derive_seed(0) == 0xE220A8397B1DCDAF & ((1 << 63) - 1)
    assert derive_seed(3, 1) != derive_seed(1, 3)  # order matters: (seed, stream) is not (stream, seed)
    assert 0 <= derive_seed(-1, 2**70) < 2**63  # any int is folded into 64 bits


def test_generator_for_and_seeded_global_rng():
    a = torch.rand(3, generator=generator_for(5, 2, 7))
    assert torch.equal(a, torch.rand(3, generator=generator_for(5, 2, 7)))
    assert not torch.equal(a, torch.rand(3, generator=generator_for(5, 2, 8)))
    torch.manual_seed(123)
    expected_next = torch.rand(2)
    torch.manual_seed(123)
    with seeded_global_rng(9, 1):
        first = nn.Linear(3, 2).weight.detach().clone()
    assert torch.equal(torch.rand(2), expected_next)  # the caller's global stream is untouched
    with seeded_global_rng(9, 1):
        assert torch.equal(nn.Linear(3, 2).weight, first)  # same seed and stream, same initial weights


# ---- EMA, schedules, fingerprints --------------------------------------------------------------------------

def test_ema_moves_floats_by_one_minus_decay_and_copies_integer_buffers():
    module = nn.BatchNorm1d(2)
    ema = ExponentialMovingAverage(module, decay=0.75)
    with torch.no_grad():
        module.weight.fill_(5.0)  # from 1
    module.num_batches_tracked.fill_(7)
    ema.update(module)
    assert torch.equal(ema.shadow["weight"], torch.full((2,), 2.0))  # 1 + (5 - 1) * 0.25
    assert int(ema.shadow["num_batches_tracked"]) == 7
    restored = ExponentialMovingAverage(nn.BatchNorm1d(2), decay=0.75)
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError, match="does not match"):
        ExponentialMovingAverage(nn.Linear(2, 2), 0.5).load_state_dict(ema.state_dict())


def test_warmup_cosine_known_values():
    # warm-up: (step + 1) / warmup_steps
    assert [warmup_cosine(s, 10, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # then half a cosine from 1 at step 4 to final_fraction at the last step (10): 0.5 + 0.5 cos(pi p)
    assert warmup_cosine(4, 10, 4, 0.2) == 1.0
    assert warmup_cosine(7, 10, 4, 0.2) == pytest.approx(0.2 + 0.8 * 0.5)  # halfway
    assert warmup_cosine(10, 10, 4, 0.2) == pytest.approx(0.2)
    assert warmup_cosine(12, 10, 4, 0.2) == pytest.approx(0.2)  # stays at the floor past the end
    # no warm-up: a plain cosine to zero (the oracle); final_fraction 1 keeps the rate (the fine-tune)
    assert warmup_cosine(0, 8, 0) == 1.0
    assert warmup_cosine(2, 8, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert all(warmup_cosine(s, 8, 2, 1.0) == 1.0 for s in range(1, 9))


def test_fingerprints_ignore_bookkeeping_only():
    settings = {"learning_rate": 0.1, "snapshot_every": 10, "log_every": 5}
    assert without_bookkeeping(settings) == {"learning_rate": 0.1}
    same = settings_fingerprint({"train": without_bookkeeping({**settings, "snapshot_every": 99})})
    assert same == settings_fingerprint({"train": without_bookkeeping(settings)})
    assert settings_fingerprint({"train": {"learning_rate": 0.2}}) != same
    assert tensor_sha256(None) is None
    assert tensor_sha256(torch.arange(3)) == tensor_sha256(torch.arange(3)) != tensor_sha256(torch.arange(1, 4))


# ---- TrainingRun on a toy trainer ----------------------------------------------------------------------------

STEPS = 7


def toy_train(folder: Path, work: Path | None = None, lr: float = 0.1, width: int = 2,
              stop_after_step: int | None = None, progress: bool = False, steps: int = STEPS,
              milestones: dict | None = None) -> dict | None:
    """Regress a linear layer on fresh noise each step; snapshots every 2 steps, a curve row every step."""
    with seeded_global_rng(0, 1):
        model = nn.Linear(width, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    run = TrainingRun("toy", work_dir=work or folder / "work", curve_csv=folder / "curve.csv",
                      curve_fields=["step", "loss", "elapsed_s"], total_steps=steps, snapshot_every=2,
                      settings={"lr": lr}, state={"model": model, "optimizer": optimizer}, progress=progress,
                      stop_after_step=stop_after_step, milestones=milestones,
                      milestone_save=lambda path, record: save_weights(path, model.state_dict(), dict(record)))
    for step in range(run.start(), run.stop_at):
        x = torch.randn(4, width, generator=generator_for(0, 5, step))
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log({"step": step + 1, "loss": round(loss.item(), 6)})
        run.step_done(step + 1, loss=loss)
    if not run.finished:
        run.close()
        return None
    meta = {"step": steps, "elapsed_s": run.elapsed(), "cpu_s": run.cpu_seconds()}
    run.finish(lambda: save_weights(folder / "model.safetensors", model.state_dict(), meta))
    return meta


def curve(folder: Path) -> list[dict[str, str]]:
    with open(folder / "curve.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_stopped_run_resumes_to_the_weights_and_curve_of_an_uninterrupted_one(tmp_path, capsys):
    toy_train(tmp_path / "straight")
    assert toy_train(tmp_path / "resumed", stop_after_step=3) is None
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    assert [r["step"] for r in curve(tmp_path / "resumed")] == ["1", "2", "3"]  # written with the snapshot
    assert sorted(p.name for p in (tmp_path / "resumed" / "work").glob("state-*.pt")) == \
        ["state-000000002.pt", "state-000000003.pt"]
    capsys.readouterr()
    torch.manual_seed(999)  # a new process: the global RNG is wherever it happens to be
    toy_train(tmp_path / "resumed")
    assert "toy: resuming from the snapshot at step 3 of 7" in capsys.readouterr().out
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("straight", "resumed"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    rows = curve(tmp_path / "resumed")
    assert [(r["step"], r["loss"]) for r in rows] == [(r["step"], r["loss"]) for r in curve(tmp_path / "straight")]
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert elapsed == sorted(elapsed)  # the clock continues across the resume
    # A finished run rerun trains nothing and writes the same outputs again.
    (tmp_path / "resumed" / "model.safetensors").unlink()
    toy_train(tmp_path / "resumed")
    assert "resuming from the snapshot at step 7 of 7" in capsys.readouterr().out
    c = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.equal(a[key], c[key]) for key in a)


def test_other_settings_start_over_with_a_message(tmp_path, capsys):
    toy_train(tmp_path / "old", work=tmp_path / "work", stop_after_step=4)
    capsys.readouterr()
    toy_train(tmp_path / "new", work=tmp_path / "work", lr=0.05)
    out = capsys.readouterr().out
    assert f"toy: the resume state in {tmp_path / 'work'} was written by a run with other data or settings; " \
           "starting over" in out
    toy_train(tmp_path / "fresh", lr=0.05)
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("new", "fresh"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_damaged_or_mismatched_snapshots_are_named(tmp_path):
    toy_train(tmp_path, stop_after_step=4)
    newest = tmp_path / "work" / "state-000000004.pt"
    newest.write_bytes(b"truncated")
    with pytest.raises(CorruptResumeState, match=r"state-000000004\.pt is damaged.*state-000000002\.pt is intact"):
        toy_train(tmp_path)
    newest.unlink()
    # The same settings with another model shape (the fingerprint covers only what a trainer declares).
    with pytest.raises(ValueError, match=r"(?s)resume state in .*work does not fit this model .*size mismatch.*delete that folder"):
        toy_train(tmp_path, width=3)


def test_progress_bar_and_argument_checks(tmp_path, capsys):
    toy_train(tmp_path, progress=True)
    assert "toy" in capsys.readouterr().err  # tqdm writes to stderr
    with pytest.raises(ValueError, match="snapshot_every must be >= 1"):
        TrainingRun("bad", work_dir=tmp_path, curve_csv=tmp_path / "c.csv", curve_fields=["step"], total_steps=3,
                    snapshot_every=0, settings={}, state={})


# ---- milestones and CPU time (the quality-versus-compute curve) ---------------------------------------------

def _same(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[key], y[key]) for key in x)


def test_milestone_holds_the_weights_after_its_step_and_survives_a_kill(tmp_path, capsys):
    # Known answer: the weights after step 3 of a 7-step run are the final weights of a 3-step run.
    toy_train(tmp_path / "short", steps=3)
    toy_train(tmp_path / "long", milestones={3: tmp_path / "long" / "at3.safetensors"})
    assert _same(tmp_path / "long" / "at3.safetensors", tmp_path / "short" / "model.safetensors")
    record = json.loads((tmp_path / "long" / "at3.json").read_text())
    assert record["step"] == 3 and record["milestone"] == {"step": 3, "of_steps": STEPS, "fraction": 3 / STEPS}
    assert record["fingerprint"] and record["cpu_s"] > 0
    # Killed after the milestone (step 4), then resumed: the milestone written before the kill is delivered.
    at3 = tmp_path / "killed" / "at3.safetensors"
    assert toy_train(tmp_path / "killed", milestones={3: at3}, stop_after_step=4) is None
    assert not at3.exists()  # delivered only with the final weights, like every output of the job
    toy_train(tmp_path / "killed", milestones={3: at3})
    assert _same(at3, tmp_path / "short" / "model.safetensors")
    # A finished run asked for a milestone it passed without keeping starts over, and then keeps it.
    capsys.readouterr()
    toy_train(tmp_path / "short", steps=3)  # the 3-step run's work folder is at its last step
    late = tmp_path / "late" / "at2.safetensors"
    toy_train(tmp_path / "late", work=tmp_path / "long" / "work", milestones={2: late})
    assert "is past step 2, whose weights were not kept" in capsys.readouterr().out
    assert _same(tmp_path / "late" / "model.safetensors", tmp_path / "long" / "model.safetensors")
    toy_train(tmp_path / "two", steps=2)
    assert _same(late, tmp_path / "two" / "model.safetensors")


def test_milestone_steps_are_checked(tmp_path):
    for steps in ({0: tmp_path / "a"}, {STEPS: tmp_path / "a"}):
        with pytest.raises(ValueError, match=r"milestone steps \[\d+\] are outside \[1, 6\]"):
            toy_train(tmp_path, milestones=steps)


def test_cpu_seconds_add_up_over_a_resume(tmp_path, monkeypatch):
    # Each call's process is said to have used 10 CPU-s: a run resumed once has used 20.
    monkeypatch.setattr("clipvqd.training.run.time.process_time", lambda: 10.0)
    assert toy_train(tmp_path / "straight")["cpu_s"] == 10.0
    toy_train(tmp_path / "resumed", stop_after_step=4)
    assert toy_train(tmp_path / "resumed")["cpu_s"] == 20.0
