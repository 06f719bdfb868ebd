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
run: setup
	snakemake --cores $(CORES) --keep-going --printshellcmds $(SNAKEMAKE_ARGS)

# Only the stages built so far (data, CLIPs, embedding cache, oracle).
foundation: setup
	snakemake foundation --cores $(CORES) $(SNAKEMAKE_ARGS)

test: setup
	pytest -q

lint: setup
	snakemake --lint --cores 1

clean:
	rm -rf results reports/default .snakemake
