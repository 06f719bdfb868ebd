"""The shared sampling interface (prompts in, PNGs + manifest out) and the diffusion glue to pixels."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from clipvqd.diffusion import DenoiserConfig, NullCondition
from clipvqd.diffusion.generate import SamplingSettings, generate_images
from clipvqd.diffusion.transformer import Denoiser
from clipvqd.manifest import ManifestImages, read_manifest
from clipvqd.samples import SAMPLE_COLUMNS, prompt_rows, read_prompts, sample_plan, write_sample_set
from clipvqd.tokenizer import CodeMapping, GumbelVQGAN, TokenizerConfig

PROMPTS = pd.DataFrame({"prompt_id": ["p0", "p1", "p2"], "prompt": ["a", "b", "c"], "ood": ["0", "0", "1"]})


def test_plan_orders_prompts_then_samples():
    plan = sample_plan(PROMPTS, 2)
    assert list(plan["prompt_id"]) == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert list(plan["sample_index"]) == [0, 1, 0, 1, 0, 1]
    embeddings = torch.arange(3.0).unsqueeze(1)
    assert prompt_rows(embeddings, PROMPTS, plan).squeeze(1).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="stale"):
        prompt_rows(embeddings[:2], PROMPTS, plan)
    with pytest.raises(ValueError, match="samples_per_prompt"):
        sample_plan(PROMPTS, 0)


def test_the_first_prompts_get_sixteen_samples_for_best_of_16():
    plan = sample_plan(PROMPTS, 4, best_of_prompts=2)
    assert plan.groupby("prompt_id").size().to_dict() == {"p0": 16, "p1": 16, "p2": 4}
    assert list(plan["sample_index"][:16]) == list(range(16))  # still prompt order, then sample index
    assert len(sample_plan(PROMPTS, 20, best_of_prompts=3)) == 60  # never fewer than samples_per_prompt
    with pytest.raises(ValueError, match="best_of_prompts"):
        sample_plan(PROMPTS, 4, best_of_prompts=-1)


def test_plans_of_the_alignment_and_distribution_sets_check_their_manifests(tmp_path):
    """The alignment plan (16 samples of the first prompts, samples_per_prompt of the rest) and the
    distribution plan (one sample per row, the caption after the prefix) each accept exactly their rows."""
    from clipvqd.samples import SamplePlan, SampleSetError

    PROMPTS.to_csv(tmp_path / "prompts.csv", index=False)
    alignment = SamplePlan(tmp_path / "prompts.csv", 4, seed=1002, prompt_prefix="a photo of ", best_of_prompts=1)
    rows = sample_plan(PROMPTS.assign(prompt="a photo of " + PROMPTS["prompt"]), 4, best_of_prompts=1)
    manifest = rows.assign(seed=1002)
    alignment.check(manifest, "alignment.csv")
    assert len(manifest) == 16 + 4 + 4
    with pytest.raises(SampleSetError, match=r"alignment.csv holds 12 row\(s\).*has 24; 12 missing row\(s\)"):
        alignment.check(manifest[manifest["sample_index"] < 4], "alignment.csv")  # no best-of-16 draws
    with pytest.raises(SampleSetError, match="seed 1003"):
        alignment.check(manifest.assign(seed=1003), "alignment.csv")  # another training seed's set

    captions = pd.DataFrame({"prompt_id": ["d000000", "d000001"], "prompt": ["red hair", "a hat"], "ood": "0",
                             "path": ["reference/0.png", "reference/1.png"], "sha256": ["0" * 64, "1" * 64]})
    captions.to_csv(tmp_path / "distribution_prompts.csv", index=False)
    distribution = SamplePlan(tmp_path / "distribution_prompts.csv", 1, seed=5, prompt_prefix="a photo of ")
    drawn = pd.DataFrame({"prompt_id": ["d000001", "d000000"], "prompt": ["a photo of a hat", "a photo of red hair"],
                          "sample_index": 0, "seed": 5})
    distribution.check(drawn, "distribution.csv")  # any order
    with pytest.raises(SampleSetError, match="1 missing row"):
        distribution.check(drawn.assign(prompt=["a photo of a hat", "a photo of a cap"]), "distribution.csv")


def test_duplicate_prompt_ids_are_refused(tmp_path):
    PROMPTS.assign(prompt_id=["p0", "p0", "p2"]).to_csv(tmp_path / "prompts.csv", index=False)
    with pytest.raises(ValueError, match="repeats prompt ids \\['p0'\\]"):
        read_prompts(tmp_path / "prompts.csv")


def test_written_sample_set_is_a_verified_manifest(tmp_path):
    plan = sample_plan(PROMPTS, 2)
    images = torch.randint(0, 256, (len(plan), 3, 8, 8), dtype=torch.uint8)
    manifest = tmp_path / "set" / "manifest.csv"
    write_sample_set(images, plan, manifest.parent, manifest, method="paired", variant="default", seed=7,
                     settings={"s": 1.2, "r": 0.85})
    frame = read_manifest(manifest)  # checks every file against its sha256
    assert set(SAMPLE_COLUMNS) | {"s", "r"} <= set(frame.columns)
    assert (frame["seed"] == 7).all() and (frame["method"] == "paired").all()
    loaded = ManifestImages(manifest, resolution=8).all()
    assert torch.equal(((loaded + 1) * 127.5).round().to(torch.uint8), images)
    with pytest.raises(ValueError, match="uint8"):
        write_sample_set(images.float(), plan, tmp_path, tmp_path / "m.csv", method="x", variant="y", seed=0)


def _tiny_models(vocab: int = 6):
    torch.manual_seed(0)
    tokenizer = GumbelVQGAN(TokenizerConfig(resolution=8, channels=8, channel_multipliers=(1, 2), z_channels=4,
                                            embed_dim=4, codebook_size=16, norm_groups=4)).eval()
    denoiser = Denoiser(DenoiserConfig(num_codes=vocab, grid_height=4, grid_width=4, condition_dim=8, hidden_dim=16,
                                       num_layers=1, num_heads=2, mlp_ratio=1, num_steps=6)).eval()
    mapping = CodeMapping(16, torch.tensor([1, 3, 4, 8, 9, 15][:vocab]), torch.ones(16, dtype=torch.long), {})
    return tokenizer, denoiser, NullCondition(8), mapping


def test_generated_images_are_deterministic_per_image_stream():
    tokenizer, denoiser, null, mapping = _tiny_models()
    embeddings = torch.randn(5, 8)
    settings = SamplingSettings(guidance_scale=1.5, truncation_r=0.9, steps=3)
    images = generate_images(denoiser, null, tokenizer, mapping, embeddings, settings, seed=3, batch_size=2,
                             progress=False)
    assert images.shape == (5, 3, 8, 8) and images.dtype == torch.uint8
    # image i depends on (seed, i) only: the first three alone come out identical
    again = generate_images(denoiser, null, tokenizer, mapping, embeddings[:3], settings, seed=3, batch_size=3,
                            progress=False)
    assert torch.equal(images[:3], again)
    unconditional = generate_images(denoiser, null, tokenizer, mapping, embeddings, SamplingSettings(unconditional=True),
                                    seed=3, progress=False)
    assert unconditional.shape == images.shape


def test_mismatched_vocabulary_or_condition_is_named():
    tokenizer, denoiser, null, mapping = _tiny_models()
    _, _, _, other = _tiny_models(vocab=5)
    with pytest.raises(ValueError, match="K=6 codes but the tokenizer's code mapping has 5"):
        generate_images(denoiser, null, tokenizer, other, torch.randn(2, 8), SamplingSettings(), seed=0)
    with pytest.raises(ValueError, match="prompt embeddings have 4 dimensions"):
        generate_images(denoiser, null, tokenizer, mapping, torch.randn(2, 4), SamplingSettings(), seed=0)
