"""The evaluation recipes parse into generate's and the judge's classes; each stage takes its own keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asclepius.evaluation.config import GenerateArguments, JudgeArguments
from asclepius.recipes import parse_recipe, stage_classes

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*/eval.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_eval_recipes_parse_for_both_stages_with_every_key_known(recipe):
    known = {
        name
        for stage in ("generate", "judge")
        for cls in stage_classes(stage)
        for name in cls.__dataclass_fields__
    }
    keys = set(yaml.safe_load(recipe.read_text()))
    assert keys <= known, keys - known
    args, engine_args = parse_recipe("generate", ["--config", str(recipe)])
    assert args.input and engine_args.model
    judge, _ = parse_recipe("judge", ["--config", str(recipe)])
    assert judge.judge_model
    # CLI flags override the recipe, lists included.
    judge, _ = parse_recipe("judge", ["--config", str(recipe), "--inputs", "a", "b", "--num_shuffles", "3"])
    assert judge.inputs == ["a", "b"] and judge.num_shuffles == 3
    args, _ = parse_recipe("generate", ["--config", str(recipe), "--decoding", "paper"])
    assert args.decoding == "paper"


def test_both_recipes_exist():
    assert {p.parent.name for p in RECIPES} >= {"tiny", "asclepius-llama-7b"}


@pytest.mark.parametrize(
    "cls, bad",
    [
        (GenerateArguments, {"backend": "vllm"}),
        (JudgeArguments, {"backend": "vllm"}),
        (GenerateArguments, {"prompt_style": "llama"}),
        (GenerateArguments, {"decoding": "beam"}),
        (GenerateArguments, {"batch_size": 0}),
        (JudgeArguments, {"num_shuffles": 0}),
    ],
)
def test_bad_values_fail_at_parse_time_naming_the_flag(cls, bad):
    [name] = bad
    with pytest.raises(ValueError, match=f"--{name}"):
        cls(**bad)


def test_generate_and_judge_take_only_their_own_flags():
    generate = {
        name
        for cls in stage_classes("generate")
        for name in cls.__dataclass_fields__
        if cls.__dataclass_fields__[name].init
    }
    judge = {
        name
        for cls in stage_classes("judge")
        for name in cls.__dataclass_fields__
        if cls.__dataclass_fields__[name].init
    }
    assert {"judge_model", "num_shuffles", "train_dataset", "inputs"}.isdisjoint(generate)
    assert {"device", "decoding", "prompt_style", "model", "base_url", "max_tokens", "input"}.isdisjoint(
        judge
    )
    assert {"output_dir", "backend", "allowed_endpoints", "max_concurrency", "dry_run"} <= generate & judge
