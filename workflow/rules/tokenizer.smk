# The Gumbel VQGAN tokenizer: train, evaluate, tokenize the generator training split.
# Training and tokenizing lie on the critical path to the report (then pretrain and fine-tune), so they
# get priority over jobs that can wait, such as the controls.


rule tokenizer_train:
    """Train the Gumbel VQGAN tokenizer (resumable), then compact its codebook to the codes it uses."""
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
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        tokenizer=tokenizer_params(),
        work=RESULTS / "work" / "tokenizer",
        seed=run_seed(),
    shell:
        clipvqd_trainer(
            "tokenizer train --params {params.tokenizer:q} --train {input.train:q}"
            " --work {params.work:q} --out {output.model:q} --curve {output.curve:q} --codebook {output.codebook:q}"
            " --seed {params.seed:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1",
            ddp=False,
        )


rule tokenizer_evaluate:
    """The tokenizer's reconstructions of held-out images: errors, codebook use, the oracle's retained accuracy."""
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
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        oracle=lambda wildcards, input: f"--oracle {shlex.quote(str(input.oracle))}" if input.oracle else "",
        resize="--resize" if config["tokenizer"]["resize"] else "",
    shell:
        clipvqd_command(
            "tokenizer evaluate --model {input.model:q} --codebook {input.codebook:q}"
            " --heldout {input.heldout:q} {params.oracle} {params.resize} --metrics {output.metrics:q}"
            " --grid {output.grid:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


rule tokenizer_tokenize:
    """Token maps of the generators' training split (compacted codes), the diffusion models' data."""
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
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        resize="--resize" if config["tokenizer"]["resize"] else "",
    shell:
        clipvqd_command(
            "tokenizer tokenize --model {input.model:q} --codebook {input.codebook:q}"
            " --train {input.train:q} {params.resize} --out {output.codes:q} --manifest {output.manifest:q}"
            " --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )
