"""The config schema: closed objects, types, ranges, defaults; the paper overlays plan a complete DAG."""

import copy
import dataclasses
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
    result = _snakemake("-n", "--forceall", "--cores", "1", "--configfile", f"configs/{overlay}.yaml")
    assert result.returncode == 0, result.stderr
    counts = _job_counts(result.stdout)
    for stage in ("dataset_download", "dataset_prepare", "clip_get", "clip_embed", "tokenizer_train",
                  "tokenizer_tokenize", "diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_control",
                  "lafite_train", "clip2latent_generator_train", "clip2latent_latent_sample",
                  "clip2latent_prior_train", "sample", "metrics", "report"):
        assert counts.get(stage, 0) >= 1, f"{overlay}: no {stage} job planned"
    assert counts["diffusion_cfg_finetune"] == alphas
    assert counts["clip_get"] == 2
    # unconditional always; paired only where there are captions (COCO, not FFHQ)
    assert counts["diffusion_control"] == (2 if overlay == "coco" else 1)
    assert "world_generate" not in counts and "clip_train_standin" not in counts


def test_default_dag_lists_every_stage():
    result = _snakemake("-n", "--forceall", "--cores", "1")
    assert result.returncode == 0, result.stderr
    counts = _job_counts(result.stdout)
    for stage in ("world_generate", "clip_train_standin", "clip_evaluate", "clip_embed", "clip_embed_captions",
                  "oracle_train", "tokenizer_train", "tokenizer_evaluate", "tokenizer_tokenize",
                  "diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_control", "sample", "metrics", "report",
                  "lafite_train", "clip2latent_generator_train", "clip2latent_latent_sample",
                  "clip2latent_prior_train"):
        assert counts.get(stage, 0) >= 1, f"no {stage} job planned"
    # Three diffusion-based methods at the headline settings plus the two baselines at their own, all
    # sampled by the one sample rule, on both evaluation sets.
    assert counts["diffusion_control"] == 2 and counts["sample"] == 10 and counts["metrics"] == 5
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
    assert counts["diffusion_control"] == 2 * n and counts["sample"] == 2 * 5 * n
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
