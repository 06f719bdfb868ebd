# Paths, cross-key checks and input functions shared by every rule file.

import json
import os
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from clipvqd.worlds import get_world

RESULTS = Path("results") / config["run"]
REPORT = Path("reports") / config["run"]
LOGS = RESULTS / "logs"
BENCHMARKS = RESULTS / "benchmarks"
DATA = RESULTS / "data"
TOKENS = RESULTS / "tokens" / "train.json"
# One conda environment per rule family (--use-conda) with the package's dependencies; the package itself
# comes from this workflow's own source (clipvqd_command below). Paths relative to this file, so modules find them.
ENVS = {family: f"../../envs/{family}.yaml" for family in ("data", "clip", "train", "evaluation", "report")}

SOURCE = config["data"]["source"]
# torch-fidelity's precision/recall neighbourhood, which the metrics job uses (clipvqd.evaluation.fid
# DEFAULT_PRC_NEIGHBORHOOD; restated here because the plan-time checks import no torch, a test keeps them equal).
PRC_NEIGHBORHOOD = 3
IS_WORLD = SOURCE == "world"
CLIP_ROLES = ("conditioner", "judge")
STANDIN_ROLES = [r for r in CLIP_ROLES if config["clip"][r]["source"] == "standin"]
EXTERNAL_CLIP_ROLES = [r for r in CLIP_ROLES if config["clip"][r]["source"] != "standin"]
HAS_CAPTIONS = SOURCE in ("world", "coco")

# Every job inherits this process's id and ends itself when this Snakemake is gone (clipvqd/training/lifetime.py):
# a killed workflow leaves no orphan trainer writing the work folder its rerun resumes from. Under a
# cluster executor each job's own Snakemake reads this file again and puts its id here.
os.environ.update(CLIPVQD_STOP_WITH_PID=str(os.getpid()))


class ConfigError(ValueError):
    pass


def check_config():
    """Checks that span several keys (the schema checks each key on its own)."""
    for role in CLIP_ROLES:
        spec = config["clip"][role]
        if spec["source"] == "standin" and not IS_WORLD:
            raise ConfigError(
                f"clip.{role}.source is 'standin', which trains on a world's captioned pairs, "
                f"but data.source is '{SOURCE}'; use 'pretrained' or 'file'"
            )
        if spec["source"] == "file":
            if not spec["weights"]:
                raise ConfigError(f"clip.{role}.source is 'file' but clip.{role}.weights is not set")
            if not Path(spec["weights"]).is_file():
                raise ConfigError(f"clip.{role}.weights: file {spec['weights']} does not exist")
    names = {config["clip"][r]["standin"]["model_name"] for r in STANDIN_ROLES}
    if len(names) < len(STANDIN_ROLES):
        raise ConfigError("clip.conditioner.standin.model_name and clip.judge.standin.model_name must differ")
    if config["baselines"]["paired"] and not HAS_CAPTIONS:
        raise ConfigError(
            f"baselines.paired needs captions, which data.source '{SOURCE}' does not have; set it to false"
        )
    if IS_WORLD:
        world = get_world(config["data"]["world"]["name"])
        for number, combination in enumerate(config["data"]["world"]["heldout"]):
            try:
                world.validate_combination(combination, f"data.world.heldout[{number}]")
            except ValueError as error:
                # config.yaml (and the schema's default) hold the faces world's combinations; another world
                # needs its own, e.g. configs/world-scenes.yaml.
                raise ConfigError(
                    f"{error}; set data.world.heldout to combinations of world '{world.name}' "
                    f"(configs/world-scenes.yaml has the scenes world's)"
                ) from None
    if config["evaluation"]["prompts"] == "validation" and not IS_WORLD:
        raise ConfigError(
            f"evaluation.prompts is 'validation', but only a world writes a validation prompt table "
            f"(data.source is '{SOURCE}'); use 'test'"
        )
    if len(set(config["seeds"])) != len(config["seeds"]):
        raise ConfigError(f"seeds {config['seeds']} repeat a value; each value is a branch of its own")
    reference_size = config["data"]["world"]["sizes"]["reference"] if IS_WORLD else None
    distribution = config["evaluation"]["distribution_samples"]
    if reference_size is not None and distribution is not None and distribution > reference_size:
        raise ConfigError(
            f"evaluation.distribution_samples is {distribution}, but data.world.sizes.reference is "
            f"{reference_size}: the distribution set has one sample per reference image"
        )
    # Precision/recall compare each image with its PRC_NEIGHBORHOOD-th nearest neighbour, so a distribution set
    # or a reference split of that many images or fewer fails in the metrics job, after every sample is drawn.
    smallest = distribution or (reference_size if IS_WORLD else config["data"][SOURCE].get("reference_count"))
    if smallest is not None and smallest <= PRC_NEIGHBORHOOD:
        key = (
            "evaluation.distribution_samples"
            if distribution
            else ("data.world.sizes.reference" if IS_WORLD else f"data.{SOURCE}.reference_count")
        )
        raise ConfigError(
            f"{key} is {smallest}: precision/recall (neighbourhood {PRC_NEIGHBORHOOD}) need more than "
            f"{PRC_NEIGHBORHOOD} generated and reference images; use at least {PRC_NEIGHBORHOOD + 1}"
        )
    if IS_WORLD:
        spec = config["data"]["world"]["prompts"]
        table_size = spec["count"] + spec["ood_per_combination"] * len(config["data"]["world"]["heldout"])
        if config["sampling"]["best_of_prompts"] > table_size:
            raise ConfigError(
                f"sampling.best_of_prompts is {config['sampling']['best_of_prompts']}, more than the prompt table "
                f"holds (at most {table_size}: data.world.prompts.count + ood_per_combination per heldout combination)"
            )


check_config()


# ---- real data sets (data.ffhq, data.coco; the rules are in data.smk) -------------------------------------

DOWNLOADS = Path(config["data"]["downloads"])
# Local file names of the official COCO archives (their own names, so copies fetched by hand can be
# dropped into <data.downloads>/coco2014/; the prepare step checks their sha256 in any case).
COCO_ARCHIVES = {
    "train2014.zip": config["data"]["coco"]["archives"]["train2014"],
    "val2014.zip": config["data"]["coco"]["archives"]["val2014"],
    "annotations_trainval2014.zip": config["data"]["coco"]["archives"]["annotations"],
}
FFHQ_ROOT = config["data"]["ffhq"]["path"] or str(DOWNLOADS / "ffhq" / "images1024x1024")
# The 64 clip2latent prompts ship with the package: found in this workflow's source, not the working directory.
FFHQ_PROMPTS = config["data"]["ffhq"]["prompts_file"] or str(
    WORKFLOW_ROOT / "clipvqd" / "data" / "clip2latent-face-test.txt"
)


def check_data_config():
    """Local copies named in the config must exist: stop before any job, naming the key and the path."""
    if SOURCE == "ffhq":
        spec = config["data"]["ffhq"]
        if spec["path"] and not Path(spec["path"]).is_dir():
            raise ConfigError(f"data.ffhq.path: folder {spec['path']} does not exist")
        if not Path(FFHQ_PROMPTS).is_file():
            raise ConfigError(f"data.ffhq.prompts_file: file {FFHQ_PROMPTS} does not exist")
        if spec["image_size"] is not None and spec["image_size"] < spec["resolution"]:
            raise ConfigError(
                f"data.ffhq.image_size {spec['image_size']} is smaller than data.ffhq.resolution "
                f"{spec['resolution']}"
            )
    if SOURCE == "coco":
        path = config["data"]["coco"]["path"]
        if path:
            for sub in ("train2014", "val2014", "annotations"):
                if not (Path(path) / sub).is_dir():
                    raise ConfigError(
                        f"data.coco.path: {path} has no {sub}/ folder (expected train2014/, "
                        "val2014/ and annotations/ as extracted from the official zips)"
                    )


