"""The GPU cost of a run, predicted from per-step measurements (issue 19, target 3).

A run's cost is the sum over the jobs Snakemake plans of (work units of the job) x (seconds per unit), where
a unit is one optimiser step of a trainer or one image through an inference path. The job list comes from
Snakemake's own dry run of the config (`plan_jobs`), so every sweep point, seed and control the config asks
for is counted exactly as the workflow would run it; the units of each job come from the resolved config
(`job_cost`): steps and batch sizes of every trainer, the number of training images, the size of every
sample set. The seconds per unit come from measurement files (`load_rates`): the GPU benchmark's JSON
(benchmarks/paper_steps_gpu.py, benchmarks/diffusion_gpu.py) or figures derived from FLOP counts, each
rate carrying its own `basis` ("measured" or "derived: how"), which every row of the prediction repeats.

Multi-GPU: the diffusion trainers (pretraining, CFG fine-tune, controls) run under DDP with a fixed global
batch; the prediction assumes ideal data-parallel scaling for them (N GPUs: the same GPU-hours, 1/N of the
wall time). Every other job runs on one GPU; with N GPUs up to N of them run at once. The wall time on N GPUs
is given per stage (each stage's jobs alone on the N GPUs) and their sum, an upper bound of the makespan
under those assumptions, since stages that do not depend on each other overlap in a real run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Job", "Rate", "StageCost", "parse_dry_run", "plan_jobs", "resolve_config", "dataset_sizes",
           "load_rates", "job_cost", "predict", "stage_table", "format_markdown", "total_hours", "DDP_RULES"]

# Image counts of the real data sets when the config takes all of them (official figures).
FFHQ_IMAGES = 70_000
COCO_TRAIN2014_IMAGES = 82_783
COCO_VAL2014_IMAGES = 40_504
# Samples per prompt of the best-of-16 prompts (sampling.best_of_prompts).
BEST_OF = 16

# The trainers that run under torchrun/DDP when a job gets more than one GPU (workflow/rules/common.smk,
# clipvqd_trainer(..., ddp=True)); every other rule runs as one process on one GPU.
DDP_RULES = frozenset({"diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_control", "diffusion_control_finetune"})

# Rules that compute nothing on a GPU (downloads, data preparation and validation, text-only embedding of
# prompts, the report): listed in the table as CPU jobs, not costed.
CPU_RULES = frozenset({"clip_get", "dataset_download", "weights_download", "ffhq_validate", "weights_convert",
                       "dataset_prepare", "distribution_prompts", "coco_prepare", "report", "all"})


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rate:
    """Seconds of one unit on one GPU (a training step at `batch`, or one image when batch is None), and
    where the figure comes from: "measured" or "derived: <how>"."""
    seconds: float
    basis: str
    batch: int | None = None
    source: str = ""

    def per_step(self, batch: int) -> tuple[float, str]:
        """Seconds of one step at `batch`; another batch than the measured one scales linearly per sample."""
        if self.batch is None or self.batch == batch:
            return self.seconds, self.basis
        scaled = self.seconds * batch / self.batch
        return scaled, f"derived from batch {self.batch} scaled linearly to {batch}, per sample; at batch {self.batch}: {self.basis}"


@dataclass
class StageCost:
    stage: str
    jobs: int = 0
    gpu_seconds: float = 0.0
    longest_job_s: float = 0.0
    ddp: bool = False
    bases: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    units: list[str] = field(default_factory=list)

    def wall_seconds(self, gpus: int) -> float:
        """Wall time of this stage's jobs alone on `gpus` GPUs: ideal DDP for the DDP trainers, else the
        jobs spread over the GPUs (at least as long as the longest job)."""
        if gpus <= 1 or self.jobs == 0:
            return self.gpu_seconds
        if self.ddp:
            return self.gpu_seconds / gpus
        return max(self.gpu_seconds / gpus, self.longest_job_s)


# ---- the config and the plan ------------------------------------------------------------------------------


def _merge(base: dict, update: Mapping) -> dict:
    """Snakemake's merge of config files: mappings are merged key by key, every other value replaced."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def resolve_config(configfiles: Sequence[str | Path], schema: str | Path | None = None) -> dict:
    """The config a run with these files sees (the first is usually config.yaml), with the schema's defaults."""
    import yaml

    from clipvqd.config_schema import validate_config

    config: dict = {}
    for path in configfiles:
        text = Path(path).read_text()
        _merge(config, yaml.safe_load(text) or {})
    if schema is None:
        schema = Path(configfiles[0]).resolve().parent / "workflow" / "schemas" / "config.schema.yaml"
    return validate_config(config, schema)


