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

    rule oracle_calibrate:
        """The oracle on what generators make: its accuracy on held-out renders degraded the way samples are."""
        # Held-out renders blurred, noised, JPEG-compressed, down-and-up sampled and tokenized; the report draws
        # the curve and places each method's samples on it by their sharpness. CPU only, like oracle_train.
        input:
            oracle=RESULTS / "oracle" / "model.safetensors",
            renders=DATA / "oracle.csv",
            tokenizer=RESULTS / "tokenizer" / "model.safetensors",
            codebook=RESULTS / "tokenizer" / "codebook.json",
        output:
            calibration=RESULTS / "oracle" / "calibration.json",
        log:
            LOGS / "oracle_calibrate.log",
        benchmark:
            BENCHMARKS / "oracle_calibrate.tsv"
        conda:
            ENVS["train"]
        threads: torch_threads
        params:
            resize="--resize" if config["tokenizer"]["resize"] else "",
            seed=run_seed(),
        shell:
            clipvqd_command(
                "oracle calibrate --oracle {input.oracle:q} --manifest {input.renders:q}"
                " --tokenizer {input.tokenizer:q} --codebook {input.codebook:q} {params.resize} --seed {params.seed:q}"
                " --out {output.calibration:q} --threads {threads} > {log:q} 2>&1"
            )