check_data_config()


def coco_prepare_inputs(wildcards):
    if config["data"]["coco"]["path"]:
        return {}
    return {"archives": [DOWNLOADS / "coco2014" / name for name in COCO_ARCHIVES]}


def coco_source_arguments(wildcards, input):
    if config["data"]["coco"]["path"]:
        return f"--root {shlex.quote(config['data']['coco']['path'])}"
    train, val, annotations = (shlex.quote(str(path)) for path in input.archives)
    hashes = as_json({name: spec["sha256"].lower() for name, spec in COCO_ARCHIVES.items()})
    return f"--train-zip {train} --val-zip {val} --annotations-zip {annotations} --inputs-sha256 {shlex.quote(hashes)}"


def as_json(block):
    return json.dumps(block, sort_keys=True)


def run_seed(offset=0):
    """Seed of the shared stages (data, CLIPs, oracle, tokenizer, metrics): the config's `seed` plus the rule's
    offset."""
    return config["seed"] + offset


# ---- training seeds: every generator and its sampling is trained and drawn once per value of `seeds` ------
# The data, the CLIPs, the oracle and the tokenizer are shared infrastructure (the paper's pretrained VQGAN
# and CLIP play that role) fixed by `seed`; each value s of `seeds` is a branch of its own
# (results/<run>/models/seed=<s>/, samples/seed=<s>/) whose stages draw from s * SEED_STRIDE + the stage's
# offset, so no two stages of two branches share a stream. With seeds [0] and seed 0 the stages draw what
# they drew before seeds were branches.

SEEDS = [int(value) for value in config["seeds"]]
SEED_STRIDE = 1000  # > every stage offset; the schema caps seeds at 999


wildcard_constraints:
    seed=r"\d+",


def generator_seed(offset=0):
    """params function: the seed of a generator stage (training or sampling) on the job's seed branch."""
    return lambda wildcards: int(wildcards.seed) * SEED_STRIDE + offset


def seed_work(name):
    """params function: a trainer's resume folder `name` (its {wildcards} filled in) on the job's seed branch,
    results/<run>/work/seed=<s>/<name>."""
    return lambda wildcards: seed_dir("work", wildcards.seed) / name.format(**dict(wildcards.items()))


def seed_dir(kind, seed):
    return RESULTS / kind / f"seed={seed}"


# ---- how jobs run: the package, threads, GPUs, device --------------------------------------------------

# Every command runs this workflow's own clipvqd (WORKFLOW_ROOT, set in the Snakefile), put first on
# PYTHONPATH by the command itself: Snakemake clears PYTHONPATH for --use-conda jobs, the calling
# environment may have another clipvqd installed or none (a workflow using this one as a module), and a
# module's source may be read-only, so nothing is installed from it. The folder reaches the command through
# the environment, not the command text: that text is a rerun trigger, and moving the checkout must not
# retrain anything. SLURM jobs get it too (sbatch --export=ALL, and the job's Snakemake parses this file).
os.environ["CLIPVQD_SOURCE"] = str(WORKFLOW_ROOT)


envvars:
    "CLIPVQD_SOURCE",


WITH_SOURCE = 'export PYTHONPATH="$CLIPVQD_SOURCE${{PYTHONPATH:+:$PYTHONPATH}}"; '


def clipvqd_command(arguments, options=""):
    """Shell text that runs `python -m clipvqd <arguments>` from this workflow's own source; `options` (e.g. an
    overlay's, empty without it, so that the text of the default run's rules stays the same) go before the log."""
    return f"{WITH_SOURCE}python -m clipvqd {with_options(arguments, options)}"


def with_options(arguments, options):
    """`arguments` with `options` inserted before their log redirection."""
    if not options:
        return arguments
    redirect = " > {log:q} 2>&1"
    if not arguments.endswith(redirect):
        raise ValueError(f"cannot add {options!r}: the command does not end with{redirect!r}")
    return f"{arguments[: -len(redirect)]}{options}{redirect}"


# Threads: Snakemake exports a job's threads as OMP_NUM_THREADS and caps them at --cores; the commands pass
# them on to torch.set_num_threads (--threads). See torch_threads for the default.
TORCH_THREADS_SHARE = 4


def torch_threads(wildcards):
    """threads.torch, else a quarter of --cores (at least 1): the DAG usually has about four torch jobs
    ready at once (two CLIPs, tokenizer and oracle; then the diffusion models beside the two baselines), and
    one thread per job on a small machine, where a second thread per job measured slower than a second job
    (README, "On a workstation"). On SLURM the profile's set-threads decide."""
    if config["threads"]["torch"]:
        return config["threads"]["torch"]
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores (a cluster executor): one thread unless set-threads says more
        return 1
    return max(1, cores // TORCH_THREADS_SHARE)


def data_workers(wildcards):
    """threads.data, else every core Snakemake was given: dataset preparation runs early and mostly alone."""
    if config["threads"]["data"]:
        return config["threads"]["data"]
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def all_cores(wildcards):
    """Every core Snakemake was given (1 under a cluster executor): a job that must run alone."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# GPUs: with device cuda or auto, every rule that can compute on a GPU asks for the `gpu` resource (1, or
# ddp_gpus for the DDP diffusion trainer), so `--resources gpu=N` on a workstation and the SLURM profile's
# set-resources schedule them; with cpu they ask for none. The device itself is a resource, not a param:
# params are a rerun trigger, and continuing a finished CPU run on a GPU (or the reverse) must not retrain.
DEVICE = config["device"]
GPU = 0 if DEVICE == "cpu" else 1
DDP_GPUS = 0 if DEVICE == "cpu" else config["ddp_gpus"]


# keep_final_snapshots: false removes a trainer's work folder (its last resume snapshot) once the job has
# written its weights; `&&` leaves it in place when the trainer fails or is killed, so a rerun resumes.
REMOVE_FINISHED_WORK = "" if config["keep_final_snapshots"] else " && rm -rf -- {params.work:q}"
# ... and then the trainer does not write that snapshot at all (removed a moment later; 7.7 GB for the paper's
# 24x512 denoiser, and large for the f = 16 tokenizer and the 256 px StyleGANs too). clipvqd_trainer adds both
# to every trainer; both are empty with the default true, so that the text of the default run's rules stays.
NO_FINAL_SNAPSHOT = "" if config["keep_final_snapshots"] else " --no-final-snapshot"


def clipvqd_trainer(arguments, ddp, options=""):
    """Shell text that runs `python -m clipvqd <arguments>`, or, with ddp and a job's gpu resource > 1,
    `torchrun --standalone --nproc_per_node=<gpu> -m clipvqd <arguments>` (one DDP process per GPU).
    A trainer without DDP refuses more than one GPU instead of silently leaving the others idle. The
    launcher is chosen by the job's shell from resources.gpu rather than by a params function: params are a
    rerun trigger, and moving a finished run from a laptop to a cluster must not retrain. `options` go before
    the log redirection (with_options), then keep_final_snapshots' --no-final-snapshot; its work folder removal
    comes last, after the trainer succeeded."""
    if ddp:
        launcher = (
            "$(if [ {resources.gpu:q} -gt 1 ]; then echo torchrun --standalone --nnodes=1"
            " --nproc_per_node={resources.gpu:q}; else echo python; fi) -m clipvqd "
        )
    else:
        launcher = (
            "if [ {resources.gpu:q} -gt 1 ]; then echo 'resources.gpu={resources.gpu:q}, but this trainer"
            " runs as one process (no DDP support); request gpu=1' >&2; exit 1; fi; python -m clipvqd "
        )
    return f"{WITH_SOURCE}{launcher}{with_options(arguments, options + NO_FINAL_SNAPSHOT)}{REMOVE_FINISHED_WORK}"


# ---- methods and their variants ------------------------------------------------------------------------

HEADLINE = {
    "alpha": config["diffusion"]["alpha"][0],
    "cfg": config["diffusion"]["cfg_finetune"][0],
    "s": config["sampling"]["guidance_scale"][0],
    "r": config["sampling"]["truncation_r"][0],
    "steps": config["sampling"]["steps"][0],
    "purity": config["sampling"]["purity"][0],
}
SWEEPS = {
    "alpha": config["diffusion"]["alpha"],
    "cfg": config["diffusion"]["cfg_finetune"],
    "s": config["sampling"]["guidance_scale"],
    "r": config["sampling"]["truncation_r"],
    "steps": config["sampling"]["steps"],
    "purity": config["sampling"]["purity"],
}
# Which settings each diffusion-based method has (the controls have no α and no separate CFG stage).
METHOD_SETTINGS = {
    "clip-vqdiffusion": ("alpha", "cfg", "s", "r", "steps", "purity"),
    "paired": ("s", "r", "steps", "purity"),
    "unconditional": ("r", "steps", "purity"),
}


# Every method the workflow knows, in the report's order (the `sample` and `metrics` rules serve each).
ALL_METHODS = ("clip-vqdiffusion", "paired", "unconditional", "lafite", "clip2latent")


def methods():
    chosen = ["clip-vqdiffusion"]
    chosen += [m for m in ("paired", "unconditional", "lafite", "clip2latent") if config["baselines"][m]]
    return chosen


def variant_name(settings):
    return ",".join(f"{key}={str(value).lower()}" for key, value in settings.items())


def variants(method):
    """'default' for the headline settings, plus one variant per non-headline sweep value (one at a time)."""
    if method not in METHOD_SETTINGS:
        return {"default": {}}
    keys = METHOD_SETTINGS[method]
    found = {"default": sampleable({k: HEADLINE[k] for k in keys})}
    for key in keys:
        for value in SWEEPS[key][1:]:
            settings = sampleable({k: HEADLINE[k] for k in keys} | {key: value})
            if settings not in found.values():
                found[variant_name(settings)] = settings
    return found


def sampleable(settings):
    """A model pretrained without condition dropout has no trained null vector, so guidance s != 1 is
    undefined for it (the sampler refuses it): a cfg=false point samples at s = 1, named so, and so does the
    paired control under a cfg=false headline. A point that
    becomes another one (cfg=false as the headline with a guidance sweep) is planned once."""
    # The paired control has no cfg key of its own: it is matched to the headline's chain (diffusion_model).
    if not settings.get("cfg", HEADLINE["cfg"]) and "s" in settings:
        return settings | {"s": 1.0}
    return settings


def variant_settings(method, variant):
    if variant in CURVE_VARIANTS:  # a point of the compute curve samples with the headline settings
        return variants(method)["default"]
    table = variants(method)
    if variant not in table:
        raise ValueError(f"unknown variant '{variant}' of method '{method}' (known: {sorted(table)})")
    return table[variant]


def sample_sets():
    return [(m, v) for m in methods() for v in variants(m)]


# The metrics rule's outputs share a folder ({variant}.csv, {variant}.units.csv, ...): its variant wildcard
# matches only the variants the config defines, so "default.units" can never be read as a variant.
# ---- quality versus training compute (evaluation.compute_curve; none by default) ------------------------------
# Each fraction f is a variant budget=<f> of every method: its models live in a budget=<f>/ folder beside the
# headline ones (the first stage's snapshot, kept by its trainer; a second stage run for f of its steps by the
# rules of compute_curve.smk), and the sample and metrics rules serve it like any variant.
CURVE_FRACTIONS = sorted(float(f) for f in config["evaluation"]["compute_curve"]["fractions"])
CURVE_VARIANTS = {f"budget={fraction:g}": fraction for fraction in CURVE_FRACTIONS}


wildcard_constraints:
    budget=r"0\.\d+",
    alpha=r"[^/]+",


def curve_budget(variant):
    """'0.25' for the variant budget=0.25, None for any other."""
    return variant.split("=", 1)[1] if variant in CURVE_VARIANTS else None


def at_budget(path, budget):
    """`path` of a headline model, or of the same model at a fraction of the budget (budget=<f>/ beside it)."""
    path = Path(path)
    return path if budget is None else path.parent / f"budget={budget}" / path.name


VARIANT_PATTERN = "|".join(
    sorted({re.escape(v) for m in ALL_METHODS for v in [*variants(m), *CURVE_VARIANTS]}, key=len, reverse=True)
)


# ---- the two evaluation sets of every (method, variant, seed) (docs/design.md §6) ----------------------------
# alignment: the prompt table x samples_per_prompt (the test prompts; "validation" in a tuning run, which is
# measured on the validation prompts instead and kept in its own folder); distribution: one sample per
# reference image, prompted with its caption.
ALIGNMENT_SET = "alignment" if config["evaluation"]["prompts"] == "test" else "validation"
EVALUATION_SETS = (ALIGNMENT_SET, "distribution")
PROMPT_TABLES = {
    "alignment": DATA / "prompts.csv",
    "validation": DATA / "validation_prompts.csv",
    "distribution": DATA / "distribution_prompts.csv",
}
PROMPT_EMBEDDINGS = {
    "alignment": RESULTS / "embeddings" / "prompts.safetensors",
    "validation": RESULTS / "embeddings" / "validation_prompts.safetensors",
    "distribution": RESULTS / "embeddings" / "distribution_prompts.safetensors",
}
# Offsets of the sampling seeds: each set draws from its own streams.
SAMPLE_SEED_OFFSETS = {"alignment": 2, "validation": 3, "distribution": 5}


def sample_manifest(method, variant, seed, evaluation_set):
    return seed_dir("samples", seed) / method / variant / evaluation_set / "manifest.csv"


def plan_samples_per_prompt(wildcards):
    """The sample rule's plan: samples per prompt (one per reference image in the distribution set)."""
    return 1 if wildcards.set == "distribution" else config["sampling"]["samples_per_prompt"]


def plan_best_of_prompts(wildcards):
    """The sample rule's plan: how many first prompts get 16 samples for best-of-16 (the alignment set only)."""
    return 0 if wildcards.set == "distribution" else config["sampling"]["best_of_prompts"]


def set_sample_seed(seed, evaluation_set):
    """The seed the `evaluation_set` of training seed `seed` is drawn from (the same for every method)."""
    return int(seed) * SEED_STRIDE + SAMPLE_SEED_OFFSETS[evaluation_set]


def sample_seed(wildcards):
    return set_sample_seed(wildcards.seed, wildcards.set)


# The plans every sample set holds (docs/design.md §3 and §6), as the metrics and report commands take them
# (their prompt tables are inputs): the sample rule draws them; the metrics and report jobs refuse a set that
# does not hold its plan exactly, and the report sets whose rows differ between methods.


def metrics_plan_arguments():
    """Every seed's alignment set (prompt table x samples_per_prompt, 16 for the first best_of_prompts) and
    distribution set (one sample per row of its table), each drawn from its seed's sampling seed."""
    spec = config["sampling"]
    return " ".join(
        [
            f"--samples-per-prompt {spec['samples_per_prompt']} --best-of-prompts {spec['best_of_prompts']}",
            "--sample-seeds",
            *(str(set_sample_seed(seed, ALIGNMENT_SET)) for seed in SEEDS),
            "--distribution-sample-seeds",
            *(str(set_sample_seed(seed, "distribution")) for seed in SEEDS),
        ]
    )


def report_plan_arguments():
    """The plan of the report's sample grids: the first seed's alignment sets."""
    spec = config["sampling"]
    return (
        f"--samples-per-prompt {spec['samples_per_prompt']} --best-of-prompts {spec['best_of_prompts']}"
        f" --sample-seed {set_sample_seed(SEEDS[0], ALIGNMENT_SET)}"
        f" --prompt-prefix={shlex.quote(config['data']['prompt_prefix'])}"
    )


# ---- paths --------------------------------------------------------------------------------------------


def clip_file(role):
    return RESULTS / "clip" / role / "model.safetensors"


def diffusion_model(method, settings, seed):
    if method == "clip-vqdiffusion":
        stage = "cfg" if settings["cfg"] else "pretrain"
        return seed_dir("models", seed) / "clip-vqdiffusion" / f"alpha={settings['alpha']}" / f"{stage}.safetensors"
    # A control is the language-free chain with another condition: sampled after its second stage whenever the
    # headline CLIP-VQDiffusion is (its cfg setting), so that both have trained the same steps.
    stage = "finetune" if HEADLINE["cfg"] else "pretrain"
    return seed_dir("models", seed) / method / f"{stage}.safetensors"


# The controls' second stage: the paired control's CFG fine-tune, the unconditional control's continued training.
CONTROL_FINETUNE_MODES = {"paired": "paired_cfg_finetune", "unconditional": "unconditional"}


def control_embeddings(wildcards):
    """The paired control reads the captions' text embeddings; the unconditional one reads the image embeddings
    only to size its null condition."""
    name = "train_captions" if wildcards.control == "paired" else "train_images"
    return RESULTS / "embeddings" / f"{name}.safetensors"


def diffusion_params(stage):
    """The denoiser sizes plus one training block (pretrain, which the controls share, or finetune), as JSON."""
    return as_json({"model": config["diffusion"]["model"], "train": config["diffusion"][stage]})


def sample_settings(wildcards):
    """The sampling settings of a (method, variant) as JSON: the sweep point (docs/design.md §6 names) for the
    diffusion methods and LAFITE (which records it only), the clip2latent.sampling block for clip2latent."""
    if wildcards.method == "clip2latent":
        return as_json(config["clip2latent"]["sampling"])
    settings = variant_settings(wildcards.method, wildcards.variant)
    if "s" in settings:  # a guided method: how its guidance branch feeds the null vector
        settings = dict(settings, null_condition=config["sampling"]["null_condition"])
    return as_json(settings)


def sample_inputs(wildcards):
    """Inputs of sampling one (method, variant): the prompts, their embeddings and the method's model files
    (each of the latter is passed to `python -m clipvqd sample` under its own name, see sample_model_arguments)."""
    settings = variant_settings(wildcards.method, wildcards.variant)
    budget = curve_budget(wildcards.variant)  # a compute-curve point: the same models at a fraction of the budget
    models = seed_dir("models", wildcards.seed)
    inputs = {"prompts": PROMPT_TABLES[wildcards.set], "prompt_embeddings": PROMPT_EMBEDDINGS[wildcards.set]}
    if wildcards.method in METHOD_SETTINGS:
        inputs["model"] = at_budget(diffusion_model(wildcards.method, settings, wildcards.seed), budget)
        inputs["tokenizer"] = RESULTS / "tokenizer" / "model.safetensors"
        inputs["codebook"] = RESULTS / "tokenizer" / "codebook.json"
    elif wildcards.method == "lafite":
        inputs["model"] = at_budget(models / "lafite" / "generator.safetensors", budget)
        inputs["clip"] = clip_file("conditioner")
    else:
        inputs["model"] = at_budget(models / "clip2latent" / "prior.safetensors", budget)
        inputs["generator"] = at_budget(models / "clip2latent" / "generator.safetensors", budget)
        inputs["clip"] = clip_file("conditioner")  # checked against the prior's record of its CLIP
    return inputs


SAMPLE_PROMPT_INPUTS = ("prompts", "prompt_embeddings")


def sample_model_arguments(wildcards, input):
    """`--model ... --tokenizer ...`: every model file of sample_inputs as the option of the same name."""
    return " ".join(
        f"--{name.replace('_', '-')} {shlex.quote(str(path))}"
        for name, path in input.items()
        if name not in SAMPLE_PROMPT_INPUTS
    )


def metrics_inputs(wildcards):
    """Both evaluation sets of every seed of the branch, the two prompt tables, the CLIPs and the oracle."""
    inputs = {
        "samples": [sample_manifest(wildcards.method, wildcards.variant, seed, ALIGNMENT_SET) for seed in SEEDS],
        "distribution": [sample_manifest(wildcards.method, wildcards.variant, seed, "distribution") for seed in SEEDS],
        "prompts": PROMPT_TABLES[ALIGNMENT_SET],
        "distribution_prompts": PROMPT_TABLES["distribution"],
        "conditioner": clip_file("conditioner"),
        "judge": clip_file("judge"),
    }
    if IS_WORLD:
        inputs["oracle"] = RESULTS / "oracle" / "model.safetensors"
    return inputs


def quality_files():
    """Files that qualify every result: CLIP, oracle and tokenizer quality."""
    files = [RESULTS / "tokenizer" / "metrics.json"]
    if IS_WORLD:
        files += [RESULTS / "clip" / role / "metrics.json" for role in CLIP_ROLES]
        files.append(RESULTS / "oracle" / "metrics.json")
    return files


def oracle_calibration_files():
    """The oracle's accuracy on degraded renders (worlds), shown in the report."""
    return [RESULTS / "oracle" / "calibration.json"] if IS_WORLD else []


def foundation_targets():
    targets = [
        DATA / "train.csv",
        DATA / "reference.csv",
        PROMPT_TABLES[ALIGNMENT_SET],
        PROMPT_TABLES["distribution"],
        RESULTS / "embeddings" / "train_images.safetensors",
        PROMPT_EMBEDDINGS[ALIGNMENT_SET],
        PROMPT_EMBEDDINGS["distribution"],
    ]
    targets += [clip_file(role) for role in CLIP_ROLES]
    if HAS_CAPTIONS and config["baselines"]["paired"]:
        targets.append(RESULTS / "embeddings" / "train_captions.safetensors")
    if IS_WORLD:
        targets += [RESULTS / "clip" / role / "metrics.json" for role in CLIP_ROLES]
        targets.append(RESULTS / "oracle" / "metrics.json")
    return targets


# ---- evaluation and the report ----------------------------------------------------------------------------


def check_evaluation_config():
    """An Inception file for FID is a pickle: it is loaded only with its checksum, and must exist."""
    spec = config["evaluation"]
    weights = spec["feature_extractor_weights_path"]
    if weights is None:
        return
    if not spec["feature_extractor_weights_sha256"]:
        raise ConfigError(
            "evaluation.feature_extractor_weights_path is set but evaluation.feature_extractor_weights_sha256 "
            "is not; the Inception file is unpickled only after its sha256 is checked"
        )
    if not Path(weights).is_file():
        raise ConfigError(f"evaluation.feature_extractor_weights_path: file {weights} does not exist")


check_evaluation_config()

FEATURE_CACHE = RESULTS / "work" / "feature-cache"


# ---- model and training settings: the library's own dataclasses, built now --------------------------------
# The schema bounds each number on its own; the dataclasses (the ones the jobs build) know the rules that
# span keys (heads dividing widths, resolutions divisible by the downsampling, steps dividing T, ...). They
# are built here, while Snakemake reads the Snakefile, so a bad value stops the run before any job, in one
# line naming the key, instead of inside the job as a torch traceback. Their modules import no torch.


def build_block(cls, values, key):
    """`cls` from the config block at `key` (a dotted config path), or one ConfigError line naming it."""
    from clipvqd.config_blocks import from_mapping

    try:
        return from_mapping(cls, values, key)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}: {error}") from None


