# The language-free baselines: LAFITE, and clip2latent (unconditional generator -> latents -> prior).
# Both are sampled by the `sample` rule (evaluation.smk), like every method; each is trained once per training
# seed (seeds: in the config; results/<run>/models/seed=<s>/).


rule lafite_train:
    """LAFITE: a StyleGAN2 conditioned on pseudo text features made from CLIP image embeddings (resumable)."""

    # Language-free: pseudo text features from the cached image embeddings; the CLIP scores G's images (itc).
    input:
        train=DATA / "train.csv",
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
        clip=clip_file("conditioner"),
    output:
        **milestone_outputs(RESULTS / "models" / "seed={seed}" / "lafite" / "generator.safetensors"),
        model=RESULTS / "models" / "seed={seed}" / "lafite" / "generator.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "lafite" / "generator.json",
        curve=RESULTS / "models" / "seed={seed}" / "lafite" / "curve.csv",
    log:
        LOGS / "seed={seed}" / "lafite_train.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "lafite_train.tsv"
    # The longest single job of the world run: started as soon as the embeddings exist, it does not
    # hold up the report at the end.
    priority: 5
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        **milestone_params(CURVE_FIRST_STAGES["lafite"]),
        settings=as_json({"model": config["lafite"]["model"], "train": config["lafite"]["train"]}),
        resize="--resize" if config["lafite"]["resize"] else "",
        work=seed_work("lafite"),
        seed=generator_seed(),
    shell:
        clipvqd_trainer(
            "lafite train --params {params.settings:q} --train {input.train:q}"
            " --embeddings {input.embeddings:q} --clip {input.clip:q} {params.resize} --work {params.work:q}"
            " --out {output.model:q} --curve {output.curve:q} --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=False,
            options=MILESTONE_OPTIONS,
        )


rule clip2latent_generator_train:
    """clip2latent's image model: an unconditional StyleGAN2 (resumable)."""

    # clip2latent's image model: an unconditional StyleGAN2 (LAFITE's backbone and trainer, no condition).
    input:
        train=DATA / "train.csv",
    output:
        **milestone_outputs(RESULTS / "models" / "seed={seed}" / "clip2latent" / "generator.safetensors"),
        model=RESULTS / "models" / "seed={seed}" / "clip2latent" / "generator.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "clip2latent" / "generator.json",
        curve=RESULTS / "models" / "seed={seed}" / "clip2latent" / "generator_curve.csv",
    log:
        LOGS / "seed={seed}" / "clip2latent_generator_train.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "clip2latent_generator_train.tsv"
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        **milestone_params(CURVE_FIRST_STAGES["clip2latent"]),
        settings=as_json({k: config["clip2latent"][k] for k in ("generator_model", "generator_train")}),
        resize="--resize" if config["clip2latent"]["resize"] else "",
        work=seed_work("clip2latent/generator"),
        seed=generator_seed(),
    shell:
        clipvqd_trainer(
            "clip2latent train-generator --params {params.settings:q} --train {input.train:q} {params.resize}"
            " --work {params.work:q} --out {output.model:q} --curve {output.curve:q} --seed {params.seed:q}"
            " --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=False,
            options=MILESTONE_OPTIONS,
        )


rule clip2latent_latent_sample:
    """clip2latent's training pairs: latents w with the CLIP image embeddings of G(w), z-scoring statistics."""

    # (w, CLIP image embedding of G(w)) pairs with the z-scoring statistics.
    input:
        generator=RESULTS / "models" / "seed={seed}" / "clip2latent" / "generator.safetensors",
        clip=clip_file("conditioner"),
    output:
        pairs=RESULTS / "models" / "seed={seed}" / "clip2latent" / "latent_pairs.safetensors",
    log:
        LOGS / "seed={seed}" / "clip2latent_latent_sample.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "clip2latent_latent_sample.tsv"
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        settings=as_json({"pairs": config["clip2latent"]["pairs"]}),
        seed=generator_seed(4),
    shell:
        clipvqd_command(
            "clip2latent pairs --params {params.settings:q} --generator {input.generator:q}"
            " --clip {input.clip:q} --out {output.pairs:q} --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


rule clip2latent_prior_train:
    """clip2latent's diffusion prior p(w | CLIP embedding) (resumable)."""

    # The diffusion prior p(w | CLIP embedding): transformer, x0 prediction, cosine schedule, CFG dropout.
    input:
        pairs=RESULTS / "models" / "seed={seed}" / "clip2latent" / "latent_pairs.safetensors",
    output:
        model=RESULTS / "models" / "seed={seed}" / "clip2latent" / "prior.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "clip2latent" / "prior.json",
        curve=RESULTS / "models" / "seed={seed}" / "clip2latent" / "prior_curve.csv",
    log:
        LOGS / "seed={seed}" / "clip2latent_prior_train.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "clip2latent_prior_train.tsv"
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        settings=as_json({k: config["clip2latent"][k] for k in ("prior_model", "prior_train")}),
        work=seed_work("clip2latent/prior"),
        seed=generator_seed(),
    shell:
        clipvqd_trainer(
            "clip2latent train-prior --params {params.settings:q} --pairs {input.pairs:q} --work {params.work:q}"
            " --out {output.model:q} --curve {output.curve:q} --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=False,
        )
