#!/usr/bin/env bash
# Runs inside the freshly created envs/data.yaml environment (Snakemake's post-deploy hook), from the
# directory Snakemake runs in: the repository root, unless CLIPVQD_SOURCE names the checkout to install.
# Editable and without dependencies: the env file pins those, and jobs then run the checkout's code.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e "${CLIPVQD_SOURCE:-.}"
