"""The DAG end to end on a tiny config, in a scratch copy of the workflow."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.e2e


def _snakemake(workdir, *args, timeout=900):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    # Targets before --configfile, which would otherwise swallow them as more config files.
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "tiny.yaml"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    for item in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / item, work / item)
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "envs", work / "envs")
    shutil.copy(REPO / "tests" / "configs" / "tiny.yaml", work / "tiny.yaml")
    return work


def test_foundation_stages_run_and_rerun_does_nothing(workdir):
    first = _snakemake(workdir, "foundation")
    assert first.returncode == 0, first.stderr[-4000:]
    results = workdir / "results" / "tiny"
    for path in ("data/train.csv", "data/prompts.csv", "clip/conditioner/model.safetensors",
                 "clip/judge/model.safetensors", "clip/conditioner/metrics.json", "oracle/metrics.json",
                 "embeddings/train_images.safetensors", "embeddings/prompts.safetensors",
                 "embeddings/train_captions.safetensors", "logs/world_generate.log",
                 "benchmarks/clip_train_standin_conditioner.tsv"):
        assert (results / path).is_file(), path
    conditioner = json.loads((results / "clip/conditioner/model.json").read_text())
    judge = json.loads((results / "clip/judge/model.json").read_text())
    assert conditioner["sha256"] != judge["sha256"]
    assert conditioner["source"]["kind"] == "standin"

    # The embedding cache (and everything else) is reused, not recomputed.
    again = _snakemake(workdir, "foundation", "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_unbuilt_stage_fails_loudly_without_fake_outputs(workdir):
    result = _snakemake(workdir, "results/tiny/models/lafite/generator.safetensors")
    assert result.returncode != 0
    log = (workdir / "results/tiny/logs/lafite_train.log").read_text()
    assert "not implemented yet: lafite_train" in log
    assert not (workdir / "results/tiny/models/lafite/generator.safetensors").exists()


def test_changed_clip_invalidates_its_embeddings(workdir):
    """Touching the conditioner's weights makes Snakemake recompute the cache built from them."""
    clip = workdir / "results/tiny/clip/conditioner/model.safetensors"
    os.utime(clip)
    plan = _snakemake(workdir, "foundation", "-n")
    assert "clip_embed" in plan.stdout