def data_resolution():
    """(key, side in pixels) of the images every generator trains on."""
    return f"data.{SOURCE}.resolution", config["data"][SOURCE]["resolution"]


def training_images():
    """How many images the generators train on, where the config alone says (worlds), else None."""
    return config["data"]["world"]["sizes"]["train"] if IS_WORLD else None


def check_resolution(key, resolution, resize_key):
    data_key, side = data_resolution()
    if resolution != side and not config_value(resize_key):
        raise ConfigError(
            f"{key} is {resolution} but {data_key} is {side}: the images would be refused; "
            f"set them equal, or {resize_key}: true to resize the images"
        )


def check_batch(key, batch_size, count, what):
    if count is not None and batch_size > count:
        raise ConfigError(f"{key} is {batch_size}, more than the {count} {what} (data.world.sizes)")


def config_value(key):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def check_model_config():
    from clipvqd.clip.standin_config import StandinClipConfig
    from clipvqd.clip2latent import config as c2l
    from clipvqd.diffusion.model_config import DenoiserConfig
    from clipvqd.diffusion.train_config import DiffusionTrainConfig
    from clipvqd.lafite.config import LafiteModelConfig, LafiteTrainConfig
    from clipvqd.tokenizer.config import TokenizerConfig, TokenizerTrainConfig

    images = training_images()
    for role in STANDIN_ROLES:
        key = f"clip.{role}.standin"
        standin = build_block(StandinClipConfig, config["clip"][role]["standin"], key)
        world = config["data"]["world"]
        split = "judge_pairs" if role == "judge" else "clip_pairs"  # each role trains on its own split
        pairs = int(world["sizes"][split] * (1 - world["clip_holdout_fraction"]))
        if role != "judge":
            pairs += world["sizes"]["clip_pairs_extra"]  # continue past the held-out fold
        check_batch(f"{key}.batch_size", standin.batch_size, pairs, "captioned pairs it trains on")
    # The condition length comes from the CLIP: known for a stand-in, 512 (ViT-B/32) as a stand-in value else.
    condition_dim = config["clip"]["conditioner"]["standin"]["embed_dim"] if "conditioner" in STANDIN_ROLES else 512

    tokenizer = build_block(TokenizerConfig, config["tokenizer"]["model"], "tokenizer.model")
    tokenizer_train = build_block(TokenizerTrainConfig, config["tokenizer"]["train"], "tokenizer.train")
    check_resolution("tokenizer.model.resolution", tokenizer.resolution, "tokenizer.resize")
    check_batch("tokenizer.train.batch_size", tokenizer_train.batch_size, images, "training images")

    height, width = tokenizer.token_grid
    denoiser = build_block(
        DenoiserConfig,
        dict(
            config["diffusion"]["model"],
            num_codes=tokenizer.codebook_size,
            grid_height=height,
            grid_width=width,
            condition_dim=condition_dim,
        ),
        "diffusion.model",
    )
    for stage in ("pretrain", "finetune"):
        train = build_block(DiffusionTrainConfig, config["diffusion"][stage], f"diffusion.{stage}")
        check_batch(f"diffusion.{stage}.batch_size", train.batch_size, images, "training images")
    for steps in config["sampling"]["steps"]:
        if steps > denoiser.num_steps:
            raise ConfigError(
                f"sampling.steps {steps} is more than diffusion.model.num_steps {denoiser.num_steps} (T): "
                "a sampler takes at most T reverse steps"
            )

    chosen = methods()
    if "lafite" in chosen:
        lafite = build_block(
            LafiteModelConfig, dict(config["lafite"]["model"], condition_dim=condition_dim), "lafite.model"
        )
        lafite_train = build_block(LafiteTrainConfig, config["lafite"]["train"], "lafite.train")
        check_resolution("lafite.model.resolution", lafite.resolution, "lafite.resize")
        check_batch("lafite.train.batch_size", lafite_train.batch_size, images, "training images")
    if "clip2latent" in chosen:
        block = config["clip2latent"]
        generator = build_block(c2l.GeneratorModelConfig, block["generator_model"], "clip2latent.generator_model")
        generator_train = build_block(c2l.GeneratorTrainConfig, block["generator_train"], "clip2latent.generator_train")
        build_block(c2l.PairsConfig, block["pairs"], "clip2latent.pairs")
        prior = build_block(
            c2l.PriorModelConfig,
            dict(block["prior_model"], latent_dim=generator.w_dim, embed_dim=condition_dim),
            "clip2latent.prior_model",
        )
        build_block(c2l.PriorTrainConfig, block["prior_train"], "clip2latent.prior_train")
        sampling = build_block(c2l.PriorSamplingConfig, block["sampling"], "clip2latent.sampling")
        check_resolution("clip2latent.generator_model.resolution", generator.resolution, "clip2latent.resize")
        check_batch("clip2latent.generator_train.batch_size", generator_train.batch_size, images, "training images")
        if prior.timesteps % sampling.steps:
            raise ConfigError(
                f"clip2latent.sampling.steps {sampling.steps} does not divide clip2latent.prior_model.timesteps "
                f"{prior.timesteps} (the respaced schedule takes every T/steps-th timestep)"
            )


