# Data: an embedded world rendered by the workflow, or a real data set downloaded (or taken from a local
# copy), checked and prepared into the same manifests a world writes; plus pretrained weights fetched on
# request. Every download is sha256-checked by the download command and again by Snakemake (ensure).

if IS_WORLD:

    rule world_generate:
        """Render the embedded world's splits (both CLIPs' pairs, train, reference, oracle) and its prompts."""
        output:
            clip_pairs=DATA / "clip_pairs.csv",
            judge_pairs=DATA / "judge_pairs.csv",
            train=DATA / "train.csv",
            train_captions=DATA / "train_captions.csv",
            reference=DATA / "reference.csv",
            oracle=DATA / "oracle.csv",
            prompts=DATA / "prompts.csv",
            validation_prompts=DATA / "validation_prompts.csv",
            summary=DATA / "world.json",
            images=directory([DATA / split for split in ("clip_pairs", "judge_pairs", "train", "reference", "oracle")]),
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
            clipvqd_command(
                "world generate --params {params.world:q} --seed {params.seed:q}"
                " --out {params.out:q} > {log:q} 2>&1"
            )

elif SOURCE == "coco":
    COCO = config["data"]["coco"]

    if not COCO["path"]:

        rule dataset_download:
            """Download one official COCO 2014 archive, resumable and checked against its sha256."""
            output:
                archive=ensure(
                    DOWNLOADS / "coco2014" / "{archive}",
                    sha256=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["sha256"].lower(),
                ),
            log:
                LOGS / "dataset_download_{archive}.log",
            wildcard_constraints:
                archive="|".join(re.escape(name) for name in COCO_ARCHIVES),
            # Resumes <file>.part after an interruption, moved into place only with the declared sha256
            # (data.coco.archives.*). Runs on the submit host: cluster nodes often have no internet.
            localrule: True
            conda:
                ENVS["data"]
            params:
                url=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["url"],
                sha256=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["sha256"],
                size=lambda wildcards: COCO_ARCHIVES[wildcards.archive]["size"] or "none",
            shell:
                clipvqd_command(
                    "data download --url {params.url:q} --sha256 {params.sha256:q}"
                    " --size {params.size:q} --out {output.archive:q} > {log:q} 2>&1"
                )

    rule dataset_prepare:
        """COCO 2014 into the workflow's splits: centre-cropped images, manifests with sha256, prompts."""
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
        threads: data_workers
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
            clipvqd_command(
                "data coco-prepare {params.source} --out {params.out:q}"
                " --resolution {params.resolution:q} --train-on {params.train_on:q} --seed {params.seed:q}"
                " --train-count {params.train_count:q} --reference-count {params.reference_count:q}"
                " --prompt-count {params.prompt_count:q} --workers {threads} > {log:q} 2>&1"
            )

elif SOURCE == "ffhq":
    FFHQ = config["data"]["ffhq"]

    if not FFHQ["path"]:

        rule dataset_download:
            """Stop with instructions: FFHQ (Google Drive) cannot be fetched unattended; set data.ffhq.path."""
            output:
                images=directory(FFHQ_ROOT),
            log:
                LOGS / "dataset_download.log",
            localrule: True
            conda:
                ENVS["data"]
            shell:
                clipvqd_command("data ffhq-download --out {output.images:q} > {log:q} 2>&1")

    rule ffhq_validate:
        """Check a local FFHQ copy (count, readability, size of every file); a manifest with each sha256."""
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
        threads: data_workers
        params:
            expected_count=FFHQ["expected_count"] or "none",
            image_size=FFHQ["image_size"] or "none",
            min_side=FFHQ["resolution"],
        shell:
            clipvqd_command(
                "data ffhq-validate --root {input.images:q} --manifest {output.manifest:q}"
                " --expected-count {params.expected_count:q} --image-size {params.image_size:q}"
                " --min-side {params.min_side:q} --workers {threads} > {log:q} 2>&1"
            )

    rule dataset_prepare:
        """FFHQ into the workflow's splits: resized images, manifests with sha256, the clip2latent prompts."""
        input:
            source=DATA / "ffhq_source.csv",
            prompts_file=FFHQ_PROMPTS,
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
        threads: data_workers
        params:
            out=DATA,
            resolution=FFHQ["resolution"],
            train_count=FFHQ["train_count"] or "none",
            reference_count=FFHQ["reference_count"] or "none",
            seed=run_seed(),
        shell:
            clipvqd_command(
                "data ffhq-prepare --source-manifest {input.source:q} --out {params.out:q}"
                " --resolution {params.resolution:q} --prompts-file {input.prompts_file:q} --seed {params.seed:q}"
                " --train-count {params.train_count:q} --reference-count {params.reference_count:q}"
                " --workers {threads} > {log:q} 2>&1"
            )


# ---- pretrained weights (weights.*: off by default, the offline default needs none) -------------------

if FETCHED_WEIGHTS:

    rule weights_download:
        """Download pretrained weights (Inception for FID, VGG16/LPIPS for the tokenizer), sha256-checked."""
        output:
            weights=ensure(
                WEIGHTS_DIR / "{name}.pth",
                sha256=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["sha256"].lower(),
            ),
        log:
            LOGS / "weights_download_{name}.log",
        wildcard_constraints:
            name="|".join(FETCHED_WEIGHTS),
        localrule: True  # on the submit host: cluster nodes often have no internet
        conda:
            ENVS["data"]
        params:
            url=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["url"],
            sha256=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["sha256"],
            size=lambda wildcards: FETCHED_WEIGHTS[wildcards.name]["size"] or "none",
        shell:
            clipvqd_command(
                "data download --url {params.url:q} --sha256 {params.sha256:q}"
                " --size {params.size:q} --out {output.weights:q} > {log:q} 2>&1"
            )


if "lpips_vgg" in FETCHED_WEIGHTS:

    rule weights_convert:
        """Convert checked LPIPS weights to safetensors (read with weights_only=True), the tokenizer's format."""
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
            clipvqd_command(
                "data convert-weights --source {input.weights:q} --sha256 {params.sha256:q}"
                " --out {output.weights:q} --what {wildcards.name:q} > {log:q} 2>&1"
            )
