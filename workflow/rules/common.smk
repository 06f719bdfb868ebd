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
            world.validate_combination(combination, f"data.world.heldout[{number}]")


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
    return config["seed"] + offset


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


def clipvqd_command(arguments):
    """Shell text that runs `python -m clipvqd <arguments>` from this workflow's own source."""
    return f"{WITH_SOURCE}python -m clipvqd {arguments}"


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


# GPUs: with device cuda or auto, every rule that can compute on a GPU asks for the `gpu` resource (1, or
# ddp_gpus for the DDP diffusion trainer), so `--resources gpu=N` on a workstation and the SLURM profile's
# set-resources schedule them; with cpu they ask for none. The device itself is a resource, not a param:
# params are a rerun trigger, and continuing a finished CPU run on a GPU (or the reverse) must not retrain.
DEVICE = config["device"]
GPU = 0 if DEVICE == "cpu" else 1
DDP_GPUS = 0 if DEVICE == "cpu" else config["ddp_gpus"]


def clipvqd_trainer(arguments, ddp):
    """Shell text that runs `python -m clipvqd <arguments>`, or, with ddp and a job's gpu resource > 1,
    `torchrun --standalone --nproc_per_node=<gpu> -m clipvqd <arguments>` (one DDP process per GPU).
    A trainer without DDP refuses more than one GPU instead of silently leaving the others idle. The
    launcher is chosen by the job's shell from resources.gpu rather than by a params function: params are a
    rerun trigger, and moving a finished run from a laptop to a cluster must not retrain."""
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
    return f"{WITH_SOURCE}{launcher}{arguments}"


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
    undefined for it (the sampler refuses it): a cfg=false point samples at s = 1, named so. A point that
    becomes another one (cfg=false as the headline with a guidance sweep) is planned once."""
    if settings.get("cfg") is False and "s" in settings:
        return settings | {"s": 1.0}
    return settings


def variant_settings(method, variant):
    table = variants(method)
    if variant not in table:
        raise ValueError(f"unknown variant '{variant}' of method '{method}' (known: {sorted(table)})")
    return table[variant]


def sample_sets():
    return [(m, v) for m in methods() for v in variants(m)]


# The plan every sample set holds (docs/design.md §3): each prompt x sampling.samples_per_prompt, drawn from
# this seed. The sample rule draws it; the metrics and report jobs refuse a set that does not hold it.
SAMPLE_SEED = run_seed(2)


def sample_plan_arguments():
    """The sample plan as the metrics and report commands take it (their prompt table is an input)."""
    return (
        f"--samples-per-prompt {config['sampling']['samples_per_prompt']} --sample-seed {SAMPLE_SEED}"
        f" --prompt-prefix={shlex.quote(config['data']['prompt_prefix'])}"
    )


# ---- paths --------------------------------------------------------------------------------------------


def clip_file(role):
    return RESULTS / "clip" / role / "model.safetensors"


def diffusion_model(method, settings):
    if method == "clip-vqdiffusion":
        stage = "cfg" if settings["cfg"] else "pretrain"
        return RESULTS / "models" / "clip-vqdiffusion" / f"alpha={settings['alpha']}" / f"{stage}.safetensors"
    return RESULTS / "models" / method / "model.safetensors"


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
    inputs = {"prompts": DATA / "prompts.csv", "prompt_embeddings": RESULTS / "embeddings" / "prompts.safetensors"}
    if wildcards.method in METHOD_SETTINGS:
        inputs["model"] = diffusion_model(wildcards.method, settings)
        inputs["tokenizer"] = RESULTS / "tokenizer" / "model.safetensors"
        inputs["codebook"] = RESULTS / "tokenizer" / "codebook.json"
    elif wildcards.method == "lafite":
        inputs["model"] = RESULTS / "models" / "lafite" / "generator.safetensors"
        inputs["clip"] = clip_file("conditioner")
    else:
        inputs["model"] = RESULTS / "models" / "clip2latent" / "prior.safetensors"
        inputs["generator"] = RESULTS / "models" / "clip2latent" / "generator.safetensors"
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
    inputs = {
        "samples": RESULTS / "samples" / wildcards.method / wildcards.variant / "manifest.csv",
        "reference": DATA / "reference.csv",
        "prompts": DATA / "prompts.csv",
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


def foundation_targets():
    targets = [
        DATA / "train.csv",
        DATA / "reference.csv",
        DATA / "prompts.csv",
        RESULTS / "embeddings" / "train_images.safetensors",
        RESULTS / "embeddings" / "prompts.safetensors",
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
        pairs = int(world["sizes"]["clip_pairs"] * (1 - world["clip_holdout_fraction"]))
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
    """One file per (method, variant) branch of the metrics stage: the table, its protocol, its best-of-16 list."""
    return [RESULTS / "metrics" / method / f"{variant}{suffix}" for method, variant in sample_sets()]


def report_sample_grids():
    """The headline (default) sample set of every method, shown as per-prompt grids in the report."""
    return {method: RESULTS / "samples" / method / "default" / "manifest.csv" for method in methods()}


def training_curves():
    """Every training-curve CSV the DAG writes, as {label: path}; the report plots each one."""
    curves = {f"stand-in CLIP {role}": RESULTS / "clip" / role / "curve.csv" for role in STANDIN_ROLES}
    if IS_WORLD:
        curves["attribute oracle"] = RESULTS / "oracle" / "curve.csv"
    curves["tokenizer"] = RESULTS / "tokenizer" / "curve.csv"
    stages = {}
    for settings in variants("clip-vqdiffusion").values():
        # The CFG fine-tune starts from the pretrained model, so every sampled alpha has a pretraining curve.
        stages.setdefault(settings["alpha"], {"pretrain"}).update({"cfg"} if settings["cfg"] else set())
    for alpha in sorted(stages):
        folder = RESULTS / "models" / "clip-vqdiffusion" / f"alpha={alpha}"
        curves[f"clip-vqdiffusion alpha={alpha} pretrain"] = folder / "pretrain_curve.csv"
        if "cfg" in stages[alpha]:
            curves[f"clip-vqdiffusion alpha={alpha} cfg fine-tune"] = folder / "cfg_curve.csv"
    chosen = methods()
    for method in ("paired", "unconditional"):
        if method in chosen:
            curves[f"{method} control"] = RESULTS / "models" / method / "curve.csv"
    if "lafite" in chosen:
        curves["lafite"] = RESULTS / "models" / "lafite" / "curve.csv"
    if "clip2latent" in chosen:
        curves["clip2latent generator"] = RESULTS / "models" / "clip2latent" / "generator_curve.csv"
        curves["clip2latent prior"] = RESULTS / "models" / "clip2latent" / "prior_curve.csv"
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
