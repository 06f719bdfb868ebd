"""The shared diffusion trainer: modes, exact resume after a kill, checkpoints, and 2-process DDP."""

from __future__ import annotations

import csv
import dataclasses
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from clipvqd.diffusion import DenoiserConfig, DiffusionTrainConfig, MaskAndReplace, load_denoiser, sample, train_diffusion
from clipvqd.diffusion.train import _build_model

# T = 5 and importance_min_samples = 1: importance sampling is active within a few steps, so the resume
# test also covers the timestep sampler's saved state.
MODEL = DenoiserConfig(num_codes=16, grid_height=4, grid_width=4, condition_dim=8, hidden_dim=32,
                       num_layers=2, num_heads=4, mlp_ratio=2, num_steps=5)
TRAIN = DiffusionTrainConfig(steps=8, batch_size=8, learning_rate=1e-3, warmup_steps=2, final_lr_fraction=0.5,
                             grad_clip_steps=4, ema_update_every=2, snapshot_every=4, log_every=2,
                             importance_min_samples=1)

DDP_TRAIN = dataclasses.replace(TRAIN, steps=4)


# Tiny tensors: one thread avoids intra-op synchronisation that dominates on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


def make_data(count: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, MODEL.num_codes, (count, 4, 4), generator=generator)
    conditions = torch.randn(count, MODEL.condition_dim, generator=generator)
    return tokens, conditions


def run(tmp: Path, name: str, mode: str = "language_free", train: DiffusionTrainConfig = TRAIN, **kwargs) -> Path:
    tokens, conditions = make_data()
    out = tmp / name / "weights.safetensors"
    train_diffusion(tokens, conditions, MODEL, train, mode, tmp / name / "work", out, tmp / name / "curve.csv",
                    progress=False, seed=3, **kwargs)
    return out


def curve_without_time(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(open(path)))
    for row in rows:
        row.pop("elapsed_s")
    return rows


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, kill_after_first_snapshot):
    straight = run(tmp_path, "straight")
    kill_after_first_snapshot(lambda: run(tmp_path, "resumed"), match="step 4")
    assert not (tmp_path / "resumed" / "weights.safetensors").exists()
    resumed = run(tmp_path, "resumed")

    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert curve_without_time(tmp_path / "straight" / "curve.csv") == curve_without_time(tmp_path / "resumed" / "curve.csv")
    # a finished run rerun is a no-op that rewrites the same outputs
    again = run(tmp_path, "resumed")
    assert all(torch.equal(load_file(str(again))[k], a[k]) for k in a)


def test_without_the_final_snapshot_the_weights_are_the_same(tmp_path):
    straight = run(tmp_path, "straight")
    lean = run(tmp_path, "lean", final_snapshot=False)
    assert sorted(p.name for p in (tmp_path / "straight" / "work").glob("state-*.pt"))[-1] == "state-000000008.pt"
    assert sorted(p.name for p in (tmp_path / "lean" / "work").glob("state-*.pt")) == ["state-000000004.pt"]
    a, b = load_file(str(straight)), load_file(str(lean))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert curve_without_time(tmp_path / "straight" / "curve.csv") == curve_without_time(tmp_path / "lean" / "curve.csv")


