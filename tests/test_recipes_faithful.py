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
        if re.search(r"asclepius-(r-llama-7b|r-llama-13b|llama-13b|llama3-8b|paper-eval)/", str(path))
    ]
    assert len(new) == 4 + 4 + 3 + 3 + len(BASELINES) and all(results[path] == "ok" for path in new)


@pytest.mark.parametrize(
    "name, base, max_length, prompt_format",
    [
        ("asclepius-llama-7b", "huggyllama/llama-7b", 2048, "original"),
        ("asclepius-llama-13b", "huggyllama/llama-13b", 2048, "original"),
        ("asclepius-llama3-8b", "meta-llama/Meta-Llama-3-8B", 8192, "readme"),
        ("asclepius-r-llama-7b", "huggyllama/llama-7b", 2048, "original"),
        ("asclepius-r-llama-13b", "huggyllama/llama-13b", 2048, "original"),
    ],
)
def test_training_recipes_keep_the_papers_settings(name, base, max_length, prompt_format):
    pretrain_script, pretrain, model = check_recipe(REPO / f"recipes/{name}/pretrain/config_full.yaml")
    assert model.model_name_or_path == base and pretrain.max_length == max_length
    # The LLaMA-1 reproductions pretrain on the original's stream; Llama 3 keeps our packing.
    assert pretrain_script.pretrain_stream == ("original" if prompt_format == "original" else "packed")
    assert pretrain.packing and pretrain.packing_strategy == "wrapped" and pretrain.num_train_epochs == 1
    assert pretrain.per_device_train_batch_size * pretrain.gradient_accumulation_steps * 8 == 128
    script, sft, _ = check_recipe(REPO / f"recipes/{name}/sft/config_full.yaml")
    assert sft.num_train_epochs == 3 and sft.learning_rate == 2e-5 and sft.completion_only_loss
    assert sft.per_device_train_batch_size * sft.gradient_accumulation_steps * 8 == 128
    assert script.prompt_format == prompt_format


@pytest.mark.parametrize("name", ["asclepius-r-llama-7b", "asclepius-r-llama-13b"])
def test_asclepius_r_is_built_from_mimic_privately_and_faithfully(name):
    recipe = REPO / f"recipes/{name}/data.yaml"
    (mimic,) = check_recipe(recipe, stage="prepare_mimic")
    assert mimic.deid_style == "original" and mimic.exclude_ids is None  # the shipped 517 ROW_IDs
    answers, _engine = check_recipe(recipe, stage="make_answers")
    assert answers.self_reference_extra == [] and answers.source_restricted
    questions, _engine = check_recipe(recipe, stage="make_questions")
    assert questions.notes_dir == mimic.mimic_notes_dir  # questions are asked about the MIMIC notes
    assert questions.dedup_threshold == 1.0  # the original kept every question
    for stage in ("pretrain", "sft"):
        script, training, _ = check_recipe(REPO / f"recipes/{name}/{stage}/config_full.yaml")
        assert "asclepius-r-llama-7b/mimic" in script.dataset_name  # R-13B trains on R-7B's data
        assert (
            not training.push_to_hub
            and training.hub_private_repo
            and training.report_to in ("none", ["none"], [])
        )
        assert training.output_dir == f"outputs/{name}/{stage}"
    generate, _engine = check_recipe(REPO / f"recipes/{name}/eval.yaml", stage="generate")
    assert generate.input == "outputs/asclepius-r-llama-7b/mimic-instructions"


def test_the_7b_reproduction_trains_on_the_original_bytes(tiny_model_path):
    """The README's reproduce-the-paper recipe: its first training example's ids are the original format's."""
    from datasets import Dataset

    from asclepius.training.formatting import to_prompt_completion, tokenize_prompt_completion
    from asclepius.training.tokenizer import load_tokenizer

    for name in ("config_full", "config_lora", "config_qlora"):
        script, _, _ = check_recipe(REPO / f"recipes/asclepius-llama-7b/sft/{name}.yaml")
        assert script.prompt_format == "original", name
    row = {"note": ["\nPt w/ CP.\nTrop neg x2.\n"], "question": ["\nWhat were the troponins?\n"],
           "answer": ["\nNegative twice.\n"]}  # fmt: skip
    first = to_prompt_completion(
        Dataset.from_dict(row),
        note_column=script.note_column,
        question_column=script.question_column,
        answer_column=script.answer_column,
        prompt_format=script.prompt_format,
    )[0]
    tokenizer = load_tokenizer(str(tiny_model_path))
    ids = tokenize_prompt_completion(tokenizer, first["prompt"], first["completion"])["input_ids"]
    # The original's bytes, written out: no space after [Instruction End], every field strip("\n"),
    # the answer then EOS, tokenized as one string as the original did.
    original = (
        "You are an intelligent clinical languge model.\n"
        "Below is a snippet of patient's discharge summary and a following instruction from healthcare professional.\n"
        "Write a response that appropriately completes the instruction.\n"
        "The response should provide the accurate answer to the instruction, while being concise.\n\n"
        "[Discharge Summary Begin]\nPt w/ CP.\nTrop neg x2.\n[Discharge Summary End]\n\n"
        "[Instruction Begin]\nWhat were the troponins?\n[Instruction End]\nNegative twice."
    )
    assert ids == tokenizer(original)["input_ids"] + [tokenizer.eos_token_id]
    # The README bytes (our default) are another sequence: the recipe really chose.
    readme = to_prompt_completion(Dataset.from_dict(row))[0]
    assert tokenize_prompt_completion(tokenizer, readme["prompt"], readme["completion"])["input_ids"] != ids


def test_the_reproduction_recipes_keep_every_question():
    for name in ("asclepius-llama-7b", "asclepius-r-llama-7b", "asclepius-r-llama-13b"):
        questions, _engine = check_recipe(REPO / f"recipes/{name}/data.yaml", stage="make_questions")
        assert questions.dedup_threshold == 1.0, name
    smol, _engine = check_recipe(REPO / "recipes/smol/data.yaml", stage="make_questions")
    assert smol.dedup_threshold == 0.7  # our default keeps de-duplication
    from asclepius.data.questions import QuestionPool
    from asclepius.tasks import TASKS

    kept, deduplicated = QuestionPool(1.0), QuestionPool(0.7)
    for pool in (kept, deduplicated):
        pool.add(TASKS[0], "Which medications was the patient discharged on?")
    repeat = "Which medications was the patient discharged on?"
    assert not kept.max_similarity(TASKS[0], repeat) > kept.threshold  # 1.0: the repeat joins the pool
    assert deduplicated.max_similarity(TASKS[0], repeat) > deduplicated.threshold


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


def test_paper_eval_without_an_evaluation_set_fails_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    recipe = REPO / "recipes/asclepius-paper-eval/asclepius-7b/eval.yaml"
    args, _engine = check_recipe(recipe, stage="generate")
    assert args.input is None  # never the synthetic held-out split by default
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "scripts/generate.py", "--config", str(recipe), "--output_dir", str(tmp_path / "answers")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [result.stderr.strip().splitlines()[-1]] and len(lines) == 1
    assert "--input" in lines[0] and "evaluation set" in lines[0]
    assert not (tmp_path / "answers").exists()  # nothing written
    makefile = (REPO / "Makefile").read_text()
    assert "INPUT=$(EVAL_SET)" in makefile and "--train_dataset $(TRAIN_SET)" in makefile
