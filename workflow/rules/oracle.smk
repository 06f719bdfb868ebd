# The attribute oracle (worlds only): trained on renders with their true labels, never on generated images.

if IS_WORLD:

    rule oracle_train:
        """The attribute oracle: a classifier trained on renders with their true attributes (worlds only)."""
        input:
            oracle=DATA / "oracle.csv",
            reference=DATA / "reference.csv",
        output:
            model=RESULTS / "oracle" / "model.safetensors",
            sidecar=RESULTS / "oracle" / "model.json",
            curve=RESULTS / "oracle" / "curve.csv",
            metrics=RESULTS / "oracle" / "metrics.json",
        log:
            LOGS / "oracle_train.log",
        benchmark:
            BENCHMARKS / "oracle_train.tsv"
        conda:
            ENVS["train"]
        threads: torch_threads
        params:
            settings=as_json(config["oracle"]),
            world=config["data"]["world"]["name"],
            work=RESULTS / "work" / "oracle",
            seed=run_seed(),
        shell:
            clipvqd_command(
                "oracle train --params {params.settings:q} --world {params.world:q}"
                " --manifest {input.oracle:q} --reference {input.reference:q} --work {params.work:q}"
                " --out {output.model:q} --curve {output.curve:q} --metrics {output.metrics:q}"
                " --seed {params.seed:q} --threads {threads} > {log:q} 2>&1"
            )
