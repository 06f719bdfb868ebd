"""The paper-shape rehearsal (configs/rehearsal.yaml): every rule of configs/ffhq.yaml and configs/coco.yaml
runs at the paper's shapes and model sizes, on a handful of locally generated images and a couple of
optimiser steps each, with randomly initialised CLIPs and pretrained-weight files made by
tests/rehearsal_inputs.py. It finds what breaks at 256 px, K = 4096, the 24x512 denoiser, StyleGAN2 at 256 px
and the 512x12 prior before a GPU is rented. Nothing it computes is a result.

Two tests:
- the rule-coverage rehearsal (configs/rehearsal-coverage.yaml layered after it), part of `make test`: one
  point of each sweep, but every rule, control and baseline the full FFHQ rehearsal plans (checked against
  that plan, so a rule added to the overlay without coverage fails here), and on COCO its data preparation
  and the rules the FFHQ overlay does not have (the caption embeddings);
- the full rehearsal of both overlays, every sweep point: `pytest -m rehearsal` only.

Cost (per-job Snakemake benchmarks, 2026-11-29, CPU seconds on the 2-core machine loaded by other work,
load average 5-6, one torch thread per job): a 24x512 denoiser job about 51 (one optimiser step included),
a sampling job of 4 images about 27, two StyleGAN2 steps at 256 px about 143; the FFHQ overlay plans 95 jobs
(42 sample sets, 21 metrics jobs), COCO more. Both together are well over an hour of one core, so `make test`
leaves the full rehearsal out (pyproject.toml's addopts). Peak memory about 14 GB (a denoiser trainer).
The coverage rehearsal (FFHQ: 41 jobs, 10 sample sets, 5 metrics jobs; COCO: 19 jobs, its paired control among
them), its torch jobs on every core: 1334 CPU-seconds (user + system of the whole pytest call,
/usr/bin/time) and 15 minutes wall on the idle 2-core machine (2026-11-29), the FFHQ test 664 s of it, the
COCO one 220 s; peak memory 15.1 GB, peak disk 13.7 GB. Snakemake's own
benchmark files undercount it (their cpu_time is the last sample of a job's CPU time, taken every 0.5 s for
the first 15 s and every 30 s after: in an earlier one-thread run, 628 CPU-seconds summed over the FFHQ jobs
that have one, while their wall times (`s`) summed to 1063 s).

Torch jobs run one at a time (device auto with one `gpu` to give: on a machine without one they compute on
the CPU), because two trainers of the 515M-parameter denoiser with their AdamW state do not fit beside each
other in a CI runner's memory.
CLIPVQD_REHEARSAL_BENCHMARKS=DIR copies each run's benchmark files to DIR/<overlay> (DIR/<overlay>-coverage)
before the results are removed."""

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

# The overlay the coverage run adds after configs/rehearsal.yaml; the rules of data preparation, defined once
# per data.source (workflow/rules/data.smk), which run other code on COCO than on FFHQ under the same name.
COVERAGE = "configs/rehearsal-coverage.yaml"
SOURCE_RULES = {"dataset_prepare"}


def _command(overlay, inputs, *args, coverage=False):
    configs = [f"configs/{overlay}.yaml", "configs/rehearsal.yaml", *([COVERAGE] if coverage else []), str(inputs)]
    return [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--config", "device=auto",
            "--resources", "gpu=1", "--configfile", *configs]


def _env():
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def _snakemake(workdir, overlay, inputs, *args, coverage=False, timeout=600):
    return subprocess.run(_command(overlay, inputs, *args, coverage=coverage), cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _plan(workdir, overlay, inputs, *args, coverage=False) -> str:
    """The log of a dry run (it must succeed); `args`: its targets and options (--forceall: every job of the
    DAG, whatever results the folder already holds)."""
    plan = _snakemake(workdir, overlay, inputs, "-n", *args, coverage=coverage)
    assert plan.returncode == 0, plan.stderr[-4000:]
    return plan.stdout + plan.stderr


def _planned(dry_run_output: str) -> Counter:
    """Jobs per rule from the 'Job stats' table of a dry run."""
    table = dry_run_output.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    counts = Counter()
    for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE):
        if rule != "total":
            counts[rule] += int(count)
    return counts


JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", re.MULTILINE)


def _executed(run_output: str) -> Counter:
    """Jobs per rule that Snakemake started and finished, from its log."""
    started = {re.search(r"^    jobid: (\d+)$", body, re.MULTILINE)[1]: rule for rule, body in JOB.findall(run_output)}
    finished = re.findall(r"^Finished jobid: (\d+)", run_output, re.MULTILINE)
    return Counter(started[jobid] for jobid in finished)


