"""The config schema: closed objects, types, ranges, defaults; the paper overlays plan a complete DAG."""

import copy
import dataclasses
import os
import re
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
    assert config["sampling"]["samples_per_prompt"] == 4 and config["sampling"]["best_of_prompts"] == 16
    assert config["seeds"] == [0] and config["evaluation"]["prompts"] == "test"
    assert config["evaluation"]["bootstrap"] == {"replicates": 1000, "confidence": 0.95, "seed": 0}


@pytest.mark.parametrize("mutate, named", [
    (lambda c: c["data"]["world"].__setitem__("resolutoin", 32), "resolutoin"),
    (lambda c: c["clip"]["conditioner"]["standin"].__setitem__("epoch", 3), "epoch"),
    (lambda c: c.__setitem__("seed", "zero"), "zero"),
    (lambda c: c["data"]["world"]["sizes"].__setitem__("train", 3), "3"),
    (lambda c: c["sampling"].__setitem__("truncation_r", [1.5]), "1.5"),
    (lambda c: c["data"]["world"].__setitem__("name", "cats"), "cats"),
    (lambda c: c.__setitem__("seeds", [0, 1000]), "1000"),
    (lambda c: c.__setitem__("seeds", []), "seeds"),
    (lambda c: c.__setitem__("evaluation", {"prompts": "train"}), "train"),
])
def test_schema_rejects_and_names_the_key(mutate, named):
    config = copy.deepcopy(_default_config())
    mutate(config)
    with pytest.raises(Exception) as error:
        validate(config, SCHEMA)
    assert named in str(error.value)


@pytest.mark.parametrize("value, spelled", [("false", "False"), ("True", "True"), ("no", "False")])
def test_a_boolean_given_as_a_string_says_how_to_write_it(value, spelled):
    """`--config keep_final_snapshots=false` gives the string 'false' (Snakemake reads Python literals there):
    the error says to write False."""
    from clipvqd.config_schema import describe_errors

    config = copy.deepcopy(_default_config())
    config["keep_final_snapshots"] = value
    lines = describe_errors(config, yaml.safe_load(Path(SCHEMA).read_text()))
    assert lines == [f"keep_final_snapshots: '{value}' is a string, not a boolean; write {spelled} "
                     "(on the command line, --config reads Python's True and False)"]