check_model_config()


# ---- pretrained weights fetched by the workflow (weights.*; the rules are in data.smk) ---------------------
# A path in the config wins; else a fetched, sha256-checked file; else none (the offline default).

WEIGHTS_DIR = DOWNLOADS / "weights"
FETCHED_WEIGHTS = {}
if config["weights"]["inception"]["fetch"] and not config["evaluation"]["feature_extractor_weights_path"]:
    FETCHED_WEIGHTS["inception"] = config["weights"]["inception"]
if config["weights"]["lpips"]["fetch"] and not (
    config["tokenizer"]["train"]["lpips_vgg_weights"] or config["tokenizer"]["train"]["lpips_linear_weights"]
):
    FETCHED_WEIGHTS["lpips_vgg"] = config["weights"]["lpips"]["vgg"]
    FETCHED_WEIGHTS["lpips_linear"] = config["weights"]["lpips"]["linear"]


def inception_weights_file():
    """The Inception file the metrics jobs read: the configured path, the fetched file, or none."""
    if config["evaluation"]["feature_extractor_weights_path"]:
        return config["evaluation"]["feature_extractor_weights_path"]
    return str(WEIGHTS_DIR / "inception.pth") if "inception" in FETCHED_WEIGHTS else []


def inception_weights_sha256():
    if config["evaluation"]["feature_extractor_weights_path"]:
        return config["evaluation"]["feature_extractor_weights_sha256"]
    return FETCHED_WEIGHTS["inception"]["sha256"]