def test_checkpoint_loads_with_null_vector_and_meta(tmp_path):
    out = run(tmp_path, "uncond", mode="unconditional")
    model, null, meta = load_denoiser(out)
    assert meta["mode"] == "unconditional" and meta["step"] == TRAIN.steps and meta["weights"] == "ema"
    assert DenoiserConfig.from_dict(meta["model_config"]) == MODEL
    assert DiffusionTrainConfig.from_dict(meta["train_config"]) == TRAIN
    assert "null_condition.vector" in load_file(str(out))
    tokens = sample(model, MaskAndReplace(MODEL.num_codes, MODEL.num_steps), null(2).detach(), num_steps=4)
    assert tokens.shape == (2, 4, 4)
    rows = list(csv.DictReader(open(tmp_path / "uncond" / "curve.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert all(float(r["loss"]) > 0 for r in rows)


def test_cfg_finetune_trains_the_null_vector_from_pretrained_weights(tmp_path):
    pretrained = run(tmp_path, "pretrain")
    finetune = DiffusionTrainConfig(steps=4, batch_size=8, learning_rate=1e-2, warmup_steps=0,
                                    null_condition_probability=0.5, snapshot_every=100, log_every=2,
                                    ema_decay=0.0, ema_update_every=1)
    tuned = run(tmp_path, "finetune", mode="cfg_finetune", train=finetune, init_weights=pretrained)
    before, after = load_file(str(pretrained)), load_file(str(tuned))
    # language-free pretraining leaves the null vector at its initial value; fine-tuning moves it
    initial = _build_model(MODEL, seed=3).null_condition.vector.detach()
    assert torch.equal(before["null_condition.vector"], initial)
    assert not torch.equal(before["null_condition.vector"], after["null_condition.vector"])
    # the paired control's chain mirrors it: its pretraining never drops the caption (the null vector stays
    # where it started), its CFG fine-tune does and learns the null vector
    paired_pretrained = run(tmp_path, "paired", mode="paired", train=finetune)
    assert torch.equal(load_file(str(paired_pretrained))["null_condition.vector"], initial)
    paired_tuned = run(tmp_path, "paired_ft", mode="paired_cfg_finetune", train=finetune, init_weights=paired_pretrained)
    assert not torch.equal(load_file(str(paired_tuned))["null_condition.vector"], initial)
    with pytest.raises(ValueError, match="'paired_cfg_finetune' starts from pretrained weights"):
        run(tmp_path, "paired_no_init", mode="paired_cfg_finetune", train=finetune)
    assert load_denoiser(tuned)[2]["init_weights"] == str(pretrained)
    with pytest.raises(ValueError, match="init_weights"):
        run(tmp_path, "no_init", mode="cfg_finetune", train=finetune)


def test_inputs_are_checked_with_names(tmp_path):
    tokens, conditions = make_data()
    with pytest.raises(ValueError, match="unknown training mode 'language-free'"):
        run(tmp_path, "bad", mode="language-free")
    with pytest.raises(ValueError, match="num_codes=16"):
        train_diffusion(tokens + 16, conditions, MODEL, TRAIN, "paired", tmp_path / "w", tmp_path / "o", tmp_path / "c",
                        progress=False)
    with pytest.raises(ValueError, match="condition_dim"):
        train_diffusion(tokens, conditions[:, :4], MODEL, TRAIN, "paired", tmp_path / "w", tmp_path / "o",
                        tmp_path / "c", progress=False)


def test_snapshots_of_other_data_or_settings_are_never_resumed(tmp_path, capsys):
    """Changed data, steps or model: the old snapshots are discarded and the result equals a fresh run."""
    tokens, conditions = make_data()
    run(tmp_path, "fingerprint")
    work = tmp_path / "fingerprint" / "work"
    for changed_conditions, train, model in ((conditions * 2, dataclasses.replace(TRAIN, steps=12), MODEL),
                                             (conditions, TRAIN, dataclasses.replace(MODEL, hidden_dim=16))):
        capsys.readouterr()
        train_diffusion(tokens, changed_conditions, model, train, "language_free", work, tmp_path / "o2",
                        tmp_path / "c2", progress=False, seed=3)
        assert "other data or settings; starting over" in capsys.readouterr().out
        fresh = tmp_path / f"fresh-{model.hidden_dim}-{train.steps}"
        train_diffusion(tokens, changed_conditions, model, train, "language_free", fresh / "work",
                        fresh / "o.safetensors", fresh / "c.csv", progress=False, seed=3)
        got, expected = load_file(str(tmp_path / "o2")), load_file(str(fresh / "o.safetensors"))
        assert all(torch.equal(got[key], expected[key]) for key in expected)


# -------------------------------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    tokens, conditions = make_data()
    train_diffusion(tokens, conditions, MODEL, DDP_TRAIN, "language_free",
                    Path(root) / "work", Path(root) / "weights.safetensors", Path(root) / "curve.csv",
                    progress=False, seed=3)


def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    # The 1-process reference runs first: the forked workers then inherit warm imports.
    single = run(tmp_path, "single", train=DDP_TRAIN)
    port = _free_port()
    context = mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path / "ddp")), nprocs=2, join=False,
                                 start_method="fork")
    started = time.monotonic()
    while not context.join(timeout=1.0):
        if time.monotonic() - started > 60.0:
            for process in context.processes:
                process.kill()
            pytest.fail("2-process DDP training hung")
    ddp, one = load_file(str(tmp_path / "ddp" / "weights.safetensors")), load_file(str(single))
    # Same global batch and per-sample noise: the runs differ only by floating-point summation order.
    for key in one:
        assert torch.allclose(ddp[key], one[key], atol=1e-5, rtol=1e-4), key
    ddp_curve = curve_without_time(tmp_path / "ddp" / "curve.csv")
    one_curve = curve_without_time(tmp_path / "single" / "curve.csv")
    assert [r["step"] for r in ddp_curve] == [r["step"] for r in one_curve]
    for a, b in zip(ddp_curve, one_curve):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-4)
    assert load_denoiser(tmp_path / "ddp" / "weights.safetensors")[2]["world_size"] == 2


