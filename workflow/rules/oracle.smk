# The attribute oracle (worlds only): trained on renders with their true labels, never on generated images.

if IS_WORLD:

    rule oracle_train:
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
        params:
            oracle=as_json(config["oracle"]),
            world=config["data"]["world"]["name"],
            work=RESULTS / "work" / "oracle",
            seed=run_seed(),
        shell:
            "python -m clipvqd oracle train --params {params.oracle:q} --world {params.world}"
            " --manifest {input.oracle} --reference {input.reference} --work {params.work}"
            " --out {output.model} --curve {output.curve} --metrics {output.metrics}"
            " --seed {params.seed} > {log} 2>&1"

    rule oracle_calibrate:
        # The oracle on what generators make: its accuracy on held-out renders blurred, noised, JPEG-compressed,
        # down-and-up sampled and tokenized; the report draws the curve and places each method's samples on it.
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
        params:
            resize="--resize" if config["tokenizer"]["resize"] else "",
            seed=run_seed(),
        shell:
            "python -m clipvqd oracle calibrate --oracle {input.oracle} --manifest {input.renders}"
            " --tokenizer {input.tokenizer} --codebook {input.codebook} {params.resize} --seed {params.seed}"
            " --out {output.calibration} > {log} 2>&1"