def lpips_weight_files():
    """Fetched LPIPS files (converted to safetensors) for the tokenizer, or {} (configured paths, or none)."""
    if "lpips_vgg" not in FETCHED_WEIGHTS:
        return {}
    return {
        "lpips_vgg": WEIGHTS_DIR / "lpips_vgg.safetensors",
        "lpips_linear": WEIGHTS_DIR / "lpips_linear.safetensors",
    }


def tokenizer_params():
    """The tokenizer block as JSON, with the fetched LPIPS files filled in when fetching is on. Their
    sources were checked against weights.lpips.*.sha256 by the download and convert rules."""
    files = lpips_weight_files()
    if not files:
        return as_json(config["tokenizer"])
    train = dict(
        config["tokenizer"]["train"],
        lpips_vgg_weights=str(files["lpips_vgg"]),
        lpips_linear_weights=str(files["lpips_linear"]),
    )
    return as_json(dict(config["tokenizer"], train=train))


def reference_name():
    """The FID reference as the protocol (and so the report) names it, with what the generators trained on."""
    if IS_WORLD:
        source = f"{config['data']['world']['name']} world"
    elif SOURCE == "coco":
        spec = config["data"]["coco"]
        source = f"COCO 2014 val2014 images at {spec['resolution']} px; generators trained on {spec['train_on']}"
        if spec["train_on"] == "train+val":
            source += " (the reference images are among the training images, as in the paper's released code)"
    else:
        source = f"FFHQ training images at {config['data']['ffhq']['resolution']} px (FFHQ has no held-out split)"
    return f"{source}, reference split ({DATA / 'reference.csv'})"


def inception_arguments(wildcards, input):
    """Command-line options that select Inception for FID, or none (the judge CLIP's image tower)."""
    if not input.inception:
        return ""
    sha256 = inception_weights_sha256()
    return f"--inception-weights {shlex.quote(str(input.inception))} --inception-sha256 {shlex.quote(sha256)}"


def oracle_arguments(wildcards, input):
    return f"--oracle {shlex.quote(str(input.oracle))}" if IS_WORLD else ""


def branch_files(suffix):
    """One file per (method, variant) branch of the metrics stage: the table, its per-seed values, units and
    features, its protocol, its best-of-16 list."""
    return [RESULTS / "metrics" / method / f"{variant}{suffix}" for method, variant in sample_sets()]


def report_sample_grids():
    """The headline (default) alignment set of every method at the first seed, shown as per-prompt grids."""
    return {method: sample_manifest(method, "default", SEEDS[0], ALIGNMENT_SET) for method in methods()}


def distribution_caption_arguments(wildcards, input):
    """Where the distribution set's prompts come from, as a command-line fragment (each value quoted): the
    world's summary (its held-out combinations are refused), or FFHQ's generic prompt; COCO: the captions."""
    if IS_WORLD:
        return f"--world-summary {shlex.quote(str(input.summary))}"
    if SOURCE == "ffhq":
        return f"--generic-prompt {shlex.quote(config['data']['ffhq']['distribution_prompt'])}"
    return ""


def distribution_caption_source():
    if SOURCE == "ffhq":
        return (
            f"FFHQ has no captions: every reference image is prompted with the generic caption "
            f"{config['data']['prompt_prefix'] + config['data']['ffhq']['distribution_prompt']!r} "
            "(data.ffhq.distribution_prompt), which asks for a face and nothing in particular; FID and the other "
            "distribution metrics then measure quality and diversity under a neutral prompt, the closest text "
            "analogue of FFHQ's unconditional FID"
        )
    if SOURCE == "coco":
        return "each reference (val2014) image's own caption, a seeded choice among its five (COCO FID-30k style)"
    return "each reference image's own caption, from the world's caption templates (the reference split's stream)"


def evaluation_design():
    """protocol.json's `design`: the evaluation as a whole (docs/design.md §6)."""
    spec = config["evaluation"]
    return {
        "prompts": spec["prompts"],
        "headline_numbers": (
            "test prompts"
            if spec["prompts"] == "test"
            else "VALIDATION prompts: a tuning run, not a result; the report's numbers come from the test prompts"
        ),
        "sets": {
            ALIGNMENT_SET: {
                "prompt_table": str(PROMPT_TABLES[ALIGNMENT_SET]),
                "samples_per_prompt": config["sampling"]["samples_per_prompt"],
                "best_of_16_prompts": config["sampling"]["best_of_prompts"],
                "metrics": "clipscore_best16, clipscore_mean, clipscore_judge_mean, attr_acc, attr_acc_ood, attr_acc/*, "
                "within_prompt_diversity (judge-CLIP image features, in-distribution prompts)",
                "use": "prompt alignment: every prompt contributes its first samples_per_prompt samples; the first "
                "best_of_16_prompts prompts have 16 for best-of-16",
            },
            "distribution": {
                "prompt_table": str(PROMPT_TABLES["distribution"]),
                "size": spec["distribution_samples"] or "the reference split",
                "prompted_with": distribution_caption_source(),
                "held_out_combinations": "never: the reference split renders none (checked when the table is made)",
                "metrics": "fid, kid, precision, recall, cmmd",
                "reference": "exactly the reference images whose captions prompted the set",
            },
        },
        "seeds": {
            "values": SEEDS,
            "branches": "the training seed of every generator (diffusion models, LAFITE, clip2latent generator, pairs "
            "and prior) and of their sampling; results per seed under models/seed=N/ and samples/seed=N/; "
            "metrics.csv holds the mean over seeds, metrics_by_seed.csv each seed",
            "fixed_by_seed": {
                "seed": config["seed"],
                "what": "the data, the CLIPs, the attribute oracle and the tokenizer: shared infrastructure, as the "
                "paper's pretrained VQGAN and CLIP are",
            },
        },
        "bootstrap": {
            "replicates": spec["bootstrap"]["replicates"],
            "confidence": spec["bootstrap"]["confidence"],
            "seed": spec["bootstrap"]["seed"],
            "interval": "percentile; FID: the estimate -/+ z bootstrap standard errors, its lower end at 0 (a resample "
            "holds about 63% distinct images, which shifts FID's replicates upwards)",
            "levels": "two: resample the seeds (with replacement), then the units of each drawn seed",
            "units": {
                "alignment metrics": "prompts (samples of one prompt are correlated, so they are never resampled alone)",
                "fid, kid, cmmd": "distribution-set images, each with its reference image (features cached by the "
                "metrics job)",
                "precision": "generated images, reference fixed (k-NN radii collapse on duplicated images)",
                "recall": "reference images, generated set fixed",
            },
        },
        "significance": {
            "test": "paired bootstrap against CLIP-VQDiffusion (default variant): the same seeds and the same resampled "
            "prompts or images for both methods; two-sided p-value",
            "level": spec["significance_level"],
            "correction": "Holm over the methods compared on each metric",
        },
        # The judge CLIP's training data, filled in where the judge is trained on its own split.
        "judge_split": judge_split(),
        # Which data the run measured: the report's heading names it.
        "data": data_description(),
    } | compute_curve_design()


