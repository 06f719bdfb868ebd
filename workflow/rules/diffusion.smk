# CLIP-VQDiffusion: language-free pretraining per α, CFG fine-tune, and the paired / unconditional controls.


rule diffusion_pretrain:
    input:
        tokens=RESULTS / "tokens" / "train.safetensors",
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        model=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.safetensors",
        curve=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain_curve.csv",
    log:
        LOGS / "diffusion_pretrain_alpha={alpha}.log",
    benchmark:
        BENCHMARKS / "diffusion_pretrain_alpha={alpha}.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented diffusion_pretrain > {log} 2>&1"


rule diffusion_cfg_finetune:
    input:
        pretrained=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "pretrain.safetensors",
        tokens=RESULTS / "tokens" / "train.safetensors",
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
    output:
        model=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg.safetensors",
        curve=RESULTS / "models" / "clip-vqdiffusion" / "alpha={alpha}" / "cfg_curve.csv",
    log:
        LOGS / "diffusion_cfg_finetune_alpha={alpha}.log",
    benchmark:
        BENCHMARKS / "diffusion_cfg_finetune_alpha={alpha}.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented diffusion_cfg_finetune > {log} 2>&1"


rule diffusion_paired:
    # Control (upper bound): the same model conditioned on CLIP text embeddings of the real captions.
    input:
        tokens=RESULTS / "tokens" / "train.safetensors",
        embeddings=RESULTS / "embeddings" / "train_captions.safetensors",
    output:
        model=RESULTS / "models" / "paired" / "model.safetensors",
        curve=RESULTS / "models" / "paired" / "curve.csv",
    log:
        LOGS / "diffusion_paired.log",
    benchmark:
        BENCHMARKS / "diffusion_paired.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented diffusion_paired > {log} 2>&1"


rule diffusion_unconditional:
    # Control (lower bound): the same model with only the null condition.
    input:
        tokens=RESULTS / "tokens" / "train.safetensors",
    output:
        model=RESULTS / "models" / "unconditional" / "model.safetensors",
        curve=RESULTS / "models" / "unconditional" / "curve.csv",
    log:
        LOGS / "diffusion_unconditional.log",
    benchmark:
        BENCHMARKS / "diffusion_unconditional.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented diffusion_unconditional > {log} 2>&1"
