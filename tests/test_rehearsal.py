"""The paper-shape rehearsal (configs/rehearsal.yaml): every rule of configs/ffhq.yaml and configs/coco.yaml
runs at the paper's shapes and model sizes, on a handful of locally generated images and a couple of
optimiser steps each, with randomly initialised CLIPs and pretrained-weight files made by
tests/rehearsal_inputs.py. It finds what breaks at 256 px, K = 4096, the 24x512 denoiser, StyleGAN2 at 256 px
and the 512x12 prior before a GPU is rented. Run alone with `pytest -m rehearsal`; nothing it computes is a
result.

Cost (per-job Snakemake benchmarks, 2026-11-29, CPU seconds on the 2-core machine loaded by other work,
load average 5-6, two torch threads per job): a 24x512 denoiser job about 51 (one optimiser step included),
a sampling job of 4 images about 27, two StyleGAN2 steps at 256 px about 143; the FFHQ overlay plans 95 jobs
(42 sample sets, 21 metrics jobs), COCO more. Both together are well over an hour of one core, so `make test` leaves this test out
(pyproject.toml's addopts). Peak memory about 14 GB (a denoiser trainer).

Torch jobs run one at a time (device auto with one `gpu` to give: on a machine without one they compute on
the CPU), because two trainers of the 515M-parameter denoiser with their AdamW state do not fit beside each
other in a CI runner's memory.
CLIPVQD_REHEARSAL_BENCHMARKS=DIR copies each overlay's benchmark files to DIR/<overlay> before the results
are removed."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import copy_workflow
from rehearsal_inputs import write_inputs

pytestmark = pytest.mark.rehearsal


def _command(overlay, inputs, *args):
    return [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--config", "device=auto",
            "--resources", "gpu=1", "--configfile", f"configs/{overlay}.yaml", "configs/rehearsal.yaml",
            str(inputs)]


def _env():
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def _snakemake(workdir, overlay, inputs, *args, timeout=600):
    return subprocess.run(_command(overlay, inputs, *args), cwd=workdir, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _planned(dry_run_output: str) -> Counter:
    """Jobs per rule from the 'Job stats' table of a dry run."""
    table = dry_run_output.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    counts = Counter()
    for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE):
        if rule != "total":
            counts[rule] += int(count)
    return counts


def _executed(run_output: str) -> Counter:
    """Jobs per rule that Snakemake started and finished, from its log."""
    started = dict((jobid, rule) for rule, jobid in re.findall(
        r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", run_output, re.MULTILINE))
    finished = re.findall(r"^Finished jobid: (\d+)", run_output, re.MULTILINE)
    return Counter(started[jobid] for jobid in finished)


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("rehearsal"), extra_folders=("configs",))


@pytest.mark.parametrize("overlay", ["ffhq", "coco"])
def test_paper_overlay_rehearsal_runs_every_planned_rule(workflow_copy, overlay, tmp_path):
    inputs = write_inputs(overlay, tmp_path / "inputs")
    plan = _snakemake(workflow_copy, overlay, inputs, "-n")
    assert plan.returncode == 0, plan.stderr[-4000:]
    planned = _planned(plan.stdout + plan.stderr)
    # The overlay's own plan, not a reduced one: every rule family of the paper setting is in it.
    for rule in ("clip_get", "weights_download", "weights_convert", "dataset_prepare", "tokenizer_train",
                 "tokenizer_evaluate", "tokenizer_tokenize", "clip_embed", "diffusion_pretrain",
                 "diffusion_cfg_finetune", "diffusion_control", "lafite_train", "clip2latent_generator_train",
                 "clip2latent_latent_sample", "clip2latent_prior_train", "sample", "metrics", "report"):
        assert planned[rule] >= 1, (rule, planned)
    assert planned["diffusion_pretrain"] == 4  # every alpha of the sweep

    results = workflow_copy / "results" / f"{overlay}-rehearsal"
    # One uninterrupted run. The overlays' keep_final_snapshots: false removes each trainer's work folder once
    # its weights exist (a denoiser's last snapshot would be 7.7 GB; ten would not fit on a CI runner's disk).
    run = _snakemake(workflow_copy, overlay, inputs, "--keep-going", timeout=4 * 3600)
    log = run.stdout + run.stderr
    if os.environ.get("CLIPVQD_REHEARSAL_BENCHMARKS"):  # where to keep the per-job benchmarks (cost measurements)
        shutil.copytree(results / "benchmarks", Path(os.environ["CLIPVQD_REHEARSAL_BENCHMARKS"]) / overlay,
                        dirs_exist_ok=True)
    assert run.returncode == 0, log[-6000:]
    assert _executed(log) == planned
    assert not [p for p in (results / "work").rglob("*") if p.is_file()], "a trainer's work folder was left behind"
    again = _snakemake(workflow_copy, overlay, inputs, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # The paper's shapes, as the checkpoints record them.
    tokenizer = _sidecar(results / "tokenizer" / "model.safetensors")["model_config"]
    assert (tokenizer["resolution"], tokenizer["codebook_size"], len(tokenizer["channel_multipliers"])) == (256, 4096, 5)
    models = results / "models" / "seed=0"  # the overlays train one seed
    headline = models / "clip-vqdiffusion" / "alpha=0.5" / "cfg.safetensors"
    if overlay == "coco":
        headline = models / "clip-vqdiffusion" / "alpha=0.25" / "cfg.safetensors"
    denoiser = _sidecar(headline)["model_config"]
    assert (denoiser["num_layers"], denoiser["hidden_dim"], denoiser["num_heads"]) == (24, 512, 16)
    assert (denoiser["grid_height"], denoiser["grid_width"], denoiser["condition_dim"]) == (16, 16, 512)
    assert _sidecar(results / "clip" / "conditioner" / "model.safetensors")["model_name"] == "ViT-B-32"

    # The cfg=false ablation samples the language-free model at s = 1 and is measured.
    ablation = [p for p in (results / "samples" / "seed=0" / "clip-vqdiffusion").iterdir() if "cfg=false" in p.name]
    assert len(ablation) == 1 and ",s=1.0," in ablation[0].name, ablation
    assert len((ablation[0] / "alignment" / "manifest.csv").read_text().splitlines()) > 1
    metrics = results / "metrics" / "clip-vqdiffusion" / f"{ablation[0].name}.csv"
    assert len(metrics.read_text().splitlines()) > 1
    assert (workflow_copy / "reports" / f"{overlay}-rehearsal" / "index.html").is_file()
    # About 20 GB of 2 GB denoisers per overlay: gone before the next overlay runs.
    shutil.rmtree(results)
    shutil.rmtree(tmp_path / "inputs")
