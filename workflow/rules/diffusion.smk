# CLIP-VQDiffusion: language-free pretraining per α, CFG fine-tune, and the paired / unconditional controls;
# each once per training seed (seeds: in the config; results/<run>/models/seed=<s>/).


rule diffusion_pretrain:
    """CLIP-VQDiffusion's language-free pretraining at one α, on noisy CLIP image embeddings (resumable)."""
    input:
        tokens=TOKENS,
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        **milestone_outputs(
            RESULTS / "models" / "seed={seed}" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.safetensors"
        ),
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
        **milestone_params(CURVE_FIRST_STAGES["diffusion"]),
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
            options=MILESTONE_OPTIONS,
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
    """Stage 1 of a bracketing control: paired (real captions' text embeddings, upper bound) or unconditional."""

    # The controls run the language-free chain with another condition (docs/design.md §4): this rule is the
    # counterpart of diffusion_pretrain, diffusion_control_finetune of diffusion_cfg_finetune, same settings.
    # paired: conditioned on CLIP text embeddings of the real captions (upper bound).
    # unconditional: only the null condition (lower bound); the image embeddings only size that condition.
    input:
        tokens=TOKENS,
        embeddings=control_embeddings,
    output:
        **milestone_outputs(RESULTS / "models" / "seed={seed}" / "{control}" / "pretrain.safetensors"),
        model=RESULTS / "models" / "seed={seed}" / "{control}" / "pretrain.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "{control}" / "pretrain.json",
        curve=RESULTS / "models" / "seed={seed}" / "{control}" / "pretrain_curve.csv",
    log:
        LOGS / "seed={seed}" / "diffusion_{control}_pretrain.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "diffusion_{control}_pretrain.tsv"
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
        **milestone_params(CURVE_FIRST_STAGES["diffusion"]),
        settings=diffusion_params("pretrain"),
        work=seed_work("diffusion-{control}"),
        seed=generator_seed(),
    shell:
        clipvqd_trainer(
            "diffusion train --mode {wildcards.control:q} --params {params.settings:q}"
            " --tokens {input.tokens:q} --embeddings {input.embeddings:q} --work {params.work:q} --out {output.model:q}"
            " --curve {output.curve:q} --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=True,
            options=MILESTONE_OPTIONS,
        )


rule diffusion_control_finetune:
    """Stage 2 of a control, with the CFG fine-tune's settings: paired drops its caption like the method's fine-tune
    (mode paired_cfg_finetune); unconditional keeps training, so that it gets the same total steps."""
    input:
        pretrained=RESULTS / "models" / "seed={seed}" / "{control}" / "pretrain.safetensors",
        tokens=TOKENS,
        embeddings=control_embeddings,
    output:
        model=RESULTS / "models" / "seed={seed}" / "{control}" / "finetune.safetensors",
        sidecar=RESULTS / "models" / "seed={seed}" / "{control}" / "finetune.json",
        curve=RESULTS / "models" / "seed={seed}" / "{control}" / "finetune_curve.csv",
    log:
        LOGS / "seed={seed}" / "diffusion_{control}_finetune.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "diffusion_{control}_finetune.tsv"
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
        settings=diffusion_params("finetune"),
        mode=lambda wildcards: CONTROL_FINETUNE_MODES[wildcards.control],
        work=seed_work("diffusion-{control}-finetune"),
        seed=generator_seed(1),
    shell:
        clipvqd_trainer(
            "diffusion train --mode {params.mode:q} --params {params.settings:q}"
            " --tokens {input.tokens:q} --embeddings {input.embeddings:q} --init {input.pretrained:q}"
            " --work {params.work:q} --out {output.model:q} --curve {output.curve:q}"
            " --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=True,
        )