@pytest.mark.parametrize("mode", ["language_free", "cfg_finetune", "paired", "unconditional"])
def test_a_sample_draws_the_same_noise_in_any_batch(mode):
    """Each sample's noise comes from its own (seed, step, position) stream: drawing a batch gives, bit for bit,
    what drawing each of its samples alone gives, in every mode (so the batched arithmetic changes nothing)."""
    from clipvqd.diffusion import TimestepSampler, TrainingMode
    from clipvqd.diffusion.train import _draw_training_batch

    tokens, conditions = make_data()
    x0, embeddings = tokens[:8].reshape(8, -1), conditions[:8]
    schedule = MaskAndReplace(MODEL.num_codes, MODEL.num_steps)
    sampler = TimestepSampler(MODEL.num_steps, min_samples_per_step=1)
    sampler.update(torch.arange(MODEL.num_steps), torch.linspace(1.0, 3.0, MODEL.num_steps))  # non-uniform p(t)
    train = dataclasses.replace(TRAIN, null_condition_probability=0.5)
    positions = [3, 4, 5, 6, 7, 8, 9, 10]

    def draw(rows: slice, where: list[int]):
        return _draw_training_batch(x0[rows], embeddings[rows], where, 7, 3, TrainingMode(mode), schedule, sampler,
                                    train, MODEL.condition_dim)

    batch = draw(slice(0, 8), positions)
    alone = [draw(slice(i, i + 1), [p]) for i, p in enumerate(positions)]
    for index, part in enumerate(batch):
        assert torch.equal(part, torch.cat([single[index] for single in alone])), index
    noised, t, weight, condition, use_null = batch
    assert noised.dtype == torch.int64 and t.dtype == torch.int64 and weight.dtype == torch.float32
    assert condition.dtype == torch.float32 and use_null.dtype == torch.bool
    assert len(set(t.tolist())) > 1
    assert bool(use_null.all()) if mode == "unconditional" else not bool(use_null.all())


@pytest.mark.parametrize("mode, init, refused", [("language_free", False, True), ("paired", False, True),
                                                 ("cfg_finetune", True, False), ("paired_cfg_finetune", True, False),
                                                 ("unconditional", False, False)])
def test_guidance_is_refused_only_for_models_pretrained_without_dropout(tmp_path, mode, init, refused):
    """The sample command checks a denoiser's recorded mode before loading anything else: language-free and
    paired pretraining never train the null vector, so guidance s != 1 is refused for them (s = 1 is not)."""
    from clipvqd.sampling import SamplingError, check_guidance

    quick = DiffusionTrainConfig(steps=2, batch_size=8, warmup_steps=0, snapshot_every=100, log_every=1)
    pretrained = run(tmp_path, "pre", mode="paired" if mode.startswith("paired") else "language_free", train=quick)
    weights = run(tmp_path, mode, mode=mode, train=quick, init_weights=pretrained if init else None)
    meta = load_denoiser(weights)[2]
    assert meta["mode"] == mode
    check_guidance(weights, meta, 1.0)
    if refused:
        with pytest.raises(SamplingError, match=f"pretrained without condition dropout \\(mode {mode}\\)"):
            check_guidance(weights, meta, 1.2)
    else:
        check_guidance(weights, meta, 1.2)
