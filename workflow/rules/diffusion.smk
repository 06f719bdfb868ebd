# CLIP-VQDiffusion: language-free pretraining per α, CFG fine-tune, and the paired / unconditional controls;
# each once per training seed (seeds: in the config; results/<run>/models/seed=<s>/).


rule diffusion_pretrain:
    """CLIP-VQDiffusion's language-free pretraining at one α, on noisy CLIP image embeddings (resumable)."""
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
    threads: torch_threads
    resources:
        gpu=DDP_GPUS,
        device=DEVICE,
    params:
        settings=diffusion_params("pretrain"),
        work=seed_work("diffusion-alpha={alpha}-pretrain"),
        seed=generator_seed(),
    shell:
        clipvqd_trainer(
            "diffusion train --mode language_free --params {params.settings:q}"
            " --tokens {input.tokens:q} --embeddings {input.embeddings:q} --alpha {wildcards.alpha:q}"
            " --work {params.work:q} --out {output.model:q} --curve {output.curve:q} --seed {params.seed:q}"
            " --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=True,
        )


rule diffusion_cfg_finetune:
    """The classifier-free guidance fine-tune of one α's pretrained model (learned null condition)."""
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
    threads: torch_threads
    resources:
        gpu=DDP_GPUS,
        device=DEVICE,
    params:
        settings=diffusion_params("finetune"),
        work=seed_work("diffusion-alpha={alpha}-cfg"),
        seed=generator_seed(1),
    shell:
        clipvqd_trainer(
            "diffusion train --mode cfg_finetune --params {params.settings:q}"
            " --tokens {input.tokens:q} --embeddings {input.embeddings:q} --alpha {wildcards.alpha:q}"
            " --init {input.pretrained:q} --work {params.work:q} --out {output.model:q} --curve {output.curve:q}"
            " --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=True,
        )


rule diffusion_control:
    """A bracketing control: paired (real captions' text embeddings, upper bound) or unconditional (lower bound)."""

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
    threads: torch_threads
    resources:
        gpu=DDP_GPUS,
        device=DEVICE,
    params:
        settings=diffusion_params("pretrain"),
        work=seed_work("diffusion-{control}"),
        seed=generator_seed(),
    shell:
        clipvqd_trainer(
            "diffusion train --mode {wildcards.control:q} --params {params.settings:q}"
            " --tokens {input.tokens:q} --embeddings {input.embeddings:q} --work {params.work:q} --out {output.model:q}"
            " --curve {output.curve:q} --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=True,
        )
