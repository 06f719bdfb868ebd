# Every method through the same interface: prompts in, PNGs + manifest out; then metrics and the report.


rule sample:
    input:
        unpack(sample_inputs),
    output:
        manifest=RESULTS / "samples" / "{method}" / "{variant}" / "manifest.csv",
    wildcard_constraints:
        method="clip-vqdiffusion|paired|unconditional|lafite|clip2latent",
        variant="[^/]+",
    params:
        samples_per_prompt=config["sampling"]["samples_per_prompt"],
    log:
        LOGS / "sample_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "sample_{method}_{variant}.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented sample > {log} 2>&1"


rule metrics:
    input:
        unpack(metrics_inputs),
    output:
        table=RESULTS / "metrics" / "{method}" / "{variant}.csv",
    wildcard_constraints:
        variant="[^/]+",
    log:
        LOGS / "metrics_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "metrics_{method}_{variant}.tsv"
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented metrics > {log} 2>&1"


rule report:
    input:
        tables=[RESULTS / "metrics" / m / f"{v}.csv" for m, v in sample_sets()],
        quality=quality_files(),
    output:
        html=REPORT / "index.html",
        metrics=REPORT / "metrics.csv",
        protocol=REPORT / "protocol.json",
    log:
        LOGS / "report.log",
    conda:
        ENV
    shell:
        "python -m clipvqd stage not-implemented report > {log} 2>&1"
