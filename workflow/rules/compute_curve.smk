# Quality versus training compute (evaluation.compute_curve): the second stages of every point budget=<f>, each
# the rule of the headline model reused (Snakemake's `use rule`) with the point's files and f of its steps.
# The first stages keep their snapshots themselves (milestone_outputs in diffusion.smk and baselines.smk); the
# `sample` and `metrics` rules serve the points as variants budget=<f>. No job of this file runs by default.

AT_BUDGET = RESULTS / "models" / "seed={seed}"


use rule diffusion_cfg_finetune as diffusion_cfg_finetune_at_budget with:
    input:
        pretrained=AT_BUDGET / "clip-vqdiffusion" / "alpha={alpha}" / "budget={budget}" / "pretrain.safetensors",
        tokens=TOKENS,
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        model=AT_BUDGET / "clip-vqdiffusion" / "alpha={alpha}" / "budget={budget}" / "cfg.safetensors",
        sidecar=AT_BUDGET / "clip-vqdiffusion" / "alpha={alpha}" / "budget={budget}" / "cfg.json",
        curve=AT_BUDGET / "clip-vqdiffusion" / "alpha={alpha}" / "budget={budget}" / "cfg_curve.csv",
    log:
        LOGS / "seed={seed}" / "budget={budget}" / "diffusion_cfg_finetune_alpha={alpha}.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "budget={budget}" / "diffusion_cfg_finetune_alpha={alpha}.tsv"
    params:
        settings=budget_diffusion_params,
        work=seed_work("diffusion-alpha={alpha}-cfg-budget={budget}"),
        seed=generator_seed(1),


use rule diffusion_control_finetune as diffusion_control_finetune_at_budget with:
    input:
        pretrained=AT_BUDGET / "{control}" / "budget={budget}" / "pretrain.safetensors",
        tokens=TOKENS,
        embeddings=control_embeddings,
    output:
        model=AT_BUDGET / "{control}" / "budget={budget}" / "finetune.safetensors",
        sidecar=AT_BUDGET / "{control}" / "budget={budget}" / "finetune.json",
        curve=AT_BUDGET / "{control}" / "budget={budget}" / "finetune_curve.csv",
    log:
        LOGS / "seed={seed}" / "budget={budget}" / "diffusion_{control}_finetune.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "budget={budget}" / "diffusion_{control}_finetune.tsv"
    params:
        settings=budget_diffusion_params,
        mode=lambda wildcards: CONTROL_FINETUNE_MODES[wildcards.control],
        work=seed_work("diffusion-{control}-finetune-budget={budget}"),
        seed=generator_seed(1),


use rule clip2latent_latent_sample as clip2latent_latent_sample_at_budget with:
    input:
        generator=AT_BUDGET / "clip2latent" / "budget={budget}" / "generator.safetensors",
        clip=clip_file("conditioner"),
    output:
        pairs=AT_BUDGET / "clip2latent" / "budget={budget}" / "latent_pairs.safetensors",
    log:
        LOGS / "seed={seed}" / "budget={budget}" / "clip2latent_latent_sample.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "budget={budget}" / "clip2latent_latent_sample.tsv"


use rule clip2latent_prior_train as clip2latent_prior_train_at_budget with:
    input:
        pairs=AT_BUDGET / "clip2latent" / "budget={budget}" / "latent_pairs.safetensors",
    output:
        model=AT_BUDGET / "clip2latent" / "budget={budget}" / "prior.safetensors",
        sidecar=AT_BUDGET / "clip2latent" / "budget={budget}" / "prior.json",
        curve=AT_BUDGET / "clip2latent" / "budget={budget}" / "prior_curve.csv",
    log:
        LOGS / "seed={seed}" / "budget={budget}" / "clip2latent_prior_train.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "budget={budget}" / "clip2latent_prior_train.tsv"
    params:
        settings=budget_prior_params,
        work=seed_work("clip2latent/prior-budget={budget}"),
        seed=generator_seed(),
