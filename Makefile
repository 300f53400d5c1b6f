# Asclepius: one target per stage. Variables can be overridden: make sft RECIPE=asclepius-llama3.1-8b
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON_BIN ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

RECIPE ?= tiny
INPUT ?=
OUTPUT ?=
BASE_URL ?=
MODEL ?=
ACCELERATE_CONFIG ?= accelerate_configs/ddp.yaml
NUM_PROCESSES ?= 1
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help install tiny-model test style quality check-recipes clean

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: this version has a CPU wheel on disk here and is the same release on PyPI.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,serving]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project (fast when already done)

tiny-model: $(STAMP)  ## build the tiny offline model + tokenizer into outputs/tiny-model
	$(PY) -m asclepius.tiny --output_dir outputs/tiny-model

test: $(STAMP)  ## run the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

style: $(STAMP)  ## format and autofix with ruff
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

quality: $(STAMP)  ## lint with ruff (no changes)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache

# --- data stages: notes, questions, answers, mimic ---
# Each stage reads recipes/$(RECIPE)/data.yaml; the recipe names the folders that chain
# them, INPUT / OUTPUT override one stage's (--input / --output_dir). --base_url and
# --model are passed only when BASE_URL / MODEL are set. e.g.
#   make notes questions answers RECIPE=tiny BASE_URL=http://127.0.0.1:8000/v1
#   make mimic INPUT=/secure/NOTEEVENTS.csv ARGS="--exclude_ids excluded.txt"
DATA_RECIPE = recipes/$(RECIPE)/data.yaml
DATA_FLAGS = $(if $(BASE_URL),--base_url $(BASE_URL)) $(if $(MODEL),--model $(MODEL)) \
	$(if $(INPUT),--input $(INPUT)) $(if $(OUTPUT),--output_dir $(OUTPUT)) $(ARGS)

.PHONY: notes questions answers mimic

notes: $(STAMP)  ## case reports -> synthetic discharge summaries (teacher LLM)
	$(PY) scripts/make_notes.py --config $(DATA_RECIPE) $(DATA_FLAGS)

questions: $(STAMP)  ## notes -> one task + question per note (teacher LLM)
	$(PY) scripts/make_questions.py --config $(DATA_RECIPE) $(DATA_FLAGS)

answers: $(STAMP)  ## questions -> answers, filters, train/test by patient (teacher LLM)
	$(PY) scripts/make_answers.py --config $(DATA_RECIPE) $(DATA_FLAGS)

mimic: $(STAMP)  ## MIMIC-III NOTEEVENTS.csv (INPUT=...) -> private notes folder with de-id tags
	$(PY) scripts/prepare_mimic.py --config $(DATA_RECIPE) $(DATA_FLAGS)
# --- end of data stages ---
