# The two commands a new user needs: `make run` and `make test`. Each sets up .venv by itself.
VENV ?= .venv
CORES ?= 2
SNAKEMAKE_ARGS ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run foundation test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The whole DAG on config.yaml. --keep-going: every stage that can run does, even where another fails.
# After an interrupted run: the lock it left is removed when no Snakemake of this folder is alive
# (clipvqd/stale_lock.py says so), and --rerun-incomplete redoes the jobs it left half done (trainers
# resume from their snapshots). First, the machine's speed (clipvqd/machine_speed.py, a few seconds): the
# README's times hold on a machine of its calibration; the workflow records its own in the report.
run: setup
	python -m clipvqd.stale_lock
	python -m clipvqd calibrate
	snakemake --cores $(CORES) --keep-going --rerun-incomplete --printshellcmds $(SNAKEMAKE_ARGS)

# Only the stages built so far (data, CLIPs, embedding cache, oracle).
foundation: setup
	python -m clipvqd.stale_lock
	snakemake foundation --cores $(CORES) --rerun-incomplete $(SNAKEMAKE_ARGS)

test: setup
	pytest -q

lint: setup
	snakemake --lint --cores 1

# CPU benchmarks (benchmarks/README.md), JSON into benchmarks/results/. The CLIP cache and train-step benchmarks use the
# default run's files (conditioner, training split, token maps, embeddings) when they exist (read only), else stand-ins.
BENCH_THREADS ?= 1
BENCH_CLIP := results/default/clip/conditioner/model.safetensors
BENCH_MANIFEST := results/default/data/train.csv
BENCH_TOKENS := results/default/tokens/train.json
BENCH_EMBEDDINGS := results/default/embeddings/train_images.safetensors
BENCH_DENOISER := results/default/models/clip-vqdiffusion/alpha=0.5/cfg.safetensors
BENCH_PROMPTS := results/default/embeddings/prompts.safetensors
bench: setup
	OMP_NUM_THREADS=$(BENCH_THREADS) python benchmarks/diffusion_cpu.py --threads $(BENCH_THREADS)
	OMP_NUM_THREADS=$(BENCH_THREADS) python benchmarks/clip_embed_cpu.py --threads $(BENCH_THREADS) \
		$(if $(wildcard $(BENCH_CLIP)),--clip $(BENCH_CLIP)) $(if $(wildcard $(BENCH_MANIFEST)),--manifest $(BENCH_MANIFEST))
	OMP_NUM_THREADS=$(BENCH_THREADS) python benchmarks/train_steps_cpu.py --threads $(BENCH_THREADS) \
		$(if $(and $(wildcard $(BENCH_TOKENS)),$(wildcard $(BENCH_EMBEDDINGS))),--tokens $(BENCH_TOKENS) --embeddings $(BENCH_EMBEDDINGS)) \
		$(if $(and $(wildcard $(BENCH_DENOISER)),$(wildcard $(BENCH_PROMPTS))),--denoiser '$(BENCH_DENOISER)' --prompt-embeddings $(BENCH_PROMPTS))

clean:
	rm -rf results reports/default .snakemake