def data_description():
    """protocol.json's `data`: the world (with its attributes and held-out combinations) or the real data set."""
    if IS_WORLD:
        spec = config["data"]["world"]
        world = get_world(spec["name"])
        return {
            "source": "world",
            "label": f"{world.name} world ({world.analogue_of} analogue, {spec['resolution']} px)",
            "world": world.name,
            "analogue_of": world.analogue_of,
            "resolution": spec["resolution"],
            "attributes": {attribute.name: list(attribute.values) for attribute in world.attributes},
            "heldout": spec["heldout"],
            "record": "data/world.json",
        }
    label = {"ffhq": "FFHQ", "coco": "COCO 2014"}[SOURCE]
    resolution = config["data"][SOURCE]["resolution"]
    return {"source": SOURCE, "label": f"{label} ({resolution} px)", "resolution": resolution}


def judge_split():
    """What data the judge CLIP saw, for protocol.json (world.json records the exact split and phrase tables):
    a stand-in judge trains on its own judge_pairs split, disjoint from the conditioner's clip_pairs."""
    if "judge" not in STANDIN_ROLES:
        return {"judge": f"a CLIP from {config['clip']['judge']['source']}, not trained by this run"}
    world = config["data"]["world"]
    return {
        "judge": f"judge_pairs: {world['sizes']['judge_pairs']} captioned images of their own random stream, "
        f"captioned in the '{world['judge_wording']}' wording (the prompts' phrases plus paraphrases)",
        "conditioner": f"clip_pairs: {world['sizes']['clip_pairs'] + world['sizes']['clip_pairs_extra']} other images "
        "in the conditioner wording",
        "disjoint": True,
        "record": "data/world.json (clip_pairs) and each CLIP's sidecar",
    }


def training_stages():
    """Each method's training jobs in order, once per training seed, as clipvqd.evaluation.compute reads them:
    {method: [{stage: {benchmark, sidecar, weights, shared}} per seed]}. The tokenizer counts for each diffusion
    method (shared); the data, CLIPs and embedding cache serve every method alike and are not counted."""
    return {method: [training_chain(seed, method) for seed in SEEDS] for method in methods()}


def training_chain(seed, method, budget=None):
    """One seed's training stages of `method` (training_stages), or those of its compute-curve point `budget`:
    the first stage's snapshot (marked milestone: its benchmark is the whole run's, its sidecar records the CPU
    time up to the snapshot) and the second stages run for that fraction (their own benchmark files)."""
    tokenizer = {
        "tokenizer": {
            "benchmark": BENCHMARKS / "tokenizer_train.tsv",
            "sidecar": RESULTS / "tokenizer" / "model.json",
            "weights": RESULTS / "tokenizer" / "model.safetensors",
            "shared": True,
        }
    }

    def job(benchmark, model, first=False):
        model = at_budget(seed_dir("models", seed) / model, budget)
        folder = BENCHMARKS / f"seed={seed}"
        stage = {
            "benchmark": (folder if first or budget is None else folder / f"budget={budget}") / f"{benchmark}.tsv",
            "sidecar": model.with_suffix(".json"),
            "weights": model.with_suffix(".safetensors"),
        }
        return stage | ({"milestone": True} if first and budget is not None else {})

    if method == "clip-vqdiffusion":
        alpha = HEADLINE["alpha"]
        stages = {"pretrain": job(f"diffusion_pretrain_alpha={alpha}", f"{method}/alpha={alpha}/pretrain", first=True)}
        if HEADLINE["cfg"]:
            stages["cfg fine-tune"] = job(f"diffusion_cfg_finetune_alpha={alpha}", f"{method}/alpha={alpha}/cfg")
        list(stages.values())[-1]["sampled"] = True
        return tokenizer | stages
    if method in ("paired", "unconditional"):
        stages = {"pretrain": job(f"diffusion_{method}_pretrain", f"{method}/pretrain", first=True)}
        if HEADLINE["cfg"]:
            stages["fine-tune"] = job(f"diffusion_{method}_finetune", f"{method}/finetune")
        list(stages.values())[-1]["sampled"] = True
        return tokenizer | stages
    if method == "lafite":
        return {"generator": job("lafite_train", "lafite/generator", first=True) | {"sampled": True}}
    pairs = (
        BENCHMARKS / f"seed={seed}" / ("" if budget is None else f"budget={budget}") / "clip2latent_latent_sample.tsv"
    )
    return {
        "generator": job("clip2latent_generator_train", "clip2latent/generator", first=True) | {"sampled": True},
        "latent pairs": {"benchmark": pairs},
        "prior": job("clip2latent_prior_train", "clip2latent/prior") | {"sampled": True},
    }


def training_stages_json():
    """training_stages() for the report command, stages in training order (as_json would sort them)."""
    return json.dumps(training_stages(), default=str)


def training_stage_files():
    """The sidecars and weights of training_stages(): the report waits for them (and so for their benchmarks)."""
    return sorted(
        {
            str(stage[key])
            for seeds in training_stages().values()
            for stages in seeds
            for stage in stages.values()
            for key in ("sidecar", "weights")
            if key in stage
        }
    )


def training_curves():
    """Every training-curve CSV the DAG writes, as {label: path}; the report plots each one (the generators'
    of every seed, labelled with their seed when there are several)."""
    curves = {f"stand-in CLIP {role}": RESULTS / "clip" / role / "curve.csv" for role in STANDIN_ROLES}
    if IS_WORLD:
        curves["attribute oracle"] = RESULTS / "oracle" / "curve.csv"
    curves["tokenizer"] = RESULTS / "tokenizer" / "curve.csv"
    for seed in SEEDS:
        curves.update(generator_curves(seed, f" seed={seed}" if len(SEEDS) > 1 else ""))
    return curves


def generator_curves(seed, suffix):
    curves, stages = {}, {}
    models = seed_dir("models", seed)
    for settings in variants("clip-vqdiffusion").values():
        # The CFG fine-tune starts from the pretrained model, so every sampled alpha has a pretraining curve.
        stages.setdefault(settings["alpha"], {"pretrain"}).update({"cfg"} if settings["cfg"] else set())
    for alpha in sorted(stages):
        folder = models / "clip-vqdiffusion" / f"alpha={alpha}"
        curves[f"clip-vqdiffusion alpha={alpha} pretrain{suffix}"] = folder / "pretrain_curve.csv"
        if "cfg" in stages[alpha]:
            curves[f"clip-vqdiffusion alpha={alpha} cfg fine-tune{suffix}"] = folder / "cfg_curve.csv"
    chosen = methods()
    for method in ("paired", "unconditional"):
        if method in chosen:
            curves[f"{method} control pretrain{suffix}"] = models / method / "pretrain_curve.csv"
            if HEADLINE["cfg"]:
                curves[f"{method} control fine-tune{suffix}"] = models / method / "finetune_curve.csv"
    if "lafite" in chosen:
        curves[f"lafite{suffix}"] = models / "lafite" / "curve.csv"
    if "clip2latent" in chosen:
        curves[f"clip2latent generator{suffix}"] = models / "clip2latent" / "generator_curve.csv"
        curves[f"clip2latent prior{suffix}"] = models / "clip2latent" / "prior_curve.csv"
    return curves


