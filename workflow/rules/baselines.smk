# The language-free baselines: LAFITE, and clip2latent (unconditional generator -> latents -> prior).


rule lafite_train:
    # Language-free: pseudo text features from the cached image embeddings; the CLIP scores G's images (itc).
    input:
        train=DATA / "train.csv",
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
        clip=clip_file("conditioner"),
    output:
        model=RESULTS / "models" / "lafite" / "generator.safetensors",
        sidecar=RESULTS / "models" / "lafite" / "generator.json",
        curve=RESULTS / "models" / "lafite" / "curve.csv",
    params:
        settings=as_json({"model": config["lafite"]["model"], "train": config["lafite"]["train"]}),
        resize="--resize" if config["lafite"]["resize"] else "",
        work=RESULTS / "work" / "lafite",
        seed=run_seed(),
        device=config["device"],
    log:
        LOGS / "lafite_train.log",
    benchmark:
        BENCHMARKS / "lafite_train.tsv"
    resources:
        gpu=0,  # CPU by default; a profile's set-resources asks for GPUs (profiles/slurm)
    conda:
        ENVS["train"]
    shell:
        clipvqd_trainer(
            "lafite train --params {params.settings:q} --train {input.train}"
            " --embeddings {input.embeddings} --clip {input.clip} {params.resize} --work {params.work}"
            " --out {output.model} --curve {output.curve} --seed {params.seed} --device {params.device} > {log} 2>&1",
            ddp=False,
        )


rule clip2latent_generator_train:
    input:
        train=DATA / "train.csv",
    output:
        model=RESULTS / "models" / "clip2latent" / "generator.safetensors",
        curve=RESULTS / "models" / "clip2latent" / "generator_curve.csv",
    log:
        LOGS / "clip2latent_generator_train.log",
    benchmark:
        BENCHMARKS / "clip2latent_generator_train.tsv"
    conda:
        ENVS["train"]
    shell:
        "python -m clipvqd stage not-implemented clip2latent_generator_train > {log} 2>&1"


rule clip2latent_latent_sample:
    input:
        generator=RESULTS / "models" / "clip2latent" / "generator.safetensors",
        clip=clip_file("conditioner"),
    output:
        pairs=RESULTS / "models" / "clip2latent" / "latent_pairs.safetensors",
    log:
        LOGS / "clip2latent_latent_sample.log",
    benchmark:
        BENCHMARKS / "clip2latent_latent_sample.tsv"
    conda:
        ENVS["train"]
    shell:
        "python -m clipvqd stage not-implemented clip2latent_latent_sample > {log} 2>&1"


rule clip2latent_prior_train:
    input:
        pairs=RESULTS / "models" / "clip2latent" / "latent_pairs.safetensors",
    output:
        model=RESULTS / "models" / "clip2latent" / "prior.safetensors",
        curve=RESULTS / "models" / "clip2latent" / "prior_curve.csv",
    log:
        LOGS / "clip2latent_prior_train.log",
    benchmark:
        BENCHMARKS / "clip2latent_prior_train.tsv"
    conda:
        ENVS["train"]
    shell:
        "python -m clipvqd stage not-implemented clip2latent_prior_train > {log} 2>&1"


rule sample_lafite:
    input:
        unpack(sample_inputs),
    output:
        manifest=RESULTS / "samples" / "{method}" / "{variant}" / "manifest.csv",
    wildcard_constraints:
        method="lafite",
        variant="[^/]+",
    params:
        settings=sample_settings,
        prefix=config["data"]["prompt_prefix"],
        samples_per_prompt=config["sampling"]["samples_per_prompt"],
        seed=run_seed(2),
        device=config["device"],
    log:
        LOGS / "sample_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "sample_{method}_{variant}.tsv"
    conda:
        ENVS["train"]
    shell:
        "python -m clipvqd lafite sample --model {input.model} --clip {input.clip} --prompts {input.prompts}"
        " --prompt-embeddings {input.prompt_embeddings} --prompt-prefix={params.prefix:q}"
        " --method {wildcards.method} --variant {wildcards.variant} --settings {params.settings:q}"
        " --samples-per-prompt {params.samples_per_prompt} --seed {params.seed} --manifest {output.manifest}"
        " --device {params.device} > {log} 2>&1"


rule sample_baseline:
    input:
        unpack(sample_inputs),
    output:
        manifest=RESULTS / "samples" / "{method}" / "{variant}" / "manifest.csv",
    wildcard_constraints:
        method="clip2latent",
        variant="[^/]+",
    log:
        LOGS / "sample_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "sample_{method}_{variant}.tsv"
    conda:
        ENVS["train"]
    shell:
        "python -m clipvqd stage not-implemented sample_{wildcards.method} > {log} 2>&1"
