# CLIP: one file per role (conditioner, judge) from its configured source; quality metrics; embedding cache.

if STANDIN_ROLES:

    rule clip_train_standin:
        input:
            pairs=DATA / "clip_pairs.csv",
        output:
            model=RESULTS / "clip" / "{role}" / "model.safetensors",
            sidecar=RESULTS / "clip" / "{role}" / "model.json",
            curve=RESULTS / "clip" / "{role}" / "curve.csv",
        log:
            LOGS / "clip_train_standin_{role}.log",
        benchmark:
            BENCHMARKS / "clip_train_standin_{role}.tsv"
        wildcard_constraints:
            role="|".join(STANDIN_ROLES),
        # The conditioner lies on the critical path (conditioner -> embeddings -> pretraining). The judge
        # is needed by every metrics job at the end: it goes before the other waiting jobs, so the metrics
        # do not queue behind it.
        priority: lambda wildcards: 10 if wildcards.role == "conditioner" else 1
        conda:
            ENVS["clip"]
        params:
            spec=lambda wildcards: as_json(config["clip"][wildcards.role]),
            seed=lambda wildcards: run_seed(config["clip"][wildcards.role]["seed"]),
            work=lambda wildcards: RESULTS / "work" / f"clip-{wildcards.role}",
            device=config["device"],
        shell:
            "python -m clipvqd clip get --params {params.spec:q} --pairs {input.pairs} --work {params.work}"
            " --curve {output.curve} --seed {params.seed} --device {params.device} --out {output.model}"
            " > {log} 2>&1"


if EXTERNAL_CLIP_ROLES:

    rule clip_get:
        input:
            weights=lambda wildcards: config["clip"][wildcards.role]["weights"] or [],
        output:
            model=RESULTS / "clip" / "{role}" / "model.safetensors",
            sidecar=RESULTS / "clip" / "{role}" / "model.json",
        log:
            LOGS / "clip_get_{role}.log",
        wildcard_constraints:
            role="|".join(EXTERNAL_CLIP_ROLES),
        conda:
            ENVS["clip"]
        params:
            spec=lambda wildcards: as_json(config["clip"][wildcards.role]),
        shell:
            "python -m clipvqd clip get --params {params.spec:q} --out {output.model} > {log} 2>&1"


if IS_WORLD:

    rule clip_evaluate:
        input:
            clip=RESULTS / "clip" / "{role}" / "model.safetensors",
            pairs=DATA / "clip_pairs.csv",
        output:
            metrics=RESULTS / "clip" / "{role}" / "metrics.json",
        log:
            LOGS / "clip_evaluate_{role}.log",
        conda:
            ENVS["clip"]
        params:
            world=config["data"]["world"]["name"],
        shell:
            "python -m clipvqd clip evaluate --clip {input.clip} --pairs {input.pairs} --world {params.world}"
            " --out {output.metrics} > {log} 2>&1"


rule clip_embed:
    input:
        clip=clip_file("conditioner"),
        images=DATA / "train.csv",
        prompts=DATA / "prompts.csv",
    output:
        images=RESULTS / "embeddings" / "train_images.safetensors",
        prompts=RESULTS / "embeddings" / "prompts.safetensors",
    log:
        LOGS / "clip_embed.log",
    benchmark:
        BENCHMARKS / "clip_embed.tsv"
    priority: 10
    conda:
        ENVS["clip"]
    params:
        prefix=config["data"]["prompt_prefix"],
        device=config["device"],
    shell:
        "python -m clipvqd clip embed --clip {input.clip} --images {input.images} --images-out {output.images}"
        " --prompts {input.prompts} --prompts-out {output.prompts} --prompt-prefix={params.prefix:q}"
        " --device {params.device} > {log} 2>&1"


rule clip_embed_prompts:
    # The other prompt tables: a tuning run's validation prompts, the distribution set's reference captions.
    input:
        clip=clip_file("conditioner"),
        prompts=DATA / "{table}.csv",
    output:
        prompts=RESULTS / "embeddings" / "{table}.safetensors",
    log:
        LOGS / "clip_embed_prompts_{table}.log",
    wildcard_constraints:
        table="validation_prompts|distribution_prompts",
    conda:
        ENVS["clip"]
    params:
        prefix=config["data"]["prompt_prefix"],
        device=config["device"],
    shell:
        "python -m clipvqd clip embed-prompts --clip {input.clip} --prompts {input.prompts} --out {output.prompts}"
        " --prompt-prefix={params.prefix:q} --device {params.device} > {log} 2>&1"


if HAS_CAPTIONS:

    rule clip_embed_captions:
        # Only the paired-caption control reads these: language-free methods never see a caption.
        input:
            clip=clip_file("conditioner"),
            images=DATA / "train.csv",
            captions=DATA / "train_captions.csv",
        output:
            captions=RESULTS / "embeddings" / "train_captions.safetensors",
        log:
            LOGS / "clip_embed_captions.log",
        conda:
            ENVS["clip"]
        params:
            device=config["device"],
        shell:
            "python -m clipvqd clip embed-captions --clip {input.clip} --captions {input.captions}"
            " --out {output.captions} --device {params.device} > {log} 2>&1"