@pytest.mark.parametrize("overlay, expected", [
    ("data:\n  world:\n    resolutoin: 64\n", "unknown key 'resolutoin' in data.world; did you mean 'resolution'?"),
    ("sampeling: {steps: [10]}\n", "unknown key 'sampeling' at the top level; did you mean 'sampling'?"),
    ("diffusion:\n  pretrain: {stpes: 5}\n", "unknown key 'stpes' in diffusion.pretrain; did you mean 'steps'?"),
    ("data:\n  world:\n    sizes: {train: 3}\n", "data.world.sizes.train: 3 is less than the minimum of"),
])
def test_config_error_names_the_key_its_place_and_the_closest_valid_one(tmp_path, overlay, expected):
    """A bad key stops Snakemake before any job in a few lines (not the schema and config dumped), naming the
    key, where it sits in the config and, for a misspelt key, the valid key it was probably meant to be."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(overlay)
    result = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert expected in output, output[-3000:]
    assert "Job stats" not in result.stdout
    assert len(output.splitlines()) <= 10, output


def _jobs(stdout: str) -> list[dict]:
    """The jobs of a `snakemake -n -p` plan: rule, threads, resources and shell command of each."""
    jobs = []
    for block in re.split(r"^\[.*\]$", stdout, flags=re.MULTILINE)[1:]:
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.MULTILINE)
        if not rule:
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        command = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append({"rule": rule.group(1), "threads": int(threads.group(1)) if threads else 1,
                     "resources": dict(item.split("=", 1) for item in resources.group(1).split(", ")) if resources else {},
                     "command": command.group(1) if command else ""})
    return jobs


# Rules whose jobs compute with torch, on a world config: each takes the job's threads, and all but the
# oracle's training and calibration and the CLIP evaluation (CPU-only) can use a GPU.
TORCH_RULES = {"clip_train_standin", "clip_evaluate", "clip_embed", "clip_embed_captions", "oracle_train",
               "tokenizer_train", "tokenizer_evaluate", "tokenizer_tokenize", "diffusion_pretrain",
               "diffusion_cfg_finetune", "diffusion_control", "diffusion_control_finetune", "lafite_train",
               "clip2latent_generator_train", "clip2latent_latent_sample", "clip2latent_prior_train", "sample",
               "metrics", "clip_embed_prompts", "oracle_calibrate"}
CPU_ONLY_RULES = {"oracle_train", "clip_evaluate", "oracle_calibrate"}
DDP_RULES = {"diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_control", "diffusion_control_finetune"}


@pytest.mark.parametrize("cores, overlay, threads", [("8", "", 2), ("2", "", 1), ("8", "threads: {torch: 3}", 3)])
def test_torch_jobs_get_a_share_of_the_cores_and_pass_it_to_torch(tmp_path, cores, overlay, threads):
    """`threads:` on every torch rule (default: a quarter of --cores, at least 1; or threads.torch), and the
    command hands it to torch (--threads), whatever OMP_NUM_THREADS says."""
    (tmp_path / "threads.yaml").write_text(overlay or "run: tiny")
    result = _snakemake("-n", "-p", "--forceall", "--cores", cores, "--configfile", "tests/configs/tiny.yaml",
                        str(tmp_path / "threads.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(result.stdout)
    assert {job["rule"] for job in jobs} >= TORCH_RULES
    for job in jobs:
        if job["rule"] in TORCH_RULES:
            assert job["threads"] == threads and f"--threads {threads} " in job["command"], job
        else:
            assert "--threads" not in job["command"], job


@pytest.mark.parametrize("device, gpus, ddp_gpus", [("cpu", 0, 0), ("auto", 1, 1), ("cuda", 1, 2)])
def test_gpu_rules_ask_for_gpus_when_the_device_is_a_gpu(device, gpus, ddp_gpus):
    """With device cuda or auto every rule that can use a GPU asks for the `gpu` resource (ddp_gpus for the
    DDP trainer), so `--resources gpu=N` and a cluster profile schedule them; the device is a resource too,
    not a param (params are a rerun trigger)."""
    settings = [f"device={device}"] + (["ddp_gpus=2"] if ddp_gpus == 2 else [])
    result = _snakemake("-n", "-p", "--forceall", "--cores", "2", "--configfile", "tests/configs/tiny.yaml",
                        "--config", *settings)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in _jobs(result.stdout):
        if job["rule"] in TORCH_RULES - CPU_ONLY_RULES:
            expected = ddp_gpus if job["rule"] in DDP_RULES else gpus
            assert job["resources"].get("gpu") == str(expected), job
            assert job["resources"].get("device") == device and f"--device {device} " in job["command"], job
        else:
            assert job["resources"].get("gpu", "0") == "0" and "--device" not in job["command"], job
    # the device never enters the params, which Snakemake compares to decide reruns
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        assert "params.device" not in smk.read_text() and 'device=config["device"]' not in smk.read_text(), smk


def test_every_rule_has_a_docstring():
    """`snakemake --list-rules` shows one line of documentation for every rule, under every data source."""
    listed = {}
    for configfile in ("config.yaml", "configs/coco.yaml", "configs/ffhq.yaml"):
        result = _snakemake("--list-rules", "--configfile", configfile)
        assert result.returncode == 0, result.stderr[-3000:]
        for line in result.stdout.splitlines():
            match = re.match(r"^(\w+)(?: \((.+)\))?$", line.strip())
            if match:
                listed.setdefault(match.group(1), match.group(2))
    assert {"world_generate", "dataset_download", "ffhq_validate", "weights_download", "clip_get", "report"} <= set(listed)
    undocumented = sorted(name for name, doc in listed.items() if not doc)
    assert not undocumented, f"rules without a docstring: {undocumented}"


def test_download_rules_run_on_the_submit_host():
    """Rules that fetch from the internet are local rules: on a cluster they run where the network is."""
    for smk, rules in (("data.smk", ("dataset_download", "weights_download")), ("clip.smk", ("clip_get",))):
        text = (REPO / "workflow" / "rules" / smk).read_text()
        for rule in rules:
            for body in re.findall(rf"rule {rule}:\n(.*?)(?=\n\s*rule |\Z)", text, re.S):
                assert re.search(r"^\s+localrule: True", body, re.MULTILINE), (smk, rule)


def test_plan_time_precision_recall_neighbourhood_is_the_metrics_one():
    # common.smk restates the neighbourhood so that its plan-time check imports no torch.
    from clipvqd.evaluation.fid import DEFAULT_PRC_NEIGHBORHOOD

    assert f"PRC_NEIGHBORHOOD = {DEFAULT_PRC_NEIGHBORHOOD}\n" in (REPO / "workflow/rules/common.smk").read_text()


def test_cross_key_check_names_the_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  source: ffhq\nclip:\n  judge: {source: pretrained}\nbaselines: {paired: false}\n")
    result = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert result.returncode != 0
    assert "clip.conditioner.source is 'standin'" in result.stderr + result.stdout


# Model and training settings: ranges in the schema, rules across keys in the library's dataclasses, built
# by common.smk while the Snakefile is read. Each bad value stops `snakemake -n` before any job, in a few
# lines naming the config key.
BAD_MODEL_SETTINGS = [
    ("tokenizer:\n  model: {channels: -8}\n", ["channels", "-8 is less than the minimum of 1"]),
    ("diffusion:\n  pretrain: {steps: 0}\n", ["steps", "0 is less than the minimum of 1"]),
    ("diffusion:\n  model: {num_heads: 3, hidden_dim: 32}\n",
     ["diffusion.model: DenoiserConfig.hidden_dim (32) must be divisible by num_heads (3)"]),
    ("tokenizer:\n  model: {resolution: 100000}\n", ["resolution", "100000 is greater than the maximum"]),
    ("tokenizer:\n  model: {resolution: 64}\n",
     ["tokenizer.model.resolution is 64 but data.world.resolution is 32", "tokenizer.resize"]),
    ("tokenizer:\n  model: {channel_multipliers: [1, 2, 2, 2, 2, 2, 2]}\n",
     ["tokenizer.model: TokenizerConfig.resolution=32 is not divisible by the downsampling factor 64"]),
    ("tokenizer:\n  train: {temperature_start: 0.01, temperature_end: 0.9}\n",
     ["tokenizer.train: TokenizerConfig needs 0 < temperature_end <= temperature_start".replace("Config", "TrainConfig")]),
    ("lafite:\n  model: {resolution: 48}\n", ["resolution", "48 is not one of"]),
    ("clip2latent:\n  sampling: {steps: 7}\n",
     ["clip2latent.sampling.steps 7 does not divide clip2latent.prior_model.timesteps 1000"]),
    ("clip2latent:\n  prior_model: {dim_head: 15}\n", ["clip2latent.prior_model: PriorModelConfig: invalid dim_head=15"]),
    ("clip:\n  conditioner:\n    source: standin\n    standin: {text_width: 30, text_heads: 4}\n",
     ["clip.conditioner.standin: standin.text_width=30 is not divisible by standin.text_heads=4"]),
    ("sampling:\n  steps: [200]\n", ["sampling.steps 200 is more than diffusion.model.num_steps 100"]),
    ("diffusion:\n  finetune: {batch_size: 5000}\n",
     ["diffusion.finetune.batch_size is 5000, more than the 4000 training images"]),
    ("oracle: {batch_size: 0}\n", ["batch_size", "0 is less than the minimum of 1"]),
    # the conditioner trains on its clip_pairs less the held-out fold plus the extra pairs: 3600 + 3600
    ("clip:\n  conditioner:\n    standin: {batch_size: 7300}\n",
     ["clip.conditioner.standin.batch_size is 7300, more than the 7200 captioned pairs it trains on"]),
    # protocol v2's keys: ranges in the schema, the rest across keys in common.smk
    ("seeds: [0, 0]\n", ["seeds", "non-unique"]),
    ("evaluation:\n  bootstrap: {replicates: 5}\n", ["replicates", "5 is less than the minimum of 10"]),
    ("evaluation:\n  bootstrap: {confidence: 1.5}\n", ["confidence", "1.5"]),
    ("evaluation: {distribution_samples: 5000}\n",
     ["evaluation.distribution_samples is 5000, but data.world.sizes.reference is 1000"]),
    ("evaluation: {distribution_samples: 3}\n",
     ["evaluation.distribution_samples is 3: precision/recall (neighbourhood 3) need more than 3"]),
    ("data:\n  source: coco\n  coco: {reference_count: 3}\n"
     "clip:\n  conditioner: {source: pretrained}\n  judge: {source: pretrained}\n",
     ["data.coco.reference_count is 3: precision/recall (neighbourhood 3)"]),
    ("sampling: {best_of_prompts: 500}\n", ["sampling.best_of_prompts is 500, more than the prompt table holds"]),
    ("evaluation: {prompts: tuning}\n", ["prompts", "'tuning' is not one of"]),
    # config.yaml's held-out combinations are the faces world's: another world must name its own
    ("data:\n  world: {name: scenes}\n",
     ["data.world.heldout[0]: world 'scenes' has no attribute 'hair_color'", "set data.world.heldout"]),
    ("data:\n  world: {name: scenes, heldout: [{first_color: purple}]}\n",
     ["data.world.heldout[0]: 'purple' is not a value of attribute 'first_color' in world 'scenes'"]),
]


@pytest.mark.parametrize("overlay, named", BAD_MODEL_SETTINGS, ids=[o.split(":")[0] + str(i) for i, (o, _) in
                                                                    enumerate(BAD_MODEL_SETTINGS)])
def test_bad_model_settings_stop_snakemake_before_any_job(tmp_path, overlay, named):
    bad = tmp_path / "bad.yaml"
    bad.write_text(overlay)
    result = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Job stats" not in result.stdout
    for text in named:
        assert text in output, output[-2000:]
    # A few lines (Snakemake's own schema message quotes the key's schema entry), never a traceback from a job.
    assert "Traceback" not in output and len(output.strip().splitlines()) <= 25, output


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
    result = _snakemake("-n", "--forceall", "-p", "--cores", "1", "--configfile", f"configs/{overlay}.yaml")
    assert result.returncode == 0, result.stderr
    counts = _job_counts(result.stdout)
    # keep_final_snapshots: false: each trainer's shell removes its work folder (the 7.7 GB snapshot) on success
    trainers = [line for line in result.stdout.splitlines()
                if re.search(r"-m clipvqd (tokenizer train|diffusion train|lafite train|clip2latent train-)", line)]
    assert len(trainers) >= 8 and all(re.search(r" && rm -rf -- \S*results/\S+/work/", line) for line in trainers)
    # ... and no trainer writes that snapshot in the first place (clipvqd_trainer adds the option to each)
    assert all(" --no-final-snapshot > " in line for line in trainers)
    for stage in ("dataset_download", "dataset_prepare", "clip_get", "clip_embed", "tokenizer_train",
                  "tokenizer_tokenize", "diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_control",
                  "diffusion_control_finetune", "lafite_train", "clip2latent_generator_train", "clip2latent_latent_sample",
                  "clip2latent_prior_train", "sample", "metrics", "report"):
        assert counts.get(stage, 0) >= 1, f"{overlay}: no {stage} job planned"
    assert counts["diffusion_cfg_finetune"] == alphas
    assert counts["clip_get"] == 2
    # unconditional always; paired only where there are captions (COCO, not FFHQ)
    assert counts["diffusion_control"] == counts["diffusion_control_finetune"] == (2 if overlay == "coco" else 1)
    assert "world_generate" not in counts and "clip_train_standin" not in counts


def test_default_dag_lists_every_stage():
    result = _snakemake("-n", "--forceall", "-p", "--cores", "1")
    assert result.returncode == 0, result.stderr
    # keep_final_snapshots: true by default: the trainers keep their work folders and final snapshots
    assert "--no-final-snapshot" not in result.stdout and "rm -rf" not in result.stdout
    counts = _job_counts(result.stdout)
    for stage in ("world_generate", "clip_train_standin", "clip_evaluate", "clip_embed", "clip_embed_captions",
                  "oracle_train", "tokenizer_train", "tokenizer_evaluate", "tokenizer_tokenize",
                  "diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_control", "diffusion_control_finetune",
                  "sample", "metrics", "report",
                  "lafite_train", "clip2latent_generator_train", "clip2latent_latent_sample",
                  "clip2latent_prior_train"):
        assert counts.get(stage, 0) >= 1, f"no {stage} job planned"
    # Three diffusion-based methods at the headline settings plus the two baselines at their own, all
    # sampled by the one sample rule, on both evaluation sets.
    assert counts["diffusion_control"] == 2 and counts["sample"] == 10 and counts["metrics"] == 5
    # the controls run the language-free chain: a second stage like the CFG fine-tune (issue: matched controls)
    assert counts["diffusion_control_finetune"] == 2
    assert counts["distribution_prompts"] == counts["clip_embed_prompts"] == counts["oracle_calibrate"] == 1


def _planned_commands(stdout: str, marker: str) -> list[str]:
    return [line for line in stdout.splitlines() if marker in line]


@pytest.mark.parametrize("overlay, seeds", [("tests/configs/tiny.yaml", [0, 1]), ("configs/world-seeds.yaml", [0, 1, 2])])
def test_seeds_are_branches_of_every_generator(tmp_path, overlay, seeds):
    """Each training seed trains and samples every generator once; the data, CLIPs, oracle, tokenizer and the
    metrics are shared: one metrics job per branch reads every seed's two sample sets."""
    files = ["--configfile", "config.yaml", overlay]
    if overlay.startswith("tests/"):
        (tmp_path / "seeds.yaml").write_text(f"run: tiny-seeds\nseeds: {seeds}\n")
        files.append(str(tmp_path / "seeds.yaml"))
    result = _snakemake("-n", "--forceall", "-p", "--cores", "1", *files)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = _job_counts(result.stdout)
    n = len(seeds)
    for stage in ("diffusion_pretrain", "diffusion_cfg_finetune", "lafite_train", "clip2latent_generator_train",
                  "clip2latent_latent_sample", "clip2latent_prior_train"):
        assert counts[stage] == n, stage
    assert counts["diffusion_control"] == counts["diffusion_control_finetune"] == 2 * n
    assert counts["sample"] == 2 * 5 * n
    for stage in ("world_generate", "tokenizer_train", "oracle_train", "clip_embed", "distribution_prompts"):
        assert counts[stage] == 1, stage
    assert counts["clip_train_standin"] == 2 and counts["metrics"] == 5 and counts["report"] == 1
    # Seed s trains from 1000 s (plus the stage's offset) in its own folders; the metrics job gets every seed.
    pretrain = _planned_commands(result.stdout, "diffusion train --mode language_free")
    assert sorted(int(c.split("--seed ")[1].split()[0]) for c in pretrain) == [1000 * s for s in seeds]
    assert all(f"models/seed={s}/" in " ".join(pretrain) for s in seeds)
    samples = _planned_commands(result.stdout, "clipvqd sample --method lafite")
    assert sorted(int(c.split("--seed ")[1].split()[0]) for c in samples) == sorted(
        1000 * s + offset for s in seeds for offset in (2, 5))
    metrics = _planned_commands(result.stdout, "clipvqd evaluate metrics")
    assert all(f"--seeds {' '.join(map(str, seeds))} " in command for command in metrics)
    assert all(command.count("/distribution/manifest.csv") == n for command in metrics)


