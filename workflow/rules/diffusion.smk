# CLIP-VQDiffusion: language-free pretraining per α, CFG fine-tune, and the paired / unconditional controls;
# each once per training seed (seeds: in the config; results/<run>/models/seed=<s>/).


rule diffusion_pretrain:
    input:
        tokens=TOKENS,
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        model=RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.json",
        curve=RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain_curve.csv",
    log:
        LOGS / "seed={seed}" / "diffusion_pretrain_alpha={alpha}.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "diffusion_pretrain_alpha={alpha}.tsv"
    priority: 10
    conda:
        ENVS["train"]
    resources:
        gpu=0,  # CPU by default; a profile's set-resources asks for GPUs (profiles/slurm)
    params:
        settings=diffusion_params("pretrain"),
        work=lambda wildcards: RESULTS
        / "work"
        / f"seed={wildcards.seed}"
        / f"diffusion-alpha={wildcards.alpha}-pretrain",
        seed=generator_seed(),
        device=config["device"],
    shell:
        clipvqd_trainer(
            "diffusion train --mode language_free --params {params.settings:q}"
            " --tokens {input.tokens} --embeddings {input.embeddings} --alpha {wildcards.alpha}"
            " --work {params.work} --out {output.model} --curve {output.curve} --seed {params.seed}"
            " --device {params.device} > {log} 2>&1",
            ddp=True,
        )


rule diffusion_cfg_finetune:
    input:
        pretrained=RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.safetensors",
        tokens=TOKENS,
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        model=RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg.json",
        curve=RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg_curve.csv",
    log:
        LOGS / "seed={seed}" / "diffusion_cfg_finetune_alpha={alpha}.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "diffusion_cfg_finetune_alpha={alpha}.tsv"
    priority: 10
    conda:
        ENVS["train"]
    resources:
        gpu=0,  # CPU by default; a profile's set-resources asks for GPUs (profiles/slurm)
    params:
        settings=diffusion_params("finetune"),
        work=lambda wildcards: RESULTS / "work" / f"seed={wildcards.seed}" / f"diffusion-alpha={wildcards.alpha}-cfg",
        seed=generator_seed(1),
        device=config["device"],
    shell:
        clipvqd_trainer(
            "diffusion train --mode cfg_finetune --params {params.settings:q}"
            " --tokens {input.tokens} --embeddings {input.embeddings} --alpha {wildcards.alpha}"
            " --init {input.pretrained} --work {params.work} --out {output.model} --curve {output.curve}"
            " --seed {params.seed} --device {params.device} > {log} 2>&1",
            ddp=True,
        )


rule diffusion_control:
    # paired: conditioned on CLIP text embeddings of the real captions (upper bound).
    # unconditional: only the null condition (lower bound); the image embeddings only size that condition.
    input:
        tokens=TOKENS,
        embeddings=lambda wildcards: RESULTS
        / "embeddings"
        / ("train_captions.safetensors" if wildcards.control == "paired" else "train_images.safetensors"),
    output:
        model=RESULTS / "models" / "seed={seed}" / "{control}" / "model.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "{control}" / "model.json",
        curve=RESULTS / "models" / "seed={seed}" / "{control}" / "curve.csv",
    log:
        LOGS / "seed={seed}" / "diffusion_{control}.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "diffusion_{control}.tsv"
    wildcard_constraints:
        control="paired|unconditional",
        seed=r"\d+",
    conda:
        ENVS["train"]
    resources:
        gpu=0,  # CPU by default; a profile's set-resources asks for GPUs (profiles/slurm)
    params:
        settings=diffusion_params("pretrain"),
        work=lambda wildcards: RESULTS / "work" / f"seed={wildcards.seed}" / f"diffusion-{wildcards.control}",
        seed=generator_seed(),
        device=config["device"],
    shell:
        clipvqd_trainer(
            "diffusion train --mode {wildcards.control} --params {params.settings:q}"
            " --tokens {input.tokens} --embeddings {input.embeddings} --work {params.work} --out {output.model}"
            " --curve {output.curve} --seed {params.seed} --device {params.device} > {log} 2>&1",
            ddp=True,
        )
