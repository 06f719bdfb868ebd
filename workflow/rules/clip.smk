# CLIP: one file per role (conditioner, judge) from its configured source; quality metrics; embedding cache.

if STANDIN_ROLES:

    rule clip_train_standin:
        """Train a stand-in CLIP (an open_clip model) on the world's captioned pairs, resumably."""
        input:
            # Each role its own captioned images: the judge never sees the conditioner's pairs or wording.
            pairs=lambda wildcards: DATA / ("judge_pairs.csv" if wildcards.role == "judge" else "clip_pairs.csv"),
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
        threads: torch_threads
        resources:
            gpu=GPU,
            device=DEVICE,
        params:
            spec=lambda wildcards: as_json(config["clip"][wildcards.role]),
            seed=lambda wildcards: run_seed(config["clip"][wildcards.role]["seed"]),
            work=lambda wildcards: RESULTS / "work" / f"clip-{wildcards.role}",
        shell:
            clipvqd_command(
                "clip get --params {params.spec:q} --pairs {input.pairs:q} --work {params.work:q}"
                " --curve {output.curve:q} --seed {params.seed:q} --device {resources.device:q} --threads {threads}"
                " --out {output.model:q} > {log:q} 2>&1"
            )


if EXTERNAL_CLIP_ROLES:

    rule clip_get:
        """A pretrained CLIP (open_clip tag, downloaded) or a local weights file, sha256-checked, as safetensors."""
        input:
            weights=lambda wildcards: config["clip"][wildcards.role]["weights"] or [],
        output:
            model=RESULTS / "clip" / "{role}" / "model.safetensors",
            sidecar=RESULTS / "clip" / "{role}" / "model.json",
        log:
            LOGS / "clip_get_{role}.log",
        wildcard_constraints:
            role="|".join(EXTERNAL_CLIP_ROLES),
        # On the submit host: a pretrained tag is downloaded, and cluster nodes often have no internet.
        localrule: True
        conda:
            ENVS["clip"]
        params:
            spec=lambda wildcards: as_json(config["clip"][wildcards.role]),
        shell:
            clipvqd_command("clip get --params {params.spec:q} --out {output.model:q} > {log:q} 2>&1")


if IS_WORLD:

    rule clip_evaluate:
        """A CLIP's quality on held-out world pairs: retrieval and zero-shot attribute accuracy."""
        input:
            clip=RESULTS / "clip" / "{role}" / "model.safetensors",
            pairs=DATA / "clip_pairs.csv",
        output:
            metrics=RESULTS / "clip" / "{role}" / "metrics.json",
        log:
            LOGS / "clip_evaluate_{role}.log",
        conda:
            ENVS["clip"]
        threads: torch_threads
        params:
            world=config["data"]["world"]["name"],
        shell:
            clipvqd_command(
                "clip evaluate --clip {input.clip:q} --pairs {input.pairs:q} --world {params.world:q}"
                " --threads {threads} --out {output.metrics:q} > {log:q} 2>&1"
            )


rule clip_embed:
    """The embedding cache: the conditioner CLIP's image embeddings of the training split, text embeddings of the prompts."""
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
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        prefix=config["data"]["prompt_prefix"],
    shell:
        clipvqd_command(
            "clip embed --clip {input.clip:q} --images {input.images:q} --images-out {output.images:q}"
            " --prompts {input.prompts:q} --prompts-out {output.prompts:q} --prompt-prefix={params.prefix:q}"
            " --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


rule clip_embed_prompts:
    """Cache the conditioner's text embeddings of another prompt table (validation prompts, distribution set)."""

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
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        prefix=config["data"]["prompt_prefix"],
    shell:
        clipvqd_command(
            "clip embed-prompts --clip {input.clip:q} --prompts {input.prompts:q} --out {output.prompts:q}"
            " --prompt-prefix={params.prefix:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


if HAS_CAPTIONS:

    rule clip_embed_captions:
        """Text embeddings of the training captions, read only by the paired-caption control."""
        # Language-free methods never see a caption.
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
        threads: torch_threads
        resources:
            gpu=GPU,
            device=DEVICE,
        shell:
            clipvqd_command(
                "clip embed-captions --clip {input.clip:q} --captions {input.captions:q}"
                " --out {output.captions:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
            )
