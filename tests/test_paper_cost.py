"""The paper-scale cost predictor (clipvqd.paper_cost): the dry-run parser, the units of each job from the
resolved config, and the arithmetic of GPU-hours per stage on 1 and N GPUs, against hand-computed answers."""

import json
from pathlib import Path

import pytest

from clipvqd.paper_cost import (Job, Rate, dataset_sizes, find_rate, format_markdown, job_cost, load_rates,
                                parse_dry_run, predict, resolve_config, total_hours)

REPO = Path(__file__).resolve().parents[1]

DRY_RUN = """Building DAG of jobs...
Job stats:
job        count
sample     2
total      2

[Sun Nov 29 05:17:31 2026]
rule diffusion_pretrain:
    output: results/x/models/seed=0/clip-vqdiffusion/alpha=0.5/pretrain.safetensors
    wildcards: seed=0, alpha=0.5
    resources: tmpdir=/tmp, gpu=1
[Sun Nov 29 05:17:31 2026]
rule sample:
    wildcards: seed=0, method=clip-vqdiffusion, variant=alpha=0.5,cfg=true,s=1.0,r=0.85,steps=50,purity=false, set=alignment
[Sun Nov 29 05:17:31 2026]
localrule report:
    wildcards: seed=0
"""


@pytest.fixture(scope="module")
def ffhq():
    return resolve_config([REPO / "config.yaml", REPO / "configs" / "ffhq.yaml"])


def test_parse_dry_run_keeps_commas_inside_a_variant():
    jobs = parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == ["diffusion_pretrain", "sample", "report"]
    assert jobs[1].wildcards == {"seed": "0", "method": "clip-vqdiffusion", "set": "alignment",
                                 "variant": "alpha=0.5,cfg=true,s=1.0,r=0.85,steps=50,purity=false"}


def test_dataset_sizes_of_the_ffhq_overlay(ffhq):
    sizes = dataset_sizes(ffhq, REPO)
    # 64 clip2latent prompts x 16 samples (the 16 best-of prompts already have 16); FFHQ is its own reference.
    assert sizes == {"train": 70_000, "reference": 70_000, "distribution": 70_000, "prompts": 64, "alignment": 1024}


def test_job_units_follow_the_config(ffhq):
    sizes = dataset_sizes(ffhq, REPO)
    assert job_cost(Job("diffusion_cfg_finetune", {}), ffhq, sizes) == [("diffusion_step", 100_000, 8, "100,000 steps")]
    before, after = job_cost(Job("tokenizer_train", {}), ffhq, sizes)
    # 100 epochs x (70000 // 32) steps, the discriminator from step 10000.
    assert (before[1], after[1]) == (10_000, 100 * 2187 - 10_000)
    # A sweep point with s = 1 samples without the null pass; the headline (s 1.2) with it.
    point = job_cost(parse_dry_run(DRY_RUN)[1], ffhq, sizes)
    assert point[0][:2] == ("denoiser_sample_step", 1024 * 50)
    headline = job_cost(Job("sample", {"method": "clip-vqdiffusion", "variant": "default", "set": "distribution"}),
                        ffhq, sizes)
    assert headline[0][:2] == ("denoiser_sample_step_guided", 70_000 * 100)


def test_rates_scale_linearly_to_another_batch():
    rates = {"diffusion_step@32": Rate(0.1, "measured (H200)", 32), "diffusion_step@64": Rate(0.15, "measured (H200)", 64)}
    rate = find_rate(rates, "diffusion_step", 16)
    assert rate.batch == 32
    seconds, basis = rate.per_step(16)
    assert seconds == pytest.approx(0.05) and basis.startswith("derived from batch 32")
    assert find_rate(rates, "diffusion_step", 64).per_step(64) == (0.15, "measured (H200)")


def test_predicted_hours_known_answer(ffhq):
    """Two pretraining jobs (DDP) and two LAFITE-sample jobs (one GPU each), by hand:
    pretraining 300000 steps x (0.2 s at batch 32 -> 0.1 s at 16) = 30000 s = 8.333 h a job, 16.667 h for two;
    sampling 1024 images x 0.5 s = 512 s and 70000 x 0.5 s = 35000 s."""
    sizes = dataset_sizes(ffhq, REPO)
    jobs = [Job("diffusion_pretrain", {"alpha": "0.5"}), Job("diffusion_pretrain", {"alpha": "0.25"}),
            Job("sample", {"method": "lafite", "variant": "default", "set": "alignment"}),
            Job("sample", {"method": "lafite", "variant": "default", "set": "distribution"}),
            Job("dataset_download", {})]
    rates = {"diffusion_step@32": Rate(0.2, "measured", 32), "lafite_image": Rate(0.5, "derived: FLOPs")}
    stages = predict(jobs, ffhq, sizes, rates)
    pretrain, sampling, cpu = stages
    assert pretrain.ddp and pretrain.jobs == 2 and pretrain.gpu_seconds == pytest.approx(60_000)
    assert pretrain.wall_seconds(8) == pytest.approx(7_500)  # ideal DDP
    assert not sampling.ddp and sampling.gpu_seconds == pytest.approx(35_512)
    assert sampling.wall_seconds(8) == pytest.approx(35_000)  # the longest job: one GPU each
    assert cpu.jobs == 1
    gpu_h, low, high = total_hours(stages, 8)
    assert gpu_h == pytest.approx(95_512 / 3600)
    assert low == pytest.approx(35_000 / 3600) and high == pytest.approx(42_500 / 3600)
    table = format_markdown(stages, 8)
    assert "| **total** | 5 |" in table and "26.5" in table


def test_a_missing_rate_is_named_not_guessed(ffhq):
    stages = predict([Job("lafite_train", {})], ffhq, dataset_sizes(ffhq, REPO), {})
    assert stages[0].missing == {"lafite_step"} and stages[0].gpu_seconds == 0
    assert "missing: lafite_step" in format_markdown(stages, 8)


def test_load_rates_later_file_wins(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"rates": {"x": {"seconds": 1.0, "basis": "derived: FLOPs"}}}))
    b.write_text(json.dumps({"rates": {"x": {"seconds": 2.0, "basis": "measured", "batch": 4}}}))
    assert load_rates([a, b])["x"].seconds == 2.0
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="rates"):
        load_rates([tmp_path / "bad.json"])
