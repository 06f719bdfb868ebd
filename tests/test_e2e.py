"""The DAG end to end on a tiny config, in a scratch copy of the workflow (its package included: the rules
run the workflow's own source)."""

import json
import os
import re
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow
from test_report import chromium_page  # noqa: F401 (the headless Chromium fixture)

pytestmark = pytest.mark.e2e


def _snakemake(workdir, *args, timeout=900, configfiles=("tiny.yaml",)):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    # Targets before --configfile, which would otherwise swallow them as more config files.
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", *configfiles],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("e2e"))


def _job_times(output: str) -> list[tuple[str, datetime, datetime]]:
    """(rule, start, end) of every job Snakemake ran, from its log (one-second resolution)."""
    stamp = r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$"
    started, jobs = {}, []
    for when, rule, jobid in re.findall(stamp + r"\n(?:local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", output,
                                        re.MULTILINE):
        started[jobid] = (rule, datetime.strptime(when, "%a %b %d %H:%M:%S %Y"))
    for when, jobid in re.findall(stamp + r"\nFinished jobid: (\d+)", output, re.MULTILINE):
        rule, start = started[jobid]
        jobs.append((rule, start, datetime.strptime(when, "%a %b %d %H:%M:%S %Y")))
    return jobs


def test_foundation_stages_run_and_rerun_does_nothing(workdir):
    # device auto (here: no GPU, so the jobs compute on CPU) makes every GPU-capable rule ask for one GPU;
    # with one GPU to give, no two of them may run at once, while the second core still takes other work.
    first = _snakemake(workdir, "foundation", "--config", "device=auto", "--resources", "gpu=1")
    assert first.returncode == 0, first.stderr[-4000:]
    gpu_jobs = sorted((start, end, rule) for rule, start, end in _job_times(first.stderr)
                      if rule in ("clip_train_standin", "clip_embed", "clip_embed_captions"))
    assert len(gpu_jobs) == 4, first.stderr[-4000:]
    for (_, end, rule), (start, _, later) in zip(gpu_jobs, gpu_jobs[1:]):
        assert start >= end, f"{later} started at {start} while {rule} ran until {end}"
    results = workdir / "results" / "tiny"
    for path in ("data/train.csv", "data/prompts.csv", "clip/conditioner/model.safetensors",
                 "clip/judge/model.safetensors", "clip/conditioner/metrics.json", "oracle/metrics.json",
                 "embeddings/train_images.safetensors", "embeddings/prompts.safetensors",
                 "embeddings/distribution_prompts.safetensors", "data/validation_prompts.csv",
                 "embeddings/train_captions.safetensors", "logs/world_generate.log",
                 "benchmarks/clip_train_standin_conditioner.tsv"):
        assert (results / path).is_file(), path
    conditioner = json.loads((results / "clip/conditioner/model.json").read_text())
    judge = json.loads((results / "clip/judge/model.json").read_text())
    assert conditioner["weights_sha256"] != judge["weights_sha256"]
    assert conditioner["source"]["kind"] == "standin"

    # The embedding cache (and everything else) is reused, not recomputed; back on device cpu too (the device
    # is not a rerun trigger).
    again = _snakemake(workdir, "foundation", "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_whole_dag_runs_to_the_report_and_rerun_does_nothing(workdir):
    first = _snakemake(workdir)
    assert first.returncode == 0, first.stderr[-4000:]
    results, report = workdir / "results" / "tiny", workdir / "reports" / "tiny"
    tokenizer = json.loads((results / "tokenizer/metrics.json").read_text())
    assert tokenizer["attribute_oracle"]["ratio"] > 0 and tokenizer["codebook"]["vocab_size_after_compaction"] >= 1
    reference = (results / "data" / "reference.csv").read_text().splitlines()
    for method in ("clip-vqdiffusion", "paired", "unconditional", "lafite", "clip2latent"):
        folder = results / "samples" / "seed=0" / method / "default"
        samples = (folder / "alignment" / "manifest.csv").read_text().splitlines()
        # 4 in-distribution + 2 OOD prompts, 2 samples each, and 16 of the first prompt (best-of-16)
        assert len(samples) == 1 + 2 * 5 + 16, method
        distribution = (folder / "distribution" / "manifest.csv").read_text().splitlines()
        assert len(distribution) == len(reference), method  # one sample per reference image
    import pandas as pd

    metrics = pd.read_csv(report / "metrics.csv")
    for method in ("clip-vqdiffusion", "paired", "unconditional", "lafite", "clip2latent"):
        rows = metrics[(metrics["method"] == method) & (metrics["variant"] == "default")].set_index("metric")
        for metric in ("fid", "kid", "precision", "recall", "cmmd"):  # on the distribution set: n is its size
            assert rows.at[metric, "n"] == len(reference) - 1, (method, metric)
        alignment = rows.loc[["clipscore_best16", "clipscore_mean", "clipscore_judge_mean", "attr_acc", "attr_acc_ood",
                              "within_prompt_diversity"]]
        assert alignment["ci_low"].notna().all() and alignment["ci_high"].notna().all(), method
        assert rows.at["within_prompt_diversity", "n"] == 4 * 2, method  # in-distribution prompts x 2 samples
    assert len(pd.read_csv(report / "metrics_by_seed.csv")) == len(metrics)
    assert set(pd.read_csv(report / "significance.csv")["method"]) == {"paired", "unconditional", "lafite",
                                                                       "clip2latent"}
    protocol = json.loads((report / "protocol.json").read_text())
    assert set(protocol["design"]["sets"]) == {"alignment", "distribution"}
    assert protocol["design"]["judge_split"]["disjoint"] is True
    assert protocol["design"]["bootstrap"]["replicates"] == 50
    # every method's training cost, from its jobs' benchmark files, sidecars and weights (issue: compute in the open)
    cost = protocol["design"]["training_cost"]
    assert set(cost) == {"clip-vqdiffusion", "paired", "unconditional", "lafite", "clip2latent"}
    assert all(c["cpu_s"] > 0 and c["examples"] > 0 and c["parameters"] > 0 for c in cost.values())
    assert [s["stage"] for s in cost["paired"]["stages"]] == ["tokenizer", "pretrain", "fine-tune"]
    assert cost["paired"]["steps"] == cost["clip-vqdiffusion"]["steps"]  # matched controls
    # every trainer's CPU-seconds are its own record; only clip2latent's pair sampling has none (benchmark file)
    sources = {(m, s["stage"]): s["cpu_source"] for m, c in cost.items() for s in c["stages"]}
    assert {key for key, source in sources.items() if source != "sidecar"} == {("clip2latent", "latent pairs")}
    assert "training CPU-s" in (report / "index.html").read_text()
    ratios = re.findall(r'class="budget-ratio"[^>]*>\(([\d.]+)×\)', (report / "index.html").read_text())
    assert len(ratios) == 4  # every method but CLIP-VQDiffusion, against whose training CPU-seconds it is
    assert "<img" in (report / "index.html").read_text()
    assert 'src="figures/within_prompt_diversity.png"' in (report / "index.html").read_text()
    # The machine-speed calibration, measured by its own job at the start and recorded by the report.
    speed = json.loads((results / "calibration.json").read_text())
    assert speed["seconds"] > 0 and speed["cpu_seconds"] > 0
    assert protocol["design"]["machine_speed"]["this_run"] == speed
    assert f"This machine: calibration {speed['cpu_seconds']:.2f} CPU-s" in (report / "index.html").read_text()
    assert any(e["kind"] == "within_prompt_diversity" for e in protocol["entries"].values())
    for log in ("tokenizer_train", "seed=0/diffusion_pretrain_alpha=0.5", "seed=0/diffusion_cfg_finetune_alpha=0.5",
                "seed=0/diffusion_paired_pretrain", "seed=0/diffusion_paired_finetune",
                "seed=0/diffusion_unconditional_finetune", "seed=0/alignment/sample_clip-vqdiffusion_default", "seed=0/lafite_train",
                "seed=0/distribution/sample_lafite_default", "seed=0/clip2latent_generator_train",
                "seed=0/clip2latent_latent_sample", "seed=0/clip2latent_prior_train",
                "seed=0/alignment/sample_clip2latent_default", "oracle_calibrate"):
        assert (results / "logs" / f"{log}.log").stat().st_size > 0, log

    again = _snakemake(workdir, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    # The foundation was built with device auto, the rest with cpu: nothing reran, and moving the finished
    # run to a GPU (device cuda, or auto) would retrain nothing either.
    assert not {"world_generate", "clip_train_standin", "clip_embed"} & {r for r, _, _ in _job_times(first.stderr)}
    for device in ("auto", "cuda"):
        moved = _snakemake(workdir, "-n", "--config", f"device={device}")
        assert moved.returncode == 0 and "Nothing to be done" in moved.stdout + moved.stderr, moved.stdout[-3000:]


def test_new_sweep_value_runs_only_its_branch(workdir):
    """Adding a guidance scale to the sweep plans one sample + one metrics job for it, and the report."""
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["sampling"]["guidance_scale"] = [1.2, 2.0]
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "sweep.yaml"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = {}
    for line in plan.stdout.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        jobs[parts[0]] = int(parts[1])
    # s=2.0 for clip-vqdiffusion and for paired (the unconditional control has no guidance), both sets each
    assert jobs == {"sample": 4, "metrics": 2, "report": 1, "all": 1, "total": 8}


def test_clip2latent_chain_records_its_provenance(workdir):
    """The prior names the pairs, generator and CLIP it was trained from; the generator is unconditional."""
    from clipvqd.hashing import sha256_file

    models = workdir / "results/tiny/models/seed=0/clip2latent"
    generator = json.loads((models / "generator.json").read_text())
    prior = json.loads((models / "prior.json").read_text())
    assert generator["conditional"] is False and generator["step"] == 4
    assert prior["generator_sha256"] == sha256_file(models / "generator.safetensors")
    assert prior["pairs_sha256"] == sha256_file(models / "latent_pairs.safetensors")
    assert prior["clip_sha256"] == sha256_file(workdir / "results/tiny/clip/conditioner/model.safetensors")
    samples = (workdir / "results/tiny/samples/seed=0/clip2latent/default/alignment/manifest.csv").read_text()
    assert ",clip2latent,default," in samples


def test_changed_clip_invalidates_its_embeddings(workdir):
    """Touching the conditioner's weights makes Snakemake recompute the cache built from them."""
    clip = workdir / "results/tiny/clip/conditioner/model.safetensors"
    os.utime(clip)
    plan = _snakemake(workdir, "foundation", "-n")
    assert "clip_embed" in plan.stdout


def test_snakemake_report_zip_holds_the_whole_comparison_report(workdir, chromium_page, tmp_path):
    """`snakemake --report report.zip` carries the comparison report with every file its page links to (the
    stylesheet, figures, sample grids), so the page opened from the unzipped bundle loads completely."""
    bundled = _snakemake(workdir, "--report", "snakemake-report.zip")
    assert bundled.returncode == 0, bundled.stderr[-3000:]
    with zipfile.ZipFile(workdir / "snakemake-report.zip") as bundle:
        bundle.extractall(tmp_path / "unzipped")
    pages = [page for page in (tmp_path / "unzipped").rglob("index.html") if (page.parent / "report.css").is_file()]
    assert len(pages) == 1, sorted(str(p) for p in (tmp_path / "unzipped").rglob("*"))[:50]
    chromium_page.load(pages[0].as_uri())
    images = chromium_page.image_states()
    assert len(images) >= 10, images  # sample grids of five methods, training curves, run times
    broken = [image["src"] for image in images if not (image["complete"] and image["width"] > 0)]
    assert not broken, f"images missing from the bundle: {broken}"
    assert chromium_page.problems() == []  # a missing stylesheet would be a failed load
    # ... and the stylesheet applies (report.css paints the page #fbfcfd; a browser's default is transparent).
    background = chromium_page.call("Runtime.evaluate", returnByValue=True,
                                    expression="getComputedStyle(document.body).backgroundColor")
    assert background["result"]["value"] == "rgb(251, 252, 253)", background


def test_compute_curve_points_are_kept_sampled_scored_and_plotted(workdir, tmp_path):
    """The overlay evaluation.compute_curve on the tiny run (a copy of the finished one): each method's snapshot at
    half its budget is kept by its trainer, its second stages run for half their steps, it is sampled and scored
    like the headline, and the report draws and tabulates the points against their recorded CPU seconds."""
    import shutil

    import pandas as pd

    curved = tmp_path / "curved"
    shutil.copytree(workdir, curved, symlinks=True)
    config = yaml.safe_load((curved / "tiny.yaml").read_text())
    config["evaluation"]["compute_curve"] = {"fractions": [0.5]}
    (curved / "tiny.yaml").write_text(yaml.safe_dump(config))
    run = _snakemake(curved, timeout=2400)  # run alone (-k), it builds the whole tiny DAG first
    assert run.returncode == 0, run.stderr[-4000:]
    models, report = curved / "results/tiny/models/seed=0", curved / "reports/tiny"
    # The snapshot of each first stage after half its steps (pretrain 6, GANs 4), with its cost so far.
    for path, step in (("clip-vqdiffusion/alpha=0.5/budget=0.5/pretrain", 3), ("paired/budget=0.5/pretrain", 3),
                       ("lafite/budget=0.5/generator", 2), ("clip2latent/budget=0.5/generator", 2)):
        record = json.loads((models / f"{path}.json").read_text())
        final = json.loads((models / path.replace("budget=0.5/", "")).with_suffix(".json").read_text())
        assert record["step"] == step and record["milestone"]["of_steps"] == 2 * step, path
        assert 0 < record["cpu_s"] < final["cpu_s"], path
        assert record["fingerprint"] == final["fingerprint"], path  # the same run as the headline model
    # Second stages for half their steps (fine-tune 4, prior 4), started from the snapshot.
    cfg = json.loads((models / "clip-vqdiffusion/alpha=0.5/budget=0.5/cfg.json").read_text())
    assert cfg["step"] == 2 and cfg["init_weights"].endswith("budget=0.5/pretrain.safetensors")
    assert json.loads((models / "clip2latent/budget=0.5/prior.json").read_text())["step"] == 2
    samples = curved / "results/tiny/samples/seed=0/lafite/budget=0.5/alignment/manifest.csv"
    headline = samples.parents[2] / "default" / "alignment" / "manifest.csv"
    assert len(samples.read_text().splitlines()) == len(headline.read_text().splitlines())  # the same plan
    points = pd.read_csv(report / "compute_curve.csv")
    assert sorted(points.groupby("method").size().items()) == [(m, 2) for m in sorted(
        ("clip-vqdiffusion", "paired", "unconditional", "lafite", "clip2latent"))]
    # Optimiser steps of the chain: tokenizer 12 (diffusion methods), pretrain 6 and fine-tune 4, GANs 4, prior 4.
    steps = {"clip-vqdiffusion": (17, 22), "paired": (17, 22), "unconditional": (17, 22), "lafite": (2, 4),
             "clip2latent": (4, 8)}
    for method, line in points.groupby("method"):
        half, whole = line.sort_values("fraction").to_dict("records")
        assert half["fraction"] == 0.5 and whole["fraction"] == 1.0
        assert (half["steps"], whole["steps"]) == steps[method]
        # Here each job's start (imports, data) outweighs its few steps: a second stage run for half the steps
        # can cost as much as the headline's; a snapshot of one run (LAFITE) always costs less than its end.
        assert half["cpu_s"] > 0 and (half["cpu_s"] < whole["cpu_s"] or method != "lafite"), method
        assert line[["attr_acc", "clipscore_judge_mean", "cmmd"]].notna().all().all(), method
    assert (report / "figures/compute-curve.png").stat().st_size > 0
    html = (report / "index.html").read_text()
    assert "Quality versus training compute" in html and "compute-curve.png" in html
    protocol = json.loads((report / "protocol.json").read_text())
    assert protocol["design"]["compute_curve"]["fractions"] == [0.5]
    # The curve points are not branches of the main comparison.
    assert "budget=0.5" not in set(pd.read_csv(report / "metrics.csv")["variant"])
    again = _snakemake(curved, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_scenes_overlay_runs_the_whole_dag_at_tiny_sizes(tmp_path):
    """configs/world-scenes.yaml, layered on the tiny sizes: the scenes world (the COCO analogue) through every
    stage to a report that names it; its prompts always name the layout, its OOD prompts ask for the overlay's
    held-out combinations (binding and relation), and the oracle checks every scenes attribute."""
    import pandas as pd

    work = copy_workflow(tmp_path / "wf", extra_folders=("configs",))
    (work / "tiny-scenes.yaml").write_text((Path(__file__).parent / "configs" / "tiny-scenes.yaml").read_text())
    files = ("tiny.yaml", "configs/world-scenes.yaml", "tiny-scenes.yaml")
    result = _snakemake(work, configfiles=files)
    assert result.returncode == 0, result.stderr[-4000:]
    results, report = work / "results" / "tiny-scenes", work / "reports" / "tiny-scenes"
    overlay = yaml.safe_load((work / "configs" / "world-scenes.yaml").read_text())
    world = json.loads((results / "data" / "world.json").read_text())
    assert world["world"] == "scenes" and world["heldout"] == overlay["data"]["world"]["heldout"]
    prompts = pd.read_csv(results / "data" / "prompts.csv", dtype=str, keep_default_na=False)
    assert (prompts["layout"] != "").all() and (prompts["ood"] == "1").sum() == 3
    conditioner = json.loads((results / "clip" / "conditioner" / "metrics.json").read_text())
    assert set(conditioner["zero_shot_attributes"]) == set(world["attributes"])
    metrics = pd.read_csv(report / "metrics.csv")
    ours = metrics[metrics["method"] == "clip-vqdiffusion"]
    for name in ("attr_acc", "attr_acc_ood", "attr_acc/first_color", "attr_acc/layout", "fid", "cmmd"):
        assert name in set(ours["metric"]), name
    assert set(metrics["method"]) == {"clip-vqdiffusion", "paired", "unconditional", "lafite", "clip2latent"}
    protocol = json.loads((report / "protocol.json").read_text())
    assert protocol["design"]["data"]["world"] == "scenes"
    assert "<h1>clipvqd comparison report — scenes world (COCO analogue, 32 px)</h1>" in (report / "index.html").read_text()