def test_validation_prompts_are_a_switch_for_tuning_runs(tmp_path):
    (tmp_path / "tuning.yaml").write_text("run: tiny-tuning\nevaluation: {prompts: validation}\n")
    result = _snakemake("-n", "--forceall", "-p", "--cores", "1", "--configfile", "tests/configs/tiny.yaml",
                        str(tmp_path / "tuning.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = _planned_commands(result.stdout, "clipvqd evaluate metrics")
    assert metrics and all("--prompts results/tiny-tuning/data/validation_prompts.csv" in c for c in metrics)
    assert all("--evaluation-set validation" in c and "/validation/manifest.csv" in c for c in metrics)
    assert "/alignment/manifest.csv" not in result.stdout
    (tmp_path / "coco.yaml").write_text("evaluation: {prompts: validation}\n")
    refused = _snakemake("-n", "--cores", "1", "--configfile", "configs/coco.yaml", str(tmp_path / "coco.yaml"))
    assert refused.returncode != 0 and "evaluation.prompts is 'validation'" in refused.stdout + refused.stderr


def test_the_validation_tuning_overlay_sweeps_steps_on_validation_prompts():
    """configs/world-validation.yaml (the run that re-chose sampling.steps, README "Which defaults were chosen on
    what"): every diffusion method at each step count, every metrics job on the validation prompts only."""
    result = _snakemake("-n", "--forceall", "-p", "--cores", "1", "--configfile", "config.yaml",
                        "configs/world-validation.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = _job_counts(result.stdout)
    # 3 diffusion methods x 4 step counts + the two baselines, each on the validation and distribution sets
    assert counts["sample"] == 2 * (3 * 4 + 2) and counts["metrics"] == 3 * 4 + 2
    metrics = _planned_commands(result.stdout, "clipvqd evaluate metrics")
    assert all("--prompts results/world-validation/data/validation_prompts.csv" in c for c in metrics)
    assert "/alignment/manifest.csv" not in result.stdout
    samples = " ".join(_planned_commands(result.stdout, "clipvqd sample --method clip-vqdiffusion"))
    assert all(f'"steps": {steps}' in samples for steps in (10, 25, 50, 100))


def test_each_standin_trains_on_its_own_pairs():
    """The judge stand-in's job reads the judge's captioned split, the conditioner's its own; both are
    measured on the held-out clip_pairs (the world test checks the splits share no image)."""
    result = _snakemake("-n", "--forceall", "--cores", "1", "--printshellcmds", "results/default/clip/judge/metrics.json",
                        "results/default/clip/conditioner/metrics.json")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if "-m clipvqd clip" in line]
    train = {role: next(c for c in commands if " clip get " in c and f"clip/{role}/model.safetensors" in c)
             for role in ("conditioner", "judge")}
    assert "--pairs results/default/data/clip_pairs.csv" in train["conditioner"]
    assert "--pairs results/default/data/judge_pairs.csv" in train["judge"]
    evaluations = [c for c in commands if " clip evaluate " in c]
    assert len(evaluations) == 2 and all("--pairs results/default/data/clip_pairs.csv" in c for c in evaluations)


def test_lint_is_clean():
    result = _snakemake("--lint", "--cores", "1")
    assert "Congratulations" in result.stdout + result.stderr, result.stdout + result.stderr


def test_workflow_files_are_snakefmt_formatted():
    """snakefmt, the Snakemake ecosystem's formatter (settings in pyproject.toml), would change nothing."""
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff", "Snakefile", "workflow/rules"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _schema_block(*keys):
    node = yaml.safe_load(Path(SCHEMA).read_text())
    for key in keys:
        node = node["properties"][key]
    return node


def _defaults(dataclass_instance, skip=()):
    values = dataclasses.asdict(dataclass_instance)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if k not in skip}


@pytest.mark.parametrize("path, expected, skip", [
    (("tokenizer", "model"), "TokenizerConfig()", ()),
    (("tokenizer", "train"), "TokenizerTrainConfig()", ()),
    (("diffusion", "model"), "DenoiserConfig()", ("num_codes", "grid_height", "grid_width", "condition_dim")),
    (("diffusion", "pretrain"), "DiffusionTrainConfig()", ("condition_noise_alpha",)),
    (("diffusion", "finetune"), "DiffusionTrainConfig.world_finetune()", ("condition_noise_alpha",)),
])
def test_schema_blocks_mirror_the_library_dataclasses(path, expected, skip):
    """Every hyper-parameter is declared once in the library; the schema lists the same keys and defaults."""
    from clipvqd.diffusion import DenoiserConfig, DiffusionTrainConfig  # noqa: F401 (used by eval)
    from clipvqd.tokenizer import TokenizerConfig, TokenizerTrainConfig  # noqa: F401

    block = _schema_block(*path)
    assert block["additionalProperties"] is False
    schema_defaults = {key: spec["default"] for key, spec in block["properties"].items()}
    assert schema_defaults == _defaults(eval(expected), skip)
    assert all(spec.get("description") for spec in block["properties"].values())


def test_world_config_settings_build_the_library_objects():
    """The validated default config turns into the dataclasses without loss (no key the library rejects)."""
    from clipvqd.diffusion import DenoiserConfig, DiffusionTrainConfig
    from clipvqd.tokenizer import TokenizerConfig, TokenizerTrainConfig

    config = _default_config()
    validate(config, SCHEMA)
    # The 20-minute default run works on 8x8 tokens; the world-full overlay restores the paper's 16x16 grid.
    assert TokenizerConfig.from_dict(config["tokenizer"]["model"]).token_grid == (8, 8)
    full = _default_config()
    overlay = yaml.safe_load((REPO / "configs" / "world-full.yaml").read_text())
    full["tokenizer"]["model"].update(overlay["tokenizer"]["model"])
    validate(full, SCHEMA)
    assert TokenizerConfig.from_dict(full["tokenizer"]["model"]).token_grid == (16, 16)
    assert TokenizerConfig.from_dict(full["tokenizer"]["model"]) == TokenizerConfig()  # the world defaults
    TokenizerTrainConfig.from_dict(config["tokenizer"]["train"])
    DenoiserConfig.from_dict({**config["diffusion"]["model"], "num_codes": 64, "grid_height": 16, "grid_width": 16,
                              "condition_dim": 128})
    assert DiffusionTrainConfig.from_dict(config["diffusion"]["finetune"]).learning_rate < \
        DiffusionTrainConfig.from_dict(config["diffusion"]["pretrain"]).learning_rate


@pytest.mark.parametrize("overlay", ["ffhq", "coco"])
def test_paper_overlays_use_the_library_paper_presets(overlay):
    from clipvqd.diffusion import DenoiserConfig, DiffusionTrainConfig
    from clipvqd.tokenizer import TokenizerConfig, TokenizerTrainConfig

    config = yaml.safe_load((REPO / "configs" / f"{overlay}.yaml").read_text())
    validate(config, SCHEMA)
    assert TokenizerConfig.from_dict(config["tokenizer"]["model"]) == TokenizerConfig.paper()
    assert TokenizerTrainConfig.from_dict(config["tokenizer"]["train"]) == TokenizerTrainConfig.paper()
    sizes = {"num_codes": 4096, "grid_height": 16, "grid_width": 16, "condition_dim": 512}
    assert DenoiserConfig.from_dict({**config["diffusion"]["model"], **sizes}) == DenoiserConfig.paper()
    alpha = {"condition_noise_alpha": DiffusionTrainConfig().condition_noise_alpha}
    for stage, preset in (("pretrain", DiffusionTrainConfig.paper_pretrain()),
                          ("finetune", DiffusionTrainConfig.paper_finetune())):
        expected = dataclasses.replace(preset, **RELEASED_BEHAVIOUR, grad_clip_steps=preset.steps,
                                       **RELEASED_COCO_SOLVER[stage] if overlay == "coco" else {})
        assert DiffusionTrainConfig.from_dict({**config["diffusion"][stage], **alpha}) == expected, stage


# Where the overlays follow what the released CLIPVQDiffusion code does rather than the library presets
# (docs/deviations.md): the loss on its scale (diffusion_transformer.py `kl_loss / pt`), the gradient clip
# at every step (engine/clip_grad_norm.py clips whenever iteration >= start_iteration = 0, so
# grad_clip_steps = steps), and uniform timesteps until every step has more than 10 samples (`Lt_count > 10`).
RELEASED_BEHAVIOUR = {"loss_over_steps": "sum", "importance_min_samples": 11}
# The released COCO solvers differ from the FFHQ ones the presets hold (configs/coco_base_train.yaml and
# coco_finetune.yaml: warm-up to 1.5e-5 over 30 000 steps in both stages, fine-tune batch 32).
RELEASED_COCO_SOLVER = {"pretrain": {"learning_rate": 1.5e-5, "warmup_steps": 30_000},
                        "finetune": {"learning_rate": 1.5e-5, "warmup_steps": 30_000, "batch_size": 32}}


@pytest.mark.parametrize("overlay, alpha, guidance, truncation", [("ffhq", 0.5, 1.2, 0.85), ("coco", 0.25, 3.0, 0.9)])
def test_paper_overlay_headlines_are_the_released_values(overlay, alpha, guidance, truncation):
    """Headline α, guidance s, truncation r and steps as released: lafite_alpha and guidance_scale of the
    *_finetune.yaml configs, truncation of demo.ipynb (FFHQ 0.85, COCO 0.9; the configs validate with 0.85),
    and all 100 steps without the purity prior (prior_rule 0)."""
    config = yaml.safe_load((REPO / "configs" / f"{overlay}.yaml").read_text())
    assert config["diffusion"]["alpha"][0] == alpha
    assert config["sampling"]["guidance_scale"][0] == guidance
    assert config["sampling"]["truncation_r"][0] == truncation
    assert config["sampling"]["steps"][0] == 100 and config["sampling"]["purity"][0] is False
    assert config["sampling"]["null_condition"] == "raw"


@pytest.mark.parametrize("path, expected, skip", [
    (("lafite", "model"), "LafiteModelConfig()", ("condition_dim",)),
    (("lafite", "train"), "LafiteTrainConfig()", ()),
])
def test_lafite_schema_blocks_mirror_the_library_dataclasses(path, expected, skip):
    """The lafite block declares the same keys and defaults as clipvqd.lafite's dataclasses, and the tiny
    test config's block builds them."""
    from clipvqd.lafite import LafiteModelConfig, LafiteTrainConfig  # noqa: F401 (used by eval)

    block = _schema_block(*path)
    assert block["additionalProperties"] is False
    schema_defaults = {key: spec["default"] for key, spec in block["properties"].items()}
    assert schema_defaults == _defaults(eval(expected), skip)
    assert all(spec.get("description") for spec in block["properties"].values())
    tiny = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    merged = copy.deepcopy(_default_config())
    merged["lafite"] = tiny["lafite"]
    validate(merged, SCHEMA)
    values = merged["lafite"][path[1]]
    cls = LafiteModelConfig if path[1] == "model" else LafiteTrainConfig
    cls.from_dict({**values, "condition_dim": 32} if path[1] == "model" else values)


@pytest.mark.parametrize("overlay", ["ffhq", "coco"])
def test_paper_overlays_use_the_lafite_presets(overlay):
    from clipvqd.lafite.config import LafiteModelConfig, LafiteTrainConfig

    config = yaml.safe_load((REPO / "configs" / f"{overlay}.yaml").read_text())
    validate(config, SCHEMA)
    model = {**config["lafite"]["model"], "condition_dim": LafiteModelConfig.paper().condition_dim}
    assert LafiteModelConfig.from_dict(model) == LafiteModelConfig.paper()
    assert LafiteTrainConfig.from_dict(config["lafite"]["train"]) == LafiteTrainConfig.paper()


def _planned_variants(result, method="clip-vqdiffusion"):
    return set(re.findall(rf"samples/seed=\d+/{method}/([^/\s,]+(?:,[^/\s,]+)*)/alignment/manifest\.csv",
                          result.stdout))


@pytest.mark.parametrize("overlay", ["ffhq", "coco"])
def test_cfg_false_branch_samples_the_pretrained_model_at_guidance_one(overlay):
    """The pretrained model has no trained null vector (the sampler refuses s != 1 for it), so the cfg=false
    ablation of an overlay whose headline guidance is not 1 samples at s = 1."""
    result = _snakemake("-n", "--forceall", "--cores", "1", "--configfile", f"configs/{overlay}.yaml")
    assert result.returncode == 0, result.stderr
    ablation = [v for v in _planned_variants(result) if "cfg=false" in v]
    assert len(ablation) == 1 and ",s=1.0," in ablation[0], ablation


def test_a_cfg_false_headline_plans_no_guided_point_of_the_pretrained_model(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"diffusion": {"cfg_finetune": [False, True]},
                                       "sampling": {"guidance_scale": [2.0, 1.0, 3.0]}}))
    result = _snakemake("-n", "-p", "--forceall", "--cores", "1", "--configfile", "config.yaml", str(overlay))
    assert result.returncode == 0, result.stderr
    # default (cfg=false, s=1) and the cfg=true point at the headline s = 2; the guidance sweep of the
    # pretrained model collapses onto the default instead of planning refused or repeated branches.
    assert _planned_variants(result) == {"default", "alpha=0.5,cfg=true,s=2.0,r=0.85,steps=10,purity=false"}
    # the paired control, matched to the cfg=false headline, stops after its pretraining: sampled at s = 1 too
    paired = [line for line in result.stdout.splitlines() if "clipvqd sample --method paired" in line]
    assert paired and all('"s": 1.0' in line for line in paired), paired[:1]
    assert "paired/finetune.safetensors" not in result.stdout