def _jobs(log: str):
    """(rule, method or control, body) of every job a Snakemake log shows; the method or control is None for
    a rule without one. The branches that run other code (the controls, the baselines) are told apart, the
    sweep points (variant, alpha, seed, set), which run the same code, are not."""
    for rule, body in JOB.findall(log):
        branch = re.search(r"^    wildcards: .*?\b(?:method|control)=([\w-]+)", body, re.MULTILINE)
        yield rule, branch[1] if branch else None, body


def _branches(log: str) -> set[tuple[str, str | None]]:
    """(rule, method or control) of every job a Snakemake log shows."""
    return {(rule, branch) for rule, branch, _ in _jobs(log)}


def _outputs(log: str, branches: set[tuple[str, str | None]]) -> list[str]:
    """The output files of every job of a Snakemake log whose (rule, method or control) is in `branches`."""
    outputs = []
    for rule, branch, body in _jobs(log):
        if (rule, branch) in branches:
            outputs += re.search(r"^    output: (.*)$", body, re.MULTILINE)[1].split(", ")
    return outputs


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def _run(workdir, overlay, inputs, planned, *targets, coverage=False, timeout):
    """One uninterrupted run that executes exactly the `planned` jobs per rule, keeps its benchmarks where
    CLIPVQD_REHEARSAL_BENCHMARKS says, leaves no trainer's work folder and nothing to do after it; its log.
    The overlays' keep_final_snapshots: false removes each trainer's work folder once its weights exist (a
    denoiser's last snapshot would be 7.7 GB; ten would not fit on a CI runner's disk)."""
    results = workdir / "results" / f"{overlay}-rehearsal"
    run = _snakemake(workdir, overlay, inputs, "--keep-going", *targets, coverage=coverage, timeout=timeout)
    log = run.stdout + run.stderr
    if os.environ.get("CLIPVQD_REHEARSAL_BENCHMARKS"):  # where to keep the per-job benchmarks (cost measurements)
        name = f"{overlay}-coverage" if coverage else overlay
        shutil.copytree(results / "benchmarks", Path(os.environ["CLIPVQD_REHEARSAL_BENCHMARKS"]) / name,
                        dirs_exist_ok=True)
    assert run.returncode == 0, log[-6000:]
    assert _executed(log) == planned
    cache = results / "work" / "feature-cache"  # the metrics jobs' Inception and CLIP features, kept on purpose
    left = [p for p in (results / "work").rglob("*") if p.is_file() and cache not in p.parents]
    assert not left, f"a trainer's work folder was left behind: {left[:5]}"
    assert "Nothing to be done" in _plan(workdir, overlay, inputs, *targets, coverage=coverage)
    return log


def _check_paper_shapes(results: Path, headline_alpha: float):
    """The paper's shapes, as the checkpoints record them."""
    tokenizer = _sidecar(results / "tokenizer" / "model.safetensors")["model_config"]
    assert (tokenizer["resolution"], tokenizer["codebook_size"], len(tokenizer["channel_multipliers"])) == (256, 4096, 5)
    models = results / "models" / "seed=0"  # the overlays train one seed
    denoiser = _sidecar(models / "clip-vqdiffusion" / f"alpha={headline_alpha}" / "cfg.safetensors")["model_config"]
    assert (denoiser["num_layers"], denoiser["hidden_dim"], denoiser["num_heads"]) == (24, 512, 16)
    assert (denoiser["grid_height"], denoiser["grid_width"], denoiser["condition_dim"]) == (16, 16, 512)
    assert _sidecar(results / "clip" / "conditioner" / "model.safetensors")["model_name"] == "ViT-B-32"


def _check_ablation(results: Path):
    """The cfg=false ablation samples the language-free model at s = 1 and is measured."""
    ablation = [p for p in (results / "samples" / "seed=0" / "clip-vqdiffusion").iterdir() if "cfg=false" in p.name]
    assert len(ablation) == 1 and ",s=1.0," in ablation[0].name, ablation
    assert len((ablation[0] / "alignment" / "manifest.csv").read_text().splitlines()) > 1
    metrics = results / "metrics" / "clip-vqdiffusion" / f"{ablation[0].name}.csv"
    assert len(metrics.read_text().splitlines()) > 1


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("rehearsal"), extra_folders=("configs",))


@pytest.fixture(scope="module")
def ffhq_inputs(tmp_path_factory):
    """The FFHQ rehearsal's inputs (2.4 GB of random CLIP weights among them), removed after the module."""
    folder = tmp_path_factory.mktemp("ffhq-inputs")
    yield write_inputs("ffhq", folder)
    shutil.rmtree(folder)