_RULE = re.compile(r"^(?:local)?rule (\w+):\s*$")


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of `snakemake -n` output: each `rule NAME:` block and its `wildcards:` line. Wildcards are
    separated by ', '; a value may itself hold commas without a space (the sweep variants)."""
    jobs: list[Job] = []
    rule, wildcards = None, {}
    for line in text.splitlines():
        match = _RULE.match(line)
        if match:
            if rule is not None:
                jobs.append(Job(rule, wildcards))
            rule, wildcards = match.group(1), {}
        elif rule is not None and line.strip().startswith("wildcards:"):
            for item in line.split("wildcards:", 1)[1].strip().split(", "):
                key, _, value = item.partition("=")
                wildcards[key.strip()] = value.strip()
    if rule is not None:
        jobs.append(Job(rule, wildcards))
    return jobs


def plan_jobs(configfiles: Sequence[str | Path], workdir: str | Path = ".") -> list[Job]:
    """Every job of a complete run with these config files, from Snakemake's dry run in `workdir` (a run's
    finished outputs there would be left out, so plan in a folder without results)."""
    command = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--configfile", *map(str, configfiles[1:])]
    if len(configfiles) < 2:
        command = command[:-1]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake -n failed:\n{(result.stderr or result.stdout)[-2000:]}")
    return parse_dry_run(result.stdout + "\n" + result.stderr)


def _prompt_count(config: dict, workflow_root: Path) -> int:
    source = config["data"]["source"]
    if source == "ffhq":
        path = config["data"]["ffhq"]["prompts_file"] or workflow_root / "clipvqd" / "data" / "clip2latent-face-test.txt"
        return sum(1 for line in Path(path).read_text().splitlines() if line.strip())
    if source == "coco":
        return config["data"]["coco"]["prompt_count"] or COCO_VAL2014_IMAGES
    spec = config["data"]["world"]["prompts"]
    return spec["count"] + spec["ood_per_combination"] * len(config["data"]["world"]["heldout"])


def dataset_sizes(config: dict, workflow_root: str | Path = ".") -> dict[str, int]:
    """Training images, reference images and evaluation prompts of the config's data set."""
    data, source = config["data"], config["data"]["source"]
    if source == "ffhq":
        total = data["ffhq"]["expected_count"] or FFHQ_IMAGES
        train = data["ffhq"]["train_count"] or total
        reference = data["ffhq"]["reference_count"] or total
    elif source == "coco":
        total = COCO_TRAIN2014_IMAGES + (COCO_VAL2014_IMAGES if data["coco"]["train_on"] != "train" else 0)
        train = data["coco"]["train_count"] or total
        reference = data["coco"]["reference_count"] or COCO_VAL2014_IMAGES
    else:
        train, reference = data["world"]["sizes"]["train"], data["world"]["sizes"]["reference"]
    distribution = config["evaluation"]["distribution_samples"] or reference
    prompts = _prompt_count(config, Path(workflow_root))
    spp = config["sampling"]["samples_per_prompt"]
    best = min(config["sampling"]["best_of_prompts"], prompts)
    alignment = prompts * spp + best * max(0, BEST_OF - spp)
    return {"train": train, "reference": reference, "distribution": distribution, "prompts": prompts,
            "alignment": alignment}


# ---- rates ------------------------------------------------------------------------------------------------


