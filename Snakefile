# clipvqd: language-free text-to-image generation, reproduced and compared in one DAG.
# Thin by design: configuration and validation here, paths and helpers in workflow/rules/common.smk,
# one file of rules per stage, the real work in the clipvqd package.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/clip.smk"
include: "workflow/rules/oracle.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/diffusion.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/evaluation.smk"


rule all:
    default_target: True
    input:
        report=REPORT / "index.html",
        metrics=REPORT / "metrics.csv",


rule foundation:
    # Every stage built so far: data, CLIPs and their quality, the embedding cache, the oracle.
    input:
        foundation_targets(),
