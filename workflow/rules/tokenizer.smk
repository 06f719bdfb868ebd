# The Gumbel VQGAN tokenizer: train, evaluate, tokenize the generator training split.


rule tokenizer_train:
    input:
        train=DATA / "train.csv",
    output:
        model=RESULTS / "tokenizer" / "model.safetensors",
        codebook=RESULTS / "tokenizer" / "codebook.json",
        curve=RESULTS / "tokenizer" / "curve.csv",
    log:
        LOGS / "tokenizer_train.log",
    benchmark:
        BENCHMARKS / "tokenizer_train.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented tokenizer_train > {log} 2>&1"


rule tokenizer_evaluate:
    input:
        model=RESULTS / "tokenizer" / "model.safetensors",
        codebook=RESULTS / "tokenizer" / "codebook.json",
        reference=DATA / "reference.csv",
        oracle=RESULTS / "oracle" / "model.safetensors" if IS_WORLD else [],
    output:
        metrics=RESULTS / "tokenizer" / "metrics.json",
        grid=RESULTS / "tokenizer" / "reconstructions.png",
    log:
        LOGS / "tokenizer_evaluate.log",
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented tokenizer_evaluate > {log} 2>&1"


rule tokenizer_tokenize:
    input:
        model=RESULTS / "tokenizer" / "model.safetensors",
        codebook=RESULTS / "tokenizer" / "codebook.json",
        train=DATA / "train.csv",
    output:
        tokens=RESULTS / "tokens" / "train.safetensors",
    log:
        LOGS / "tokenizer_tokenize.log",
    benchmark:
        BENCHMARKS / "tokenizer_tokenize.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented tokenizer_tokenize > {log} 2>&1"