def quality_labels():
    """quality_files() as {label: path}, for the report's cards on the quality of the tools."""
    labelled = {}
    for path in quality_files():
        parts = Path(path).relative_to(RESULTS).parts
        if parts[0] == "clip":
            label = f"CLIP {parts[1]}" + (" (stand-in)" if parts[1] in STANDIN_ROLES else "")
        elif parts[0] == "oracle":
            label = "attribute oracle"
        elif parts[0] == "tokenizer":
            label = "tokenizer"
        else:
            label = "/".join(parts[:-1])
        labelled[label] = path
    return labelled


def json_paths(mapping):
    # In the given order (methods in their canonical order), not sorted like as_json.
    return json.dumps({label: str(path) for label, path in mapping.items()})


# ---- the compute curve's jobs (evaluation.compute_curve; CURVE_VARIANTS above) ----------------------------------
# Off by default, where every function below adds nothing: no output, param or shell text of any rule changes.

# The step budget of each trainer that keeps snapshots (first stages) or runs again for a fraction (second stages).
CURVE_FIRST_STAGES = {
    "diffusion": "diffusion.pretrain.steps",
    "lafite": "lafite.train.steps",
    "clip2latent": "clip2latent.generator_train.steps",
}
CURVE_SECOND_STAGES = {"diffusion": "diffusion.finetune.steps", "clip2latent": "clip2latent.prior_train.steps"}


def curve_steps(key, fraction):
    """The steps of the stage whose budget is config key `key` at `fraction` of it."""
    return round(config_value(key) * float(fraction))


def check_curve_config():
    """Every fraction must give each trainer of the chosen methods its own step in [1, steps - 1]."""
    chosen = methods()
    families = {"diffusion"} | {m for m in ("lafite", "clip2latent") if m in chosen}
    keys = [CURVE_FIRST_STAGES[f] for f in sorted(families)]
    keys += [CURVE_SECOND_STAGES[f] for f in sorted(families) if f in CURVE_SECOND_STAGES]
    for key in keys:
        steps = [curve_steps(key, f) for f in CURVE_FRACTIONS]
        if any(not 1 <= step < config_value(key) for step in steps) or len(set(steps)) < len(steps):
            raise ConfigError(
                f"evaluation.compute_curve.fractions {CURVE_FRACTIONS} give {key}={config_value(key)} the steps "
                f"{steps}: each must be a different step in [1, {config_value(key) - 1}]"
            )


check_curve_config()


def milestone_outputs(model):
    """Extra outputs of a first-stage trainer whose weights are `model` (a path pattern): its snapshot and
    sidecar at every fraction of the compute curve, under budget=<f>/ beside it (named at_<f>, at_<f>_sidecar)."""
    outputs = {}
    for variant in CURVE_VARIANTS:
        name = milestone_name(variant)
        weights = at_budget(model, curve_budget(variant))
        outputs[name], outputs[f"{name}_sidecar"] = weights, weights.with_suffix(".json")
    return outputs


def milestone_name(variant):
    """The output name of a first stage's snapshot for the curve variant budget=<f>: at_<f> with _ for the point."""
    return f"at_{curve_budget(variant).replace('.', '_')}"


def milestone_params(steps_key):
    """{"milestones": the trainer's --milestone options} for a first stage with the step budget at `steps_key`."""
    if not CURVE_VARIANTS:
        return {}

    def options(wildcards, output):
        return " ".join(
            f"--milestone {curve_steps(steps_key, fraction)} " f"{shlex.quote(str(output[milestone_name(variant)]))}"
            for variant, fraction in CURVE_VARIANTS.items()
        )

    return {"milestones": options}


# Shell text of the first-stage trainers: their --milestone options, only when the curve is on.
MILESTONE_OPTIONS = " {params.milestones}" if CURVE_VARIANTS else ""


def budget_block(key, block, wildcards):
    """A second stage's training block at the job's fraction of the budget: its steps (and warm-up) scaled."""
    scaled = dict(block, steps=curve_steps(f"{key}.steps", wildcards.budget))
    if "warmup_steps" in block:
        scaled["warmup_steps"] = round(block["warmup_steps"] * float(wildcards.budget))
    return scaled


def budget_diffusion_params(wildcards):
    """diffusion_params("finetune") for a compute-curve point: the fine-tune for its fraction of the steps."""
    train = budget_block("diffusion.finetune", config["diffusion"]["finetune"], wildcards)
    return as_json({"model": config["diffusion"]["model"], "train": train})


def budget_prior_params(wildcards):
    """The clip2latent prior's blocks for a compute-curve point: prior_train for its fraction of the steps."""
    train = budget_block("clip2latent.prior_train", config["clip2latent"]["prior_train"], wildcards)
    return as_json({"prior_model": config["clip2latent"]["prior_model"], "prior_train": train})


def compute_curve_spec():
    """The report's --compute-curve: per method, every fraction's metrics table and training stages per seed,
    and the headline (fraction 1) with training_stages()' chain."""
    spec = {}
    for method in methods():
        points = [
            {
                "fraction": 1.0,
                "table": RESULTS / "metrics" / method / "default.csv",
                "stages": [training_chain(seed, method) for seed in SEEDS],
            }
        ]
        for variant, fraction in CURVE_VARIANTS.items():
            budget = curve_budget(variant)
            points.append(
                {
                    "fraction": fraction,
                    "table": RESULTS / "metrics" / method / f"{variant}.csv",
                    "stages": [training_chain(seed, method, budget) for seed in SEEDS],
                }
            )
        spec[method] = points
    return spec


def compute_curve_files():
    """What the report reads for the compute curve: the points' tables and their stages' sidecars (none when off)."""
    if not CURVE_VARIANTS:
        return []
    files = set()
    for points in compute_curve_spec().values():
        for point in points:
            files.add(str(point["table"]))
            files.update(str(s["sidecar"]) for stages in point["stages"] for s in stages.values() if "sidecar" in s)
    return sorted(files)


def report_curve_params():
    return {"compute_curve": json.dumps(compute_curve_spec(), default=str)} if CURVE_VARIANTS else {}


REPORT_CURVE_OPTION = " --compute-curve {params.compute_curve:q}" if CURVE_VARIANTS else ""


def compute_curve_design():
    """protocol.json's design.compute_curve (only when the curve is on)."""
    if not CURVE_VARIANTS:
        return {}
    return {
        "compute_curve": {
            "fractions": CURVE_FRACTIONS,
            "variants": list(CURVE_VARIANTS),
            "fraction_of": "each stage of a method's chain: at f, every stage has had round(f x its steps) steps",
            "first_stage": "the snapshot its trainer kept after f of its steps (diffusion pretraining and the controls' "
            "first stage, LAFITE, clip2latent's generator): the same run as the headline model, its learning-rate "
            "schedule not yet at its end",
            "second_stage": "a run of f of its steps (warm-up scaled alike) from that snapshot: the CFG fine-tune, the "
            "controls' second stage, clip2latent's pairs (same count) and prior",
            "cost": "CPU-seconds recorded by the trainers (process CPU time up to the step, summed over resumed calls), "
            "else the Snakemake benchmark's cpu_time (tokenizer, clip2latent pairs); the tokenizer counted in each "
            "diffusion method; mean over seeds",
            "sets": "the headline's alignment and distribution sets: same prompts, seeds and metrics",
        }
    }
