# Every method through the same interface: prompts in, PNGs + manifest out; then metrics and the report.


rule distribution_prompts:
    """The distribution set's prompt table: one row per reference image, prompted with its own caption."""

    # evaluation.distribution_samples of them (all by default); a manifest of the reference images it pairs
    # with (docs/design.md §6), written beside the reference manifest.
    input:
        reference=DATA / "reference.csv",
        summary=DATA / "world.json" if IS_WORLD else DATA / "dataset.json",
    output:
        prompts=DATA / "distribution_prompts.csv",
    log:
        LOGS / "distribution_prompts.log",
    conda:
        ENVS["evaluation"]
    params:
        size=config["evaluation"]["distribution_samples"] or "none",
        seed=run_seed(),
        captions=distribution_caption_arguments,
    shell:
        clipvqd_command(
            "evaluate distribution-prompts --reference {input.reference:q} --out {output.prompts:q}"
            " --count {params.size:q} --seed {params.seed:q} {params.captions} > {log:q} 2>&1"
        )


rule sample:
    """Sample one (method, variant, training seed, evaluation set): prompts in, PNGs and a manifest out."""

    # Every method, sweep point, training seed and evaluation set: its model files come from sample_inputs, its
    # settings from sample_settings, its prompt table from the set, and one command picks the method's sampler;
    # every method draws the same plan of prompts and seeds.
    input:
        unpack(sample_inputs),
    output:
        manifest=RESULTS / "samples" / "seed={seed}" / "{method}" / "{variant}" / "{set}" / "manifest.csv",
    log:
        LOGS / "seed={seed}" / "{set}" / "sample_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "seed={seed}" / "{set}" / "sample_{method}_{variant}.tsv"
    wildcard_constraints:
        method="|".join(ALL_METHODS),
        variant="[^/]+",
        set="alignment|validation|distribution",
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
        samples_per_prompt=plan_samples_per_prompt,
        best_of_prompts=plan_best_of_prompts,
        seed=sample_seed,
    shell:
        clipvqd_command(
            "sample --method {wildcards.method:q} --variant {wildcards.variant:q} {params.models}"
            " --settings {params.settings:q} --prompts {input.prompts:q} --prompt-embeddings {input.prompt_embeddings:q}"
            " --prompt-prefix={params.prefix:q} --samples-per-prompt {params.samples_per_prompt:q}"
            " --best-of-prompts {params.best_of_prompts:q} --seed {params.seed:q}"
            " --manifest {output.manifest:q} --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


rule metrics:
    """Metrics of one (method, variant) over its training seeds, with 95% intervals."""

    # One (method, variant) branch over its training seeds: CLIPscores and attribute accuracy on the alignment
    # sets, FID/KID/precision/recall and CMMD on the distribution sets against the matched reference images;
    # the mean over seeds with 95% intervals, the per-seed values, and the units and features the report's
    # paired comparisons read. Features are cached by content in a shared folder (atomic writes, so parallel
    # jobs cannot tear a file).
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
        by_seed=RESULTS / "metrics" / "{method}" / "{variant}.by_seed.csv",
        units=RESULTS / "metrics" / "{method}" / "{variant}.units.csv",
        features=RESULTS / "metrics" / "{method}" / "{variant}.features.safetensors",
        protocol=RESULTS / "metrics" / "{method}" / "{variant}.protocol.json",
        best_of=RESULTS / "metrics" / "{method}" / "{variant}.best16.csv",
    log:
        LOGS / "metrics_{method}_{variant}.log",
    benchmark:
        BENCHMARKS / "metrics_{method}_{variant}.tsv"
    wildcard_constraints:
        method="|".join(ALL_METHODS),
        variant=VARIANT_PATTERN,
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
        seeds=SEEDS,
        evaluation_set=ALIGNMENT_SET,
        prefix=config["data"]["prompt_prefix"],
        kid_subsets=config["evaluation"]["kid_subsets"],
        kid_subset_size=config["evaluation"]["kid_subset_size"],
        cross_check=config["evaluation"]["cross_check"],
        bootstrap_replicates=config["evaluation"]["bootstrap"]["replicates"],
        bootstrap_seed=config["evaluation"]["bootstrap"]["seed"],
        confidence=config["evaluation"]["bootstrap"]["confidence"],
        plan=metrics_plan_arguments(),
        seed=run_seed(),
    shell:
        clipvqd_command(
            "evaluate metrics --samples {input.samples:q} --distribution-samples {input.distribution:q}"
            " --seeds {params.seeds:q} --prompts {input.prompts:q} --evaluation-set {params.evaluation_set:q}"
            " --distribution-prompts {input.distribution_prompts:q} --prompt-prefix={params.prefix:q} {params.plan}"
            " --conditioner {input.conditioner:q} --judge {input.judge:q} {params.oracle}"
            " {params.inception} --method {wildcards.method:q} --variant {wildcards.variant:q}"
            " --cache-dir {params.cache:q} --kid-subsets {params.kid_subsets:q} --kid-subset-size {params.kid_subset_size:q}"
            " --cross-check {params.cross_check:q} --reference-name {params.reference_name:q}"
            " --bootstrap-replicates {params.bootstrap_replicates:q} --bootstrap-seed {params.bootstrap_seed:q}"
            " --confidence {params.confidence:q} --seed {params.seed:q} --out {output.table:q}"
            " --by-seed-out {output.by_seed:q} --units-out {output.units:q} --features-out {output.features:q}"
            " --protocol-out {output.protocol:q} --candidates {output.best_of:q}"
            " --device {resources.device:q} --threads {threads} > {log:q} 2>&1"
        )


rule calibrate_machine:
    """The machine's speed: a fixed one-thread torch workload, timed; the report records it with the run times."""

    # First (priority) and with every core reserved, so no other job of the run shares the machine while it is
    # timed; a few seconds. Measured when the run's folder is first made: delete the file to measure again.
    output:
        calibration=RESULTS / "calibration.json",
    log:
        LOGS / "calibrate_machine.log",
    priority: 100
    conda:
        ENVS["train"]
    threads: all_cores
    shell:
        clipvqd_command("calibrate --out {output.calibration:q} > {log:q} 2>&1")


rule report:
    """Merge every branch's metrics into reports/<run>/: the HTML comparison report, its tables and figures."""

    # Merges every branch's table, per-seed table and protocol; compares every method with CLIP-VQDiffusion
    # (paired bootstrap on the branches' units and features); renders reports/<run>/index.html. Run times come
    # from the benchmark files that exist when it runs (Snakemake writes them after each job), so they are read
    # from the folder rather than declared.
    input:
        tables=branch_files(".csv"),
        by_seed=branch_files(".by_seed.csv"),
        units=branch_files(".units.csv"),
        features=branch_files(".features.safetensors"),
        protocols=branch_files(".protocol.json"),
        quality=quality_files(),
        calibration=oracle_calibration_files(),
        machine_speed=RESULTS / "calibration.json",
        curves=list(training_curves().values()),
        trained=training_stage_files(),
        samples=list(report_sample_grids().values()),
        prompts=PROMPT_TABLES[ALIGNMENT_SET],
        compute_curve=compute_curve_files(),
    output:
        # The whole folder (page, stylesheet, figures, sample assets), so that Snakemake's own report
        # (snakemake --report report.zip) carries every file the page links to; its files below are outputs too.
        site=report(
            directory(REPORT), htmlindex="index.html", caption="../report/index.rst", category="Comparison report"
        ),
        html=REPORT / "index.html",
        metrics=report(REPORT / "metrics.csv", caption="../report/metrics.rst", category="Comparison report"),
        by_seed=REPORT / "metrics_by_seed.csv",
        significance=REPORT / "significance.csv",
        protocol=report(REPORT / "protocol.json", caption="../report/protocol.rst", category="Comparison report"),
        figures=report(
            directory(REPORT / "figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        LOGS / "report.log",
    benchmark:
        BENCHMARKS / "report.tsv"
    conda:
        ENVS["report"]
    params:
        **report_curve_params(),
        out_dir=REPORT,
        grids=json_paths(report_sample_grids()),
        curves=json_paths(training_curves()),
        quality=json_paths(quality_labels()),
        calibration=lambda wildcards, input: (
            f"--oracle-calibration {shlex.quote(str(input.calibration[0]))}" if input.calibration else ""
        ),
        design=as_json(evaluation_design()),
        bootstrap_replicates=config["evaluation"]["bootstrap"]["replicates"],
        bootstrap_seed=config["evaluation"]["bootstrap"]["seed"],
        confidence=config["evaluation"]["bootstrap"]["confidence"],
        significance_level=config["evaluation"]["significance_level"],
        benchmarks=BENCHMARKS,
        training_stages=training_stages_json(),
        title=config["report"]["title"],
        run=config["run"],
        plan=report_plan_arguments(),
    shell:
        clipvqd_command(
            "evaluate report --tables {input.tables:q} --protocols {input.protocols:q}"
            " --by-seed {input.by_seed:q} --units {input.units:q} --features {input.features:q}"
            " --metrics-out {output.metrics:q} --by-seed-out {output.by_seed:q}"
            " --significance-out {output.significance:q} --protocol-out {output.protocol:q}"
            " --out-dir {params.out_dir:q} --design {params.design:q}"
            " --bootstrap-replicates {params.bootstrap_replicates:q} --bootstrap-seed {params.bootstrap_seed:q}"
            " --confidence {params.confidence:q} --significance-level {params.significance_level:q}"
            " {params.calibration} --grids {params.grids:q} --curves {params.curves:q} --quality {params.quality:q}"
            " --benchmarks-dir {params.benchmarks:q} --training-stages {params.training_stages:q} --title {params.title:q} --run-name {params.run:q}"
            " --prompts {input.prompts:q} {params.plan} --machine-speed {input.machine_speed:q} > {log:q} 2>&1",
            REPORT_CURVE_OPTION,
        )
