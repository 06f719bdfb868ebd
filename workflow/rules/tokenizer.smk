# The Gumbel VQGAN tokenizer: train, evaluate, tokenize the generator training split.
# Training and tokenizing lie on the critical path to the report (then pretrain and fine-tune), so they
# get priority over jobs that can wait, such as the controls.


rule tokenizer_train:
    input:
        train=DATA / "train.csv",
        lpips=list(lpips_weight_files().values()),
    output:
        model=RESULTS / "tokenizer" / "model.safetensors",
        sidecar=RESULTS / "tokenizer" / "model.json",
        codebook=RESULTS / "tokenizer" / "codebook.json",
        curve=RESULTS / "tokenizer" / "curve.csv",
    log:
        LOGS / "tokenizer_train.log",
    benchmark:
        BENCHMARKS / "tokenizer_train.tsv"
    priority: 10
    conda:
        ENVS["train"]
    resources:
        gpu=0,  # CPU by default; a profile's set-resources asks for GPUs (profiles/slurm)
    params:
        tokenizer=tokenizer_params(),
        work=RESULTS / "work" / "tokenizer",
        seed=run_seed(),
        device=config["device"],
    shell:
        clipvqd_trainer(
            "tokenizer train --params {params.tokenizer:q} --train {input.train:q}"
            " --work {params.work:q} --out {output.model:q} --curve {output.curve:q} --codebook {output.codebook:q}"
            " --seed {params.seed:q} --device {params.device:q} > {log:q} 2>&1",
            ddp=False,
        )


rule tokenizer_evaluate:
    input:
        model=RESULTS / "tokenizer" / "model.safetensors",
        codebook=RESULTS / "tokenizer" / "codebook.json",
        heldout=DATA / "reference.csv",
        oracle=RESULTS / "oracle" / "model.safetensors" if IS_WORLD else [],
    output:
        metrics=RESULTS / "tokenizer" / "metrics.json",
        grid=report(
            RESULTS / "tokenizer" / "reconstructions.png",
            caption="../report/tokenizer_reconstructions.rst",
            category="Tokenizer",
        ),
    log:
        LOGS / "tokenizer_evaluate.log",
    benchmark:
        BENCHMARKS / "tokenizer_evaluate.tsv"
    conda:
        ENVS["train"]
    params:
        oracle=lambda wildcards, input: f"--oracle {shlex.quote(str(input.oracle))}" if input.oracle else "",
        resize="--resize" if config["tokenizer"]["resize"] else "",
        device=config["device"],
    shell:
        "python -m clipvqd tokenizer evaluate --model {input.model:q} --codebook {input.codebook:q}"
        " --heldout {input.heldout:q} {params.oracle} {params.resize} --metrics {output.metrics:q}"
        " --grid {output.grid:q} --device {params.device:q} > {log:q} 2>&1"


rule tokenizer_tokenize:
    input:
        model=RESULTS / "tokenizer" / "model.safetensors",
        codebook=RESULTS / "tokenizer" / "codebook.json",
        train=DATA / "train.csv",
    output:
        codes=RESULTS / "tokens" / "train.npy",
        manifest=TOKENS,
    log:
        LOGS / "tokenizer_tokenize.log",
    benchmark:
        BENCHMARKS / "tokenizer_tokenize.tsv"
    priority: 10
    conda:
        ENVS["train"]
    params:
        resize="--resize" if config["tokenizer"]["resize"] else "",
        device=config["device"],
    shell:
        "python -m clipvqd tokenizer tokenize --model {input.model:q} --codebook {input.codebook:q}"
        " --train {input.train:q} {params.resize} --out {output.codes:q} --manifest {output.manifest:q}"
        " --device {params.device:q} > {log:q} 2>&1"
