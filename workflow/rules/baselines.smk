# The language-free baselines: LAFITE, and clip2latent (unconditional generator -> latents -> prior).


rule lafite_train:
    input:
        train=DATA / "train.csv",
        embeddings=RESULTS / "embeddings" / "train_images.safetensors",
        clip=clip_file("conditioner"),
    output:
        model=RESULTS / "models" / "lafite" / "generator.safetensors",
        curve=RESULTS / "models" / "lafite" / "curve.csv",
    log:
        LOGS / "lafite_train.log",
    benchmark:
        BENCHMARKS / "lafite_train.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented lafite_train > {log} 2>&1"


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
        ENV
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
        ENV
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
        ENV
    shell:
        "python -m clipvqd stage not-implemented clip2latent_prior_train > {log} 2>&1"


rule sample_baseline:
    input:
        unpack(sample_inputs),
    output:
        manifest=RESULTS / "samples" / "{method}" / "{variant}" / "manifest.csv",
    wildcard_constraints:
        method="lafite|clip2latent",
        variant="[^/]+",
    log:
        LOGS / "sample_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "sample_{method}_{variant}.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented sample_{wildcards.method} > {log} 2>&1"
