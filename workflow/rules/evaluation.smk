# Every method through the same interface: prompts in, PNGs + manifest out; then metrics and the report.


rule sample:
    """Sample one (method, variant): the shared prompts in, PNGs and a manifest out, the same seeds for every method."""

    # Every method and sweep point: its model files come from sample_inputs, its settings from
    # sample_settings, and one command picks the method's sampler.
    input:
        unpack(sample_inputs),
    output:
        manifest=RESULTS / "samples" / "{method}" / "{variant}" / "manifest.csv",
    log:
        LOGS / "sample_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "sample_{method}_{variant}.tsv"
    wildcard_constraints:
        method="|".join(ALL_METHODS),
        variant="[^/]+",
    conda:
        ENVS["train"]
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        models=sample_model_arguments,
        settings=sample_settings,
        prefix=config["data"]["prompt_prefix"],
        samples_per_prompt=config["sampling"]["samples_per_prompt"],
        seed=SAMPLE_SEED,
    shell:
        clipvqd_command(
            "sample --method {wildcards.method:q} --variant {wildcards.variant:q} {params.models}"
            " --settings {params.settings:q} --prompts {input.prompts:q} --prompt-embeddings {input.prompt_embeddings:q}"
            " --prompt-prefix={params.prefix:q} --samples-per-prompt {params.samples_per_prompt:q} --seed {params.seed:q}"
            " --manifest {output.manifest:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


rule metrics:
    """Metrics of one (method, variant) sample set: FID/KID/precision/recall, CLIPscores, attribute accuracy."""

    # One (method, variant) branch: FID/KID/precision/recall against the reference split, CLIPscores with
    # the conditioner and the judge, attribute accuracy from the oracle (worlds). Features are cached by
    # content in a shared folder (atomic writes, so parallel jobs cannot tear a file).
    input:
        unpack(metrics_inputs),
        inception=inception_weights_file(),
    output:
        table=report(
            RESULTS / "metrics" / "{method}" / "{variant}.csv",
            caption="../report/branch_metrics.rst",
            category="Metrics per branch",
            subcategory="{method}",
            labels={"method": "{method}", "variant": "{variant}"},
        ),
        protocol=RESULTS / "metrics" / "{method}" / "{variant}.protocol.json",
        best_of=RESULTS / "metrics" / "{method}" / "{variant}.best16.csv",
    log:
        LOGS / "metrics_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "metrics_{method}_{variant}.tsv"
    wildcard_constraints:
        method="|".join(ALL_METHODS),
        variant="[^/]+",
    conda:
        ENVS["evaluation"]
    threads: torch_threads
    resources:
        gpu=GPU,
        device=DEVICE,
    params:
        oracle=oracle_arguments,
        inception=inception_arguments,
        cache=FEATURE_CACHE,
        reference_name=reference_name(),
        kid_subsets=config["evaluation"]["kid_subsets"],
        kid_subset_size=config["evaluation"]["kid_subset_size"],
        cross_check=config["evaluation"]["cross_check"],
        plan=sample_plan_arguments(),
        seed=run_seed(),
    shell:
        clipvqd_command(
            "evaluate metrics --samples {input.samples:q} --reference {input.reference:q}"
            " --prompts {input.prompts:q} --conditioner {input.conditioner:q} --judge {input.judge:q} {params.oracle}"
            " {params.inception} --method {wildcards.method:q} --variant {wildcards.variant:q}"
            " --cache-dir {params.cache:q} --kid-subsets {params.kid_subsets:q} --kid-subset-size {params.kid_subset_size:q}"
            " --cross-check {params.cross_check:q} --reference-name {params.reference_name:q} --seed {params.seed:q}"
            " --out {output.table:q} --protocol-out {output.protocol:q} --candidates {output.best_of:q}"
            " {params.plan} --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


rule report:
    """Merge every branch's metrics and protocol into reports/<run>/: the HTML comparison report, its tables and figures."""

    # Merges every branch's table and protocol, then renders reports/<run>/index.html. Run times come from
    # the benchmark files that exist when it runs (Snakemake writes them after each job), so they are read
    # from the folder rather than declared.
    input:
        tables=branch_files(".csv"),
        protocols=branch_files(".protocol.json"),
        quality=quality_files(),
        curves=list(training_curves().values()),
        samples=list(report_sample_grids().values()),
        prompts=DATA / "prompts.csv",
    output:
        # The whole folder (page, stylesheet, figures, sample assets), so that Snakemake's own report
        # (snakemake --report report.zip) carries every file the page links to; its files below are outputs too.
        site=report(
            directory(REPORT), htmlindex="index.html", caption="../report/index.rst", category="Comparison report"
        ),
        html=REPORT / "index.html",
        metrics=report(REPORT / "metrics.csv", caption="../report/metrics.rst", category="Comparison report"),
        protocol=report(REPORT / "protocol.json", caption="../report/protocol.rst", category="Comparison report"),
        figures=report(
            directory(REPORT / "figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        LOGS / "report.log",
    conda:
        ENVS["report"]
    params:
        out_dir=REPORT,
        grids=json_paths(report_sample_grids()),
        curves=json_paths(training_curves()),
        quality=json_paths(quality_labels()),
        benchmarks=BENCHMARKS,
        title=config["report"]["title"],
        run=config["run"],
        plan=sample_plan_arguments(),
    shell:
        clipvqd_command(
            "evaluate report --tables {input.tables:q} --protocols {input.protocols:q}"
            " --metrics-out {output.metrics:q} --protocol-out {output.protocol:q} --out-dir {params.out_dir:q}"
            " --grids {params.grids:q} --curves {params.curves:q} --quality {params.quality:q}"
            " --benchmarks-dir {params.benchmarks:q} --title {params.title:q} --run-name {params.run:q}"
            " --prompts {input.prompts:q} {params.plan} > {log:q} 2>&1"
        )
