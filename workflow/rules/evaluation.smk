# Every method through the same interface: prompts in, PNGs + manifest out; then metrics and the report.


rule distribution_prompts:
    # The distribution set's prompts: one per reference image (evaluation.distribution_samples of them), its
    # own caption; a manifest of the reference images it pairs with (docs/design.md §6).
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
        options=distribution_prompt_arguments,
    shell:
        "python -m clipvqd evaluate distribution-prompts --reference {input.reference} --out {output.prompts}"
        " {params.options} > {log} 2>&1"


rule sample:
    # Every method, sweep point, training seed and evaluation set: its model files come from sample_inputs, its
    # settings from sample_settings, its prompt table from the set, and one command picks the method's sampler.
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
    params:
        models=sample_model_arguments,
        settings=sample_settings,
        prefix=config["data"]["prompt_prefix"],
        plan=sample_plan_arguments,
        seed=sample_seed,
        device=config["device"],
    shell:
        "python -m clipvqd sample --method {wildcards.method} --variant {wildcards.variant} {params.models}"
        " --settings {params.settings:q} --prompts {input.prompts} --prompt-embeddings {input.prompt_embeddings}"
        " --prompt-prefix={params.prefix:q} {params.plan} --seed {params.seed}"
        " --manifest {output.manifest} --device {params.device} > {log} 2>&1"


rule metrics:
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
    params:
        oracle=oracle_arguments,
        inception=inception_arguments,
        cache=FEATURE_CACHE,
        reference_name=reference_name(),
        seeds=" ".join(str(seed) for seed in SEEDS),
        evaluation_set=ALIGNMENT_SET,
        prefix=config["data"]["prompt_prefix"],
        kid_subsets=config["evaluation"]["kid_subsets"],
        kid_subset_size=config["evaluation"]["kid_subset_size"],
        cross_check=config["evaluation"]["cross_check"],
        bootstrap=(
            f"--bootstrap-replicates {config['evaluation']['bootstrap']['replicates']}"
            f" --bootstrap-seed {config['evaluation']['bootstrap']['seed']}"
            f" --confidence {config['evaluation']['bootstrap']['confidence']}"
        ),
        seed=run_seed(),
        device=config["device"],
    shell:
        "python -m clipvqd evaluate metrics --samples {input.samples:q} --distribution-samples {input.distribution:q}"
        " --seeds {params.seeds} --prompts {input.prompts} --evaluation-set {params.evaluation_set}"
        " --distribution-prompts {input.distribution_prompts} --prompt-prefix={params.prefix:q}"
        " --conditioner {input.conditioner} --judge {input.judge} {params.oracle}"
        " {params.inception} --method {wildcards.method} --variant {wildcards.variant:q}"
        " --cache-dir {params.cache} --kid-subsets {params.kid_subsets} --kid-subset-size {params.kid_subset_size}"
        " --cross-check {params.cross_check} --reference-name {params.reference_name:q} {params.bootstrap}"
        " --seed {params.seed} --out {output.table:q} --by-seed-out {output.by_seed:q} --units-out {output.units:q}"
        " --features-out {output.features:q} --protocol-out {output.protocol:q} --candidates {output.best_of:q}"
        " --device {params.device} > {log:q} 2>&1"


rule report:
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
        curves=list(training_curves().values()),
        samples=list(report_sample_grids().values()),
    output:
        html=report(REPORT / "index.html", caption="../report/index.rst", category="Comparison report"),
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
        out_dir=REPORT,
        grids=json_paths(report_sample_grids()),
        curves=json_paths(training_curves()),
        quality=json_paths(quality_labels()),
        calibration=lambda wildcards, input: (
            f"--oracle-calibration {shlex.quote(str(input.calibration[0]))}" if input.calibration else ""
        ),
        design=as_json(evaluation_design()),
        bootstrap=(
            f"--bootstrap-replicates {config['evaluation']['bootstrap']['replicates']}"
            f" --bootstrap-seed {config['evaluation']['bootstrap']['seed']}"
            f" --confidence {config['evaluation']['bootstrap']['confidence']}"
            f" --significance-level {config['evaluation']['significance_level']}"
        ),
        benchmarks=BENCHMARKS,
        title=config["report"]["title"],
        run=config["run"],
    shell:
        "python -m clipvqd evaluate report --tables {input.tables:q} --protocols {input.protocols:q}"
        " --by-seed {input.by_seed:q} --units {input.units:q} --features {input.features:q}"
        " --metrics-out {output.metrics} --by-seed-out {output.by_seed} --significance-out {output.significance}"
        " --protocol-out {output.protocol} --out-dir {params.out_dir} --design {params.design:q} {params.bootstrap}"
        " {params.calibration} --grids {params.grids:q} --curves {params.curves:q} --quality {params.quality:q}"
        " --benchmarks-dir {params.benchmarks} --title {params.title:q} --run-name {params.run:q} > {log} 2>&1"
