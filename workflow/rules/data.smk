# Data: an embedded world rendered by the workflow, or a real data set downloaded and prepared.

if IS_WORLD:

    rule world_generate:
        output:
            clip_pairs=DATA / "clip_pairs.csv",
            train=DATA / "train.csv",
            train_captions=DATA / "train_captions.csv",
            reference=DATA / "reference.csv",
            oracle=DATA / "oracle.csv",
            prompts=DATA / "prompts.csv",
            summary=DATA / "world.json",
            images=directory(
                [DATA / split for split in ("clip_pairs", "train", "reference", "oracle")]
            ),
        params:
            world=as_json(config["data"]["world"]),
            seed=run_seed(),
            out=DATA,
        log:
            LOGS / "world_generate.log",
        benchmark:
            BENCHMARKS / "world_generate.tsv"
        conda:
            ENVS["data"]
        shell:
            "python -m clipvqd world generate --params {params.world:q} --seed {params.seed}"
            " --out {params.out} > {log} 2>&1"

else:

    rule dataset_download:
        output:
            archive=directory(RESULTS / "downloads" / SOURCE),
        params:
            source=SOURCE,
        log:
            LOGS / "dataset_download.log",
        conda:
            ENVS["data"]
        shell:
            "python -m clipvqd stage not-implemented dataset_download > {log} 2>&1"

    rule dataset_prepare:
        input:
            archive=RESULTS / "downloads" / SOURCE,
        output:
            train=DATA / "train.csv",
            reference=DATA / "reference.csv",
            prompts=DATA / "prompts.csv",
            train_captions=DATA / "train_captions.csv" if HAS_CAPTIONS else [],
        log:
            LOGS / "dataset_prepare.log",
        benchmark:
            BENCHMARKS / "dataset_prepare.tsv"
        conda:
            ENVS["data"]
        shell:
            "python -m clipvqd stage not-implemented dataset_prepare > {log} 2>&1"
