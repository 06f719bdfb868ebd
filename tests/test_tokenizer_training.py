"""Tokenizer training: learning, exact resume, checkpoints, bad input."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from clipvqd.checkpoint import CheckpointMismatch, load_meta
from clipvqd.training import ResumeState
from clipvqd.tokenizer import GumbelVQGAN, load_tokenizer, train_tokenizer
from tokenizer_helpers import TINY, TensorImages, blob_images, tiny_training, one_torch_thread  # noqa: F401 (fixture)


def _curve(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_loss_falls_when_overfitting_a_handful_of_images(tmp_path):
    images = TensorImages(blob_images(4))
    training = tiny_training(max_steps=80, disc_start=10_000, log_every=10, learning_rate=3e-3)
    meta = train_tokenizer(images, TINY, training, tmp_path / "work", tmp_path / "tok.safetensors",
                           tmp_path / "curve.csv", progress=False)
    rows = _curve(tmp_path / "curve.csv")
    assert [int(r["step"]) for r in rows] == list(range(10, 81, 10))
    first, last = float(rows[0]["l1"]), float(rows[-1]["l1"])
    assert last < 0.5 * first, (first, last)
    assert float(rows[-1]["temperature"]) == pytest.approx(0.01, abs=1e-3)
    assert meta["step"] == 80 and meta["perceptual_loss"]["enabled"] is False
    # its own cost, which the report counts (clipvqd.evaluation.compute): 80 steps are not free
    assert meta["cpu_s"] > 0 and meta["elapsed_s"] > 0
    model, _ = load_tokenizer(tmp_path / "tok.safetensors")
    reconstructions = model.decode_codes(model.encode(images.images))
    assert (reconstructions - images.images).abs().mean() < first


@pytest.mark.parametrize("schedule", [{}, {"lr_warmup_steps": 2, "final_lr_fraction": 0.1}],
                         ids=["constant_lr", "warmup_cosine_lr"])
def test_resume_after_a_stop_gives_identical_weights(tmp_path, schedule):
    images = TensorImages(blob_images(8))  # two batches per epoch, so the run crosses epochs
    training = tiny_training(max_steps=6, disc_start=2, log_every=2, **schedule)

    straight = tmp_path / "straight"
    train_tokenizer(images, TINY, training, straight / "work", straight / "tok.safetensors",
                    straight / "curve.csv", seed=3, progress=False)

    resumed = tmp_path / "resumed"
    partial = train_tokenizer(images, TINY, training, resumed / "work", resumed / "tok.safetensors",
                              resumed / "curve.csv", seed=3, progress=False, stop_after_step=3)
    assert partial == {"finished": False, "step": 3, "total_steps": 6}
    assert not (resumed / "tok.safetensors").exists()
    first_call = torch.load(ResumeState(resumed / "work").snapshots()[-1], weights_only=True)["extra"]["cpu_s"]
    torch.manual_seed(12345)  # a new process: the global RNG is wherever it happens to be
    train_tokenizer(images, TINY, training, resumed / "work", resumed / "tok.safetensors",
                    resumed / "curve.csv", seed=3, progress=False)

    a, b = load_file(str(straight / "tok.safetensors")), load_file(str(resumed / "tok.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _curve(straight / "curve.csv") == _curve(resumed / "curve.csv")
    # The discriminators (kept only in the resume state) match as well.
    discs = []
    for run in (straight, resumed):
        state = torch.load(ResumeState(run / "work").snapshots()[-1], weights_only=True)
        discs.append(state["objects"]["discriminator"])
    for key in discs[0]:
        assert torch.equal(discs[0][key], discs[1][key]), key
    assert load_meta(resumed / "tok.safetensors")["step"] == 6
    # the resumed run's cost covers both calls: more than the first call's, as its snapshot recorded it
    assert load_meta(resumed / "tok.safetensors")["cpu_s"] > first_call > 0


def test_different_seed_gives_different_weights(tmp_path):
    images = TensorImages(blob_images(8))
    training = tiny_training(max_steps=2)
    for seed in (0, 1):
        train_tokenizer(images, TINY, training, tmp_path / f"w{seed}", tmp_path / f"t{seed}.safetensors",
                        tmp_path / f"c{seed}.csv", seed=seed, progress=False)
    a, b = (load_file(str(tmp_path / f"t{s}.safetensors")) for s in (0, 1))
    assert not torch.equal(a["decoder.conv_out.weight"], b["decoder.conv_out.weight"])


def test_rerun_after_completion_rewrites_outputs_without_training(tmp_path):
    images = TensorImages(blob_images(8))
    training = tiny_training(max_steps=4)
    args = (images, TINY, training, tmp_path / "work", tmp_path / "tok.safetensors", tmp_path / "curve.csv")
    train_tokenizer(*args, progress=False)
    before = load_file(str(tmp_path / "tok.safetensors"))
    (tmp_path / "tok.safetensors").unlink()
    (tmp_path / "curve.csv").unlink()  # what Snakemake does to the outputs of a failed job
    meta = train_tokenizer(*args, progress=False)
    after = load_file(str(tmp_path / "tok.safetensors"))
    assert meta["step"] == 4 and all(torch.equal(before[k], after[k]) for k in before)
    assert len(_curve(tmp_path / "curve.csv")) == 2


def test_changed_configuration_starts_over_instead_of_loading_stale_state(tmp_path, capsys):
    images = TensorImages(blob_images(8))
    train_tokenizer(images, TINY, tiny_training(max_steps=4), tmp_path / "work", tmp_path / "a.safetensors",
                    tmp_path / "a.csv", progress=False, stop_after_step=2)
    other = dataclasses.replace(TINY, codebook_size=16)
    meta = train_tokenizer(images, other, tiny_training(max_steps=4), tmp_path / "work",
                           tmp_path / "b.safetensors", tmp_path / "b.csv", progress=False)
    assert "starting over" in capsys.readouterr().out
    assert meta["codebook_size"] == 16 and meta["step"] == 4


def test_checkpoint_of_another_configuration_is_refused_naming_the_key(tmp_path):
    images = TensorImages(blob_images(4))
    train_tokenizer(images, TINY, tiny_training(max_steps=1), tmp_path / "work", tmp_path / "tok.safetensors",
                    tmp_path / "curve.csv", progress=False)
    loaded, meta = load_tokenizer(tmp_path / "tok.safetensors")
    assert loaded.config == TINY and meta["model_config"]["codebook_size"] == 32
    other = dataclasses.replace(TINY, codebook_size=64)
    with pytest.raises(CheckpointMismatch, match=r"key 'quantizer\.codebook\.weight' has shape \(32, 16\)"):
        load_tokenizer(tmp_path / "tok.safetensors", expected_config=other)
    with pytest.raises(CheckpointMismatch, match="missing keys"):
        load_tokenizer(tmp_path / "tok.safetensors",
                       expected_config=dataclasses.replace(TINY, num_res_blocks=2))


def test_training_image_of_the_wrong_size_is_named(tmp_path):
    bad = TensorImages(list(blob_images(3)) + [torch.zeros(3, 20, 20)], paths=[f"img{i}.png" for i in range(4)])
    with pytest.raises(ValueError, match=r"img3\.png has shape \(3, 20, 20\)"):
        train_tokenizer(bad, TINY, tiny_training(max_steps=1), tmp_path / "work", tmp_path / "tok.safetensors",
                        tmp_path / "curve.csv", progress=False)


def test_too_small_training_split_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_tokenizer(TensorImages(blob_images(2)), TINY, tiny_training(), tmp_path / "w",
                        tmp_path / "t.safetensors", tmp_path / "c.csv", progress=False)


def test_streaming_loader_matches_preloaded_training(tmp_path):
    images = TensorImages(blob_images(8))
    for preload in (True, False):
        train_tokenizer(images, TINY, tiny_training(max_steps=3, preload=preload), tmp_path / f"w{preload}",
                        tmp_path / f"t{preload}.safetensors", tmp_path / f"c{preload}.csv", progress=False)
    a, b = (load_file(str(tmp_path / f"t{p}.safetensors")) for p in (True, False))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_state_has_no_discriminator_or_lpips_weights():
    keys = GumbelVQGAN(TINY).state_dict().keys()
    assert not any(k.startswith(("discriminator", "perceptual")) for k in keys)
    assert "quantizer.codebook.weight" in keys and "decoder.conv_out.weight" in keys


def test_learning_rate_schedule_warms_up_and_decays_to_its_final_fraction(tmp_path):
    images = TensorImages(blob_images(8))
    training = tiny_training(max_steps=6, disc_weight=0.0, lr_warmup_steps=2, final_lr_fraction=0.25)
    train_tokenizer(images, TINY, training, tmp_path / "work", tmp_path / "tok.safetensors", tmp_path / "curve.csv",
                    progress=False)
    state = torch.load(ResumeState(tmp_path / "work").snapshots()[-1], weights_only=True)["objects"]
    # LambdaLR's last multipliers: warm-up 1/2, 2/2, then cosine from 1 to 0.25 over steps 2..5.
    assert state["lr_schedule"]["last_epoch"] == 6
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(training.learning_rate * 0.25)
    with pytest.raises(ValueError, match="final_lr_fraction"):
        tiny_training(final_lr_fraction=1.5)
