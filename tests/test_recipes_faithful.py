"""The recipes that reproduce the paper: Asclepius-R, LLaMA-1 13B, Meta-Llama-3-8B, and the
paper's open baselines, each parsed by `make check-recipes` and holding the paper's settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asclepius.recipes import check_all, check_recipe

REPO = Path(__file__).resolve().parents[1]
# The paper's evaluation formats per baseline (REFERENCE.md), with the Hub repos it used.
BASELINES = {
    "asclepius-7b": ("starmpcc/Asclepius-7B", "asclepius_paper", None),
    "asclepius-13b": ("starmpcc/Asclepius-13B", "asclepius_paper", None),
    "llama-7b": ("huggyllama/llama-7b", "llama_base", None),
    "pmc-llama-7b": ("chaoyi-wu/PMC_LLAMA_7B", "llama_base", None),
    "alpaca-7b": ("chavinlo/alpaca-native", "alpaca", None),
    "chatdoctor-7b": ("zl111/ChatDoctor", "alpaca", "result"),
    "medalpaca-7b": ("medalpaca/medalpaca-7b", "medalpaca", None),
    "vicuna-7b": ("lmsys/vicuna-7b-v1.3", "vicuna", None),
    "clinical-camel-70b": ("wanglab/ClinicalCamel-70B", "vicuna", None),
}


def test_check_recipes_covers_the_new_recipes():
    results = check_all(REPO / "recipes")
    new = [
        path
        for path in results
        if re.search(r"asclepius-(r-llama-7b|llama-13b|llama3-8b|paper-eval)/", str(path))
    ]
    assert len(new) == 3 + 2 + 2 + len(BASELINES) and all(results[path] == "ok" for path in new)


@pytest.mark.parametrize(
    "name, base, max_length, prompt_format",
    [
        ("asclepius-llama-13b", "huggyllama/llama-13b", 2048, "original"),
        ("asclepius-llama3-8b", "meta-llama/Meta-Llama-3-8B", 8192, "readme"),
        ("asclepius-r-llama-7b", "huggyllama/llama-7b", 2048, "original"),
    ],
)
def test_training_recipes_keep_the_papers_settings(name, base, max_length, prompt_format):
    _, pretrain, model = check_recipe(REPO / f"recipes/{name}/pretrain/config_full.yaml")
    assert model.model_name_or_path == base and pretrain.max_length == max_length
    assert pretrain.packing and pretrain.packing_strategy == "wrapped" and pretrain.num_train_epochs == 1
    assert pretrain.per_device_train_batch_size * pretrain.gradient_accumulation_steps * 8 == 128
    script, sft, _ = check_recipe(REPO / f"recipes/{name}/sft/config_full.yaml")
    assert sft.num_train_epochs == 3 and sft.learning_rate == 2e-5 and sft.completion_only_loss
    assert sft.per_device_train_batch_size * sft.gradient_accumulation_steps * 8 == 128
    assert script.prompt_format == prompt_format


def test_asclepius_r_is_built_from_mimic_privately_and_faithfully():
    recipe = REPO / "recipes/asclepius-r-llama-7b/data.yaml"
    (mimic,) = check_recipe(recipe, stage="prepare_mimic")
    assert mimic.deid_style == "original" and mimic.exclude_ids is None  # the shipped 517 ROW_IDs
    answers, _engine = check_recipe(recipe, stage="make_answers")
    assert answers.self_reference_extra == [] and answers.source_restricted
    questions, _engine = check_recipe(recipe, stage="make_questions")
    assert questions.notes_dir == mimic.mimic_notes_dir  # questions are asked about the MIMIC notes
    for stage in ("pretrain", "sft"):
        script, training, _ = check_recipe(REPO / f"recipes/asclepius-r-llama-7b/{stage}/config_full.yaml")
        assert "asclepius-r-llama-7b/mimic" in script.dataset_name
        assert not training.push_to_hub and training.hub_private_repo


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_paper_baselines_are_prompted_and_judged_as_the_paper_did(name):
    recipe = REPO / f"recipes/asclepius-paper-eval/{name}/eval.yaml"
    args, engine = check_recipe(recipe, stage="generate")
    hub_id, style, subfolder = BASELINES[name]
    assert (engine.model, args.prompt_style, args.model_subfolder) == (hub_id, style, subfolder)
    judge, _ = check_recipe(recipe, stage="judge")
    assert args.decoding == "paper" and judge.judge_style == "paper"
    assert (judge.judge_temperature, judge.judge_max_tokens, judge.max_parse_attempts) == (0.0, 2048, 1)


def test_make_evaluate_paper_runs_every_baseline():
    makefile = (REPO / "Makefile").read_text()
    listed = re.search(r"PAPER_EVAL \?= (.*?)\nPAPER_EVAL_ROOT", makefile, re.S).group(1).replace("\\\n", " ")
    assert (
        set(listed.split())
        == set(BASELINES)
        == {p.parent.name for p in (REPO / "recipes/asclepius-paper-eval").glob("*/eval.yaml")}
    )