def test_coverage_rehearsal_runs_every_rule_and_branch_of_the_ffhq_overlay(workflow_copy, ffhq_inputs):
    """configs/rehearsal-coverage.yaml runs every rule, the controls and the baselines the full FFHQ rehearsal
    plans, each job as its own plan says, at the paper's shapes."""
    full = _plan(workflow_copy, "ffhq", ffhq_inputs, "--forceall")
    plan = _plan(workflow_copy, "ffhq", ffhq_inputs, coverage=True)
    # Checked before any compute: a rule or branch the overlay gains must be covered here too.
    assert set(_planned(plan)) == set(_planned(full))
    assert _branches(plan) == _branches(full), _branches(full) ^ _branches(plan)
    assert _planned(plan)["diffusion_pretrain"] == _planned(plan)["diffusion_cfg_finetune"] == 1

    results = workflow_copy / "results" / "ffhq-rehearsal"
    _run(workflow_copy, "ffhq", ffhq_inputs, _planned(plan), coverage=True, timeout=2 * 3600)
    _check_paper_shapes(results, headline_alpha=0.5)
    _check_ablation(results)
    assert (workflow_copy / "reports" / "ffhq-rehearsal" / "index.html").is_file()
    shutil.rmtree(results)  # four 2 GB denoisers


def test_coverage_rehearsal_runs_what_only_the_coco_overlay_has(workflow_copy, ffhq_inputs, tmp_path):
    """On COCO: its own data preparation and every rule and (rule, method) branch the full FFHQ rehearsal does
    not plan (the caption embeddings; the paired control, its sample sets and metrics), each job as planned.
    With the FFHQ coverage run, every rule and branch the full COCO rehearsal plans has run at the paper's
    shapes; only COCO's other sweep values (the numbers its sample jobs pass) are left to `-m rehearsal`."""
    inputs = write_inputs("coco", tmp_path / "inputs")
    coco = _plan(workflow_copy, "coco", inputs, "--forceall")
    ffhq = _plan(workflow_copy, "ffhq", ffhq_inputs, "--forceall")
    rules = set(_planned(coco)) - set(_planned(ffhq))
    assert "clip_embed_captions" in rules, rules
    only_coco = {b for b in _branches(coco) if b[0] in rules | SOURCE_RULES or b not in _branches(ffhq)}
    assert ("diffusion_control", "paired") in only_coco, only_coco
    targets = _outputs(_plan(workflow_copy, "coco", inputs, "--forceall", coverage=True), only_coco)
    plan = _plan(workflow_copy, "coco", inputs, *targets, coverage=True)
    # Checked before any compute: every rule and branch of the full COCO plan runs here or in the FFHQ run.
    assert _branches(coco) <= _branches(plan) | _branches(ffhq), _branches(coco) - _branches(plan) - _branches(ffhq)
    assert set(_planned(coco)) <= set(_planned(plan)) | set(_planned(ffhq))

    _run(workflow_copy, "coco", inputs, _planned(plan), *targets, coverage=True, timeout=3600)
    shutil.rmtree(workflow_copy / "results" / "coco-rehearsal")
    shutil.rmtree(tmp_path / "inputs")


@pytest.mark.rehearsal
@pytest.mark.parametrize("overlay", ["ffhq", "coco"])
def test_paper_overlay_rehearsal_runs_every_planned_rule(workflow_copy, overlay, tmp_path):
    inputs = write_inputs(overlay, tmp_path / "inputs")
    planned = _planned(_plan(workflow_copy, overlay, inputs))
    # The overlay's own plan, not a reduced one: every rule family of the paper setting is in it.
    for rule in ("clip_get", "weights_download", "weights_convert", "dataset_prepare", "tokenizer_train",
                 "tokenizer_evaluate", "tokenizer_tokenize", "clip_embed", "diffusion_pretrain",
                 "diffusion_cfg_finetune", "diffusion_control", "lafite_train", "clip2latent_generator_train",
                 "clip2latent_latent_sample", "clip2latent_prior_train", "sample", "metrics", "report"):
        assert planned[rule] >= 1, (rule, planned)
    assert planned["diffusion_pretrain"] == 4  # every alpha of the sweep

    results = workflow_copy / "results" / f"{overlay}-rehearsal"
    _run(workflow_copy, overlay, inputs, planned, timeout=4 * 3600)
    _check_paper_shapes(results, headline_alpha=0.25 if overlay == "coco" else 0.5)
    _check_ablation(results)
    assert (workflow_copy / "reports" / f"{overlay}-rehearsal" / "index.html").is_file()
    # About 20 GB of 2 GB denoisers per overlay: gone before the next overlay runs.
    shutil.rmtree(results)
    shutil.rmtree(tmp_path / "inputs")
