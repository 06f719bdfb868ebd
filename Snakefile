# clipvqd: language-free text-to-image generation, reproduced and compared in one DAG.
# Thin by design: configuration and validation here, paths and helpers in workflow/rules/common.smk,
# one file of rules per stage, the real work in the clipvqd package.

import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# This workflow's own source folder: its rules run this checkout's clipvqd package, whether Snakemake runs
# this Snakefile or another workflow uses it as a module, and whatever the calling environment has installed.
WORKFLOW_ROOT = Path(str(workflow.current_basedir))
sys.path.insert(0, str(WORKFLOW_ROOT))

from clipvqd.config_schema import validate_config


configfile: "config.yaml"


# Defaults filled in from the schema; a bad key stops here in a few lines naming it (and the closest valid key).
validate_config(config, WORKFLOW_ROOT / "workflow" / "schemas" / "config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/clip.smk"
include: "workflow/rules/oracle.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/diffusion.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/compute_curve.smk"


rule all:
    """The comparison report of every method and sweep branch (the default target)."""
    default_target: True
    input:
        report=REPORT / "index.html",
        metrics=REPORT / "metrics.csv",


rule foundation:
    """Data, CLIPs and their quality, the embedding cache and the oracle: everything before the generators."""
    input:
        foundation_targets(),