def load_rates(paths: Iterable[str | Path]) -> dict[str, Rate]:
    """Rates by unit name from measurement files ({"rates": {name: {seconds, basis, batch}}}); a later file
    replaces an earlier one's rate of the same name."""
    rates: dict[str, Rate] = {}
    for path in paths:
        payload = json.loads(Path(path).read_text())
        if "rates" not in payload:
            raise ValueError(f"{path}: no 'rates' block (write it with benchmarks/paper_steps_gpu.py)")
        for name, entry in payload["rates"].items():
            if entry.get("seconds") is None:
                continue
            rates[name] = Rate(float(entry["seconds"]), str(entry["basis"]), entry.get("batch"), str(path))
    return rates


# ---- units of each job ------------------------------------------------------------------------------------


def _variant_settings(config: dict, method: str, variant: str) -> dict[str, str]:
    """The sweep point of a sample job: the variant name's key=value pairs, or the headline for 'default'."""
    if variant != "default":
        return dict(item.split("=", 1) for item in variant.split(","))
    headline = {"s": config["sampling"]["guidance_scale"][0], "steps": config["sampling"]["steps"][0],
                "cfg": config["diffusion"]["cfg_finetune"][0]}
    if method == "unconditional" or (method == "clip-vqdiffusion" and not headline["cfg"]):
        headline["s"] = 1.0
    return {key: str(value).lower() for key, value in headline.items()}


