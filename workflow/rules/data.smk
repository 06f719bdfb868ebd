# Data: an embedded world rendered by the workflow, or a real data set downloaded (or taken from a local
# copy), checked and prepared into the same manifests a world writes; plus pretrained weights fetched on
# request. Every download is sha256-checked by the download command and again by Snakemake (ensure).

if IS_WORLD:

    rule world_generate:
        output:
            clip_pairs=DATA / "clip_pairs.csv",
            train=DATA / "train.csv",
            train_captions=DATA / "train_captions.csv",
            reference=DATA / "reference.csv",
            oracle=DATA / "oracle.csv",
            prompts=DATA / "prompts.csv",
            validation_prompts=DATA / "validation_prompts.csv",
            summary=DATA / "world.json",
            images=directory([DATA / split for split in ("clip_pairs", "train", "reference", "oracle")]),
        log:
            LOGS / "world_generate.log",
        benchmark:
            BENCHMARKS / "world_generate.tsv"
        conda:
            ENVS["data"]
        params:
            world=as_json(config["data"]["world"]),
            seed=run_seed(),
            out=DATA,
        shell:
            "python -m clipvqd world generate --params {params.world:q} --seed {params.seed}"
            " --out {params.out} > {log} 2>&1"

elif SOURCE == "coco":
    COCO = config["data"]["coco"]

    if not COCO["path"]:

        rule dataset_download:
            # One official archive; resumes <file>.part after an interruption, moved into place only
            # with the declared sha256 (data.coco.archives.*).
            output:
                archive=ensure(
                    DOWNLOADS / "coco2014" / "{archive}",
                    sha256=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["sha256"].lower(),
                ),
            log:
                LOGS / "dataset_download_{archive}.log",
            wildcard_constraints:
                archive="|".join(re.escape(name) for name in COCO_ARCHIVES),
            conda:
                ENVS["data"]
            params:
                url=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["url"],
                sha256=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["sha256"],
                size=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["size"] or "none",
            shell:
                "python -m clipvqd data download --url {params.url:q} --sha256 {params.sha256}"
                " --size {params.size} --out {output.archive:q} > {log:q} 2>&1"

    rule dataset_prepare:
        input:
            unpack(coco_prepare_inputs),
        output:
            train=DATA / "train.csv",
            reference=DATA / "reference.csv",
            prompts=DATA / "prompts.csv",
            train_captions=DATA / "train_captions.csv",
            summary=DATA / "dataset.json",
            images=directory([DATA / "train2014", DATA / "val2014"]),
        log:
            LOGS / "dataset_prepare.log",
        benchmark:
            BENCHMARKS / "dataset_prepare.tsv"
        conda:
            ENVS["data"]
        params:
            source=coco_source_arguments,
            out=DATA,
            resolution=COCO["resolution"],
            train_on=COCO["train_on"],
            train_count=COCO["train_count"] or "none",
            reference_count=COCO["reference_count"] or "none",
            prompt_count=COCO["prompt_count"] or "none",
            seed=run_seed(),
        shell:
            "python -m clipvqd data coco-prepare {params.source} --out {params.out}"
            " --resolution {params.resolution} --train-on {params.train_on} --seed {params.seed}"
            " --train-count {params.train_count} --reference-count {params.reference_count}"
            " --prompt-count {params.prompt_count} --workers {threads} > {log} 2>&1"

elif SOURCE == "ffhq":
    FFHQ = config["data"]["ffhq"]

    if not FFHQ["path"]:

        rule dataset_download:
            # FFHQ's official source (Google Drive) cannot be fetched unattended: this rule stops with
            # instructions to obtain a copy and set data.ffhq.path.
            output:
                images=directory(FFHQ_ROOT),
            log:
                LOGS / "dataset_download.log",
            conda:
                ENVS["data"]
            shell:
                "python -m clipvqd data ffhq-download --out {output.images:q} > {log} 2>&1"

    rule ffhq_validate:
        # Count, readability and size of every file of the copy; a manifest with each file's sha256.
        input:
            images=FFHQ_ROOT,
        output:
            manifest=DATA / "ffhq_source.csv",
        log:
            LOGS / "ffhq_validate.log",
        benchmark:
            BENCHMARKS / "ffhq_validate.tsv"
        conda:
            ENVS["data"]
        params:
            expected_count=FFHQ["expected_count"] or "none",
            image_size=FFHQ["image_size"] or "none",
            min_side=FFHQ["resolution"],
        shell:
            "python -m clipvqd data ffhq-validate --root {input.images:q} --manifest {output.manifest}"
            " --expected-count {params.expected_count} --image-size {params.image_size}"
            " --min-side {params.min_side} --workers {threads} > {log} 2>&1"

    rule dataset_prepare:
        input:
            source=DATA / "ffhq_source.csv",
            prompts_file=FFHQ["prompts_file"],
        output:
            train=DATA / "train.csv",
            reference=DATA / "reference.csv",
            prompts=DATA / "prompts.csv",
            summary=DATA / "dataset.json",
            images=directory(DATA / "ffhq"),
        log:
            LOGS / "dataset_prepare.log",
        benchmark:
            BENCHMARKS / "dataset_prepare.tsv"
        conda:
            ENVS["data"]
        params:
            out=DATA,
            resolution=FFHQ["resolution"],
            train_count=FFHQ["train_count"] or "none",
            reference_count=FFHQ["reference_count"] or "none",
            seed=run_seed(),
        shell:
            "python -m clipvqd data ffhq-prepare --source-manifest {input.source} --out {params.out}"
            " --resolution {params.resolution} --prompts-file {input.prompts_file:q} --seed {params.seed}"
            " --train-count {params.train_count} --reference-count {params.reference_count}"
            " --workers {threads} > {log} 2>&1"


# ---- pretrained weights (weights.*: off by default, the offline default needs none) -------------------

if FETCHED_WEIGHTS:

    rule weights_download:
        output:
            weights=ensure(
                WEIGHTS_DIR / "{name}.pth",
                sha256=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["sha256"].lower(),
            ),
        log:
            LOGS / "weights_download_{name}.log",
        wildcard_constraints:
            name="|".join(FETCHED_WEIGHTS),
        conda:
            ENVS["data"]
        params:
            url=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["url"],
            sha256=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["sha256"],
            size=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["size"] or "none",
        shell:
            "python -m clipvqd data download --url {params.url:q} --sha256 {params.sha256}"
            " --size {params.size} --out {output.weights} > {log} 2>&1"


if "lpips_vgg" in FETCHED_WEIGHTS:

    rule weights_convert:
        # The tokenizer loads only safetensors: the checked pickle is read with weights_only=True.
        input:
            weights=WEIGHTS_DIR / "{name}.pth",
        output:
            weights=WEIGHTS_DIR / "{name}.safetensors",
        log:
            LOGS / "weights_convert_{name}.log",
        wildcard_constraints:
            name="lpips_vgg|lpips_linear",
        conda:
            ENVS["data"]
        params:
            sha256=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["sha256"],
        shell:
            "python -m clipvqd data convert-weights --source {input.weights} --sha256 {params.sha256}"
            " --out {output.weights} --what {wildcards.name} > {log} 2>&1"
