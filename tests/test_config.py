"""The config schema: closed objects, types, ranges, defaults; the paper overlays plan a complete DAG."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def _default_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def _snakemake(*args, cwd=REPO):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_default_config_validates_and_gets_defaults():
    config = _default_config()
    validate(config, SCHEMA)
    assert config["data"]["world"]["sizes"]["train"] == 4000
    assert config["clip"]["conditioner"]["standin"]["epochs"] >= 1  # filled from the schema's default
    assert config["sampling"]["samples_per_prompt"] == 16


@pytest.mark.parametrize("mutate, named", [
    (lambda c: c["data"]["world"].__setitem__("resolutoin", 32), "resolutoin"),
    (lambda c: c["clip"]["conditioner"]["standin"].__setitem__("epoch", 3), "epoch"),
    (lambda c: c.__setitem__("seed", "zero"), "zero"),
    (lambda c: c["data"]["world"]["sizes"].__setitem__("train", 3), "3"),
    (lambda c: c["sampling"].__setitem__("truncation_r", [1.5]), "1.5"),
    (lambda c: c["data"]["world"].__setitem__("name", "cats"), "cats"),
])
def test_schema_rejects_and_names_the_key(mutate, named):
    config = copy.deepcopy(_default_config())
    mutate(config)
    with pytest.raises(Exception) as error:
        validate(config, SCHEMA)
    assert named in str(error.value)


def test_typo_stops_snakemake_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  world:\n    resolutoin: 64\n")
    result = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert result.returncode != 0
    assert "resolutoin" in result.stderr + result.stdout
    assert "Job stats" not in result.stdout


def test_cross_key_check_names_the_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  source: ffhq\nclip:\n  judge: {source: pretrained}\nbaselines: {paired: false}\n")
    result = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert result.returncode != 0
    assert "clip.conditioner.source is 'standin'" in result.stderr + result.stdout


def _job_counts(stdout):
    counts = {}
    lines = stdout.split("Job stats:")[1].splitlines()[3:]
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.parametrize("overlay, alphas", [("ffhq", 4), ("coco", 4)])
def test_paper_overlays_plan_the_complete_dag(overlay, alphas):
    result = _snakemake("-n", "--cores", "1", "--configfile", f"configs/{overlay}.yaml")
    assert result.returncode == 0, result.stderr
    counts = _job_counts(result.stdout)
    for stage in ("dataset_download", "dataset_prepare", "clip_get", "clip_embed", "tokenizer_train",
                  "tokenizer_tokenize", "diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_unconditional",
                  "lafite_train", "clip2latent_generator_train", "clip2latent_latent_sample",
                  "clip2latent_prior_train", "sample", "metrics", "report"):
        assert counts.get(stage, 0) >= 1, f"{overlay}: no {stage} job planned"
    assert counts["diffusion_cfg_finetune"] == alphas
    assert counts["clip_get"] == 2
    assert ("diffusion_paired" in counts) == (overlay == "coco")  # FFHQ has no captions
    assert "world_generate" not in counts and "clip_train_standin" not in counts


def test_default_dag_lists_every_stage():
    result = _snakemake("-n", "--cores", "1")
    assert result.returncode == 0, result.stderr
    counts = _job_counts(result.stdout)
    for stage in ("world_generate", "clip_train_standin", "clip_evaluate", "clip_embed", "clip_embed_captions",
                  "oracle_train", "tokenizer_train", "tokenizer_evaluate", "tokenizer_tokenize",
                  "diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_paired", "diffusion_unconditional",
                  "lafite_train", "clip2latent_generator_train", "clip2latent_latent_sample",
                  "clip2latent_prior_train", "sample", "metrics", "report"):
        assert counts.get(stage, 0) >= 1, f"no {stage} job planned"


def test_lint_is_clean():
    result = _snakemake("--lint", "--cores", "1")
    assert "Congratulations" in result.stdout + result.stderr, result.stdout + result.stderr