def _tokenizer_steps(config: dict, train_images: int) -> tuple[int, int]:
    """(steps before the discriminator starts, steps with it) of the tokenizer's run."""
    spec = config["tokenizer"]["train"]
    total = spec["max_steps"] or spec["epochs"] * (train_images // spec["batch_size"])
    with_disc = 0 if spec["disc_weight"] == 0 else max(0, total - spec["disc_start"])
    return total - with_disc, with_disc


def job_cost(job: Job, config: dict, sizes: Mapping[str, int]) -> list[tuple[str, float, int | None, str]]:
    """The work of one job as (rate name, units, batch of a training step or None, description)."""
    rule, w = job.rule, job.wildcards
    d, c2l = config["diffusion"], config["clip2latent"]
    if rule == "tokenizer_train":
        before, after = _tokenizer_steps(config, sizes["train"])
        batch = config["tokenizer"]["train"]["batch_size"]
        return [("tokenizer_step_no_disc", before, batch, f"{before:,} steps before the discriminator"),
                ("tokenizer_step", after, batch, f"{after:,} steps with it")]
    if rule == "tokenizer_tokenize":
        return [("tokenizer_encode_image", sizes["train"], None, f"{sizes['train']:,} images")]
    if rule == "tokenizer_evaluate":
        return [("tokenizer_encode_image", sizes["reference"], None, f"{sizes['reference']:,} images encoded"),
                ("tokenizer_decode_image", sizes["reference"], None, "and decoded")]
    if rule == "clip_embed":
        return [("clip_conditioner_image", sizes["train"], None, f"{sizes['train']:,} images")]
    if rule == "clip_embed_prompts":
        return [("clip_conditioner_text", sizes["prompts"] + sizes["distribution"], None, "prompt texts")]
    if rule in ("diffusion_pretrain", "diffusion_control"):
        spec = d["pretrain"]
        return [("diffusion_step", spec["steps"], spec["batch_size"], f"{spec['steps']:,} steps")]
    if rule in ("diffusion_cfg_finetune", "diffusion_control_finetune"):
        spec = d["finetune"]
        return [("diffusion_step", spec["steps"], spec["batch_size"], f"{spec['steps']:,} steps")]
    if rule == "lafite_train":
        spec = config["lafite"]["train"]
        return [("lafite_step", spec["steps"], spec["batch_size"], f"{spec['steps']:,} steps")]
    if rule == "clip2latent_generator_train":
        spec = c2l["generator_train"]
        return [("stylegan2_step", spec["steps"], spec["batch_size"], f"{spec['steps']:,} steps")]
    if rule == "clip2latent_latent_sample":
        count = c2l["pairs"]["count"]
        return [("clip2latent_pair", count, None, f"{count:,} pairs")]
    if rule == "clip2latent_prior_train":
        spec = c2l["prior_train"]
        return [("prior_step", spec["steps"], spec["batch_size"], f"{spec['steps']:,} steps")]
    if rule == "sample":
        images = sizes[w["set"]] if w["set"] in sizes else sizes["alignment"]
        if w["method"] == "lafite":
            return [("lafite_image", images, None, f"{images:,} images")]
        if w["method"] == "clip2latent":
            return [("clip2latent_image", images, None, f"{images:,} images")]
        settings = _variant_settings(config, w["method"], w["variant"])
        steps = int(settings["steps"])
        guided = "s" in settings and float(settings["s"]) != 1.0
        name = "denoiser_sample_step_guided" if guided else "denoiser_sample_step"
        return [(name, images * steps, None, f"{images:,} images x {steps} steps"),
                ("tokenizer_decode_image", images, None, "decoded")]
    if rule == "metrics":
        images = sizes["alignment"] + sizes["distribution"]
        return [("judge_image", images, None, f"{images:,} images"), ("inception_image", images, None, "")]
    return []


def find_rate(rates: Mapping[str, Rate], name: str, batch: int | None) -> Rate | None:
    """The rate of `name` measured at `batch` (key "name@batch"), else at the nearest measured batch (scaled
    per sample by Rate.per_step), else the batch-free "name"."""
    if batch is not None:
        by_batch = {int(key.split("@", 1)[1]): rate for key, rate in rates.items() if key.startswith(f"{name}@")}
        if by_batch:
            nearest = min(by_batch, key=lambda b: (abs(b - batch), -b))
            found = by_batch[nearest]
            return found if found.batch is not None else Rate(found.seconds, found.basis, nearest, found.source)
    return rates.get(name)


STAGE_OF_RULE = {
    "tokenizer_train": "tokenizer training", "tokenizer_tokenize": "tokenizing the training set",
    "tokenizer_evaluate": "tokenizer evaluation", "clip_embed": "CLIP image embedding of the training set",
    "clip_embed_prompts": "CLIP text embedding of the prompts",
    "diffusion_pretrain": "CLIP-VQDiffusion pretraining (every alpha)",
    "diffusion_cfg_finetune": "CLIP-VQDiffusion CFG fine-tune (every alpha)",
    "diffusion_control": "controls: pretraining", "diffusion_control_finetune": "controls: second stage",
    "lafite_train": "LAFITE training", "clip2latent_generator_train": "clip2latent StyleGAN2 training",
    "clip2latent_latent_sample": "clip2latent (w, CLIP) pairs", "clip2latent_prior_train": "clip2latent prior training",
    "sample": "sampling (every sweep point, both sets)", "metrics": "metrics (judge CLIP + Inception)",
}


def predict(jobs: Sequence[Job], config: dict, sizes: Mapping[str, int], rates: Mapping[str, Rate]) -> list[StageCost]:
    """GPU seconds per stage (in the order of STAGE_OF_RULE), CPU-only jobs gathered in one last row."""
    stages: dict[str, StageCost] = {}
    cpu = StageCost("CPU-only jobs (downloads, preparation, report): not costed")
    for job in jobs:
        if job.rule in CPU_RULES or job.rule not in STAGE_OF_RULE:
            cpu.jobs += 1
            continue
        name = STAGE_OF_RULE[job.rule]
        stage = stages.setdefault(name, StageCost(name, ddp=job.rule in DDP_RULES))
        stage.jobs += 1
        seconds = 0.0
        for rate_name, units, batch, description in job_cost(job, config, sizes):
            if units == 0:
                continue
            rate = find_rate(rates, rate_name, batch)
            if rate is None:
                stage.missing.add(rate_name)
                continue
            unit_s, basis = rate.per_step(batch) if batch is not None else (rate.seconds, rate.basis)
            seconds += units * unit_s
            stage.bases.add(basis)
            if description and description not in stage.units and len(stage.units) < 3:
                stage.units.append(description)
        stage.gpu_seconds += seconds
        stage.longest_job_s = max(stage.longest_job_s, seconds)
    order = list(dict.fromkeys(STAGE_OF_RULE.values()))
    ordered = [stages[name] for name in order if name in stages]
    return ordered + ([cpu] if cpu.jobs else [])


def stage_table(stages: Sequence[StageCost], gpus: int) -> list[dict[str, Any]]:
    rows = []
    for s in stages:
        costed = s.gpu_seconds > 0 or not s.missing
        rows.append({
            "stage": s.stage, "jobs": s.jobs, "ddp": s.ddp,
            "gpu_hours": round(s.gpu_seconds / 3600, 2) if costed else None,
            "wall_hours_1_gpu": round(s.wall_seconds(1) / 3600, 2) if costed else None,
            f"wall_hours_{gpus}_gpus": round(s.wall_seconds(gpus) / 3600, 2) if costed else None,
            "basis": "; ".join(sorted(s.bases)) or "-",
            "missing": sorted(s.missing),
            "work": "; ".join(s.units),
        })
    return rows


def _hours(value: float | None) -> str:
    if value is None:
        return "missing"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def short_basis(basis: str) -> str:
    """The table's label of a basis: measured, derived (FLOPs), or a measured rate scaled to another batch."""
    if basis.startswith("derived from batch"):
        batch = basis.split()[3]
        return f"derived: {'measured' if ': measured' in basis else 'derived'} batch {batch} rate, scaled"
    if basis.startswith("derived"):
        return "derived (FLOPs)" if "FLOPs" in basis else "derived"
    if basis.startswith("measured"):
        return "measured"
    return basis.split(" (")[0]


def format_markdown(stages: Sequence[StageCost], gpus: int) -> str:
    lines = [f"| stage | jobs | work per job | GPU-hours | wall h, 1 GPU | wall h, {gpus} GPUs | basis |",
             "|---|---|---|---|---|---|---|"]
    total_gpu = total_wall = 0.0
    for s in stages:
        if s.stage.startswith("CPU-only"):
            lines.append(f"| {s.stage} | {s.jobs} | | | | | |")
            continue
        missing = f" (missing: {', '.join(sorted(s.missing))})" if s.missing else ""
        ddp = " (DDP)" if s.ddp else " (1 GPU a job)"
        lines.append(f"| {s.stage}{ddp} | {s.jobs} | {'; '.join(s.units)} | {_hours(s.gpu_seconds / 3600)}{missing} | "
                     f"{_hours(s.wall_seconds(1) / 3600)} | {_hours(s.wall_seconds(gpus) / 3600)} | "
                     f"{', '.join(sorted({short_basis(b) for b in s.bases})) or '-'} |")
        total_gpu += s.gpu_seconds
        total_wall += s.wall_seconds(gpus)
    incomplete = " (stages with missing rates not included)" if any(s.missing for s in stages) else ""
    longest = max((s.longest_job_s for s in stages if not s.ddp), default=0.0)
    lower = max(total_gpu / gpus, longest) / 3600
    lines.append(f"| **total**{incomplete} | {sum(s.jobs for s in stages)} | | **{_hours(total_gpu / 3600)}** | "
                 f"**{_hours(total_gpu / 3600)}** | **{_hours(lower)} to {_hours(total_wall / 3600)}** | |")
    bases = sorted({b for s in stages for b in s.bases})
    lines += ["", "Bases:"] + [f"- {b}" for b in bases]
    return "\n".join(lines)


def total_hours(stages: Sequence[StageCost], gpus: int) -> tuple[float, float, float]:
    """(GPU-hours, and the wall hours on `gpus` GPUs between a lower bound, max(GPU-hours / gpus, the longest
    single-GPU job), and an upper bound, the stages one after another) of the costed stages."""
    gpu = sum(s.gpu_seconds for s in stages)
    longest = max((s.longest_job_s for s in stages if not s.ddp), default=0.0)
    return gpu / 3600, max(gpu / gpus, longest) / 3600, sum(s.wall_seconds(gpus) for s in stages) / 3600
