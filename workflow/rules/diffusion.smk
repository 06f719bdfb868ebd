# CLIP-VQDiffusion: language-free pretraining per α, CFG fine-tune, and the paired / unconditional controls.


rule diffusion_pretrain:
    """CLIP-VQDiffusion's language-free pretraining at one α, on noisy CLIP image embeddings (resumable)."""
    input:
        tokens=TOKENS,
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        model=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.safetensors",
        sidecar=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.json",
        curve=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain_curve.csv",
    log:
        LOGS / "diffusion_pretrain_alpha={alpha}.log",
    benchmark:
        BENCHMARKS / "diffusion_pretrain_alpha={alpha}.tsv"
    priority: 10
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=DDP_GPUS,
        device=DEVICE,
    params:
        settings=diffusion_params("pretrain"),
        work=lambda wildcards: RESULTS / "work" / f"diffusion-alpha={wildcards.alpha}-pretrain",
        seed=run_seed(),
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
        pretrained=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.safetensors",
        tokens=TOKENS,
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        model=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg.safetensors",
        sidecar=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg.json",
        curve=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg_curve.csv",
    log:
        LOGS / "diffusion_cfg_finetune_alpha={alpha}.log",
    benchmark:
        BENCHMARKS / "diffusion_cfg_finetune_alpha={alpha}.tsv"
    priority: 10
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=DDP_GPUS,
        device=DEVICE,
    params:
        settings=diffusion_params("finetune"),
        work=lambda wildcards: RESULTS / "work" / f"diffusion-alpha={wildcards.alpha}-cfg",
        seed=run_seed(1),
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
        model=RESULTS / "models" / "{control}" / "model.safetensors",
        sidecar=RESULTS / "models" / "{control}" / "model.json",
        curve=RESULTS / "models" / "{control}" / "curve.csv",
    log:
        LOGS / "diffusion_{control}.log",
    benchmark:
        BENCHMARKS / "diffusion_{control}.tsv"
    wildcard_constraints:
        control="paired|unconditional",
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=DDP_GPUS,
        device=DEVICE,
    params:
        settings=diffusion_params("pretrain"),
        work=lambda wildcards: RESULTS / "work" / f"diffusion-{wildcards.control}",
        seed=run_seed(),
    shell:
        clipvqd_trainer(
            "diffusion train --mode {wildcards.control:q} --params {params.settings:q}"
            " --tokens {input.tokens:q} --embeddings {input.embeddings:q} --work {params.work:q} --out {output.model:q}"
            " --curve {output.curve:q} --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=True,
        )
