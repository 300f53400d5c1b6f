"""The evaluation recipes parse into the evaluation dataclasses, with no unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from trl import TrlParser

from asclepius.evaluation.config import RECIPE_CLASSES, EvaluationArguments

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*/eval.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_eval_recipes_parse_with_every_key_a_field(recipe):
    fields = {name for cls in RECIPE_CLASSES for name in cls.__dataclass_fields__}
    keys = set(yaml.safe_load(recipe.read_text()))
    assert keys <= fields, keys - fields
    args, engine_args = TrlParser(RECIPE_CLASSES).parse_args_and_config(["--config", str(recipe)])
    assert args.input and engine_args.model and args.judge_model
    # CLI flags override the recipe, lists included.
    args, _ = TrlParser(RECIPE_CLASSES).parse_args_and_config(
        ["--config", str(recipe), "--inputs", "a", "b", "--decoding", "paper"]
    )
    assert args.inputs == ["a", "b"] and args.decoding == "paper"


def test_both_recipes_exist():
    assert {p.parent.name for p in RECIPES} >= {"tiny", "asclepius-llama-7b"}


@pytest.mark.parametrize(
    "bad",
    [
        {"backend": "vllm"},
        {"prompt_style": "llama"},
        {"decoding": "beam"},
        {"batch_size": 0},
        {"num_shuffles": 0},
    ],
)
def test_bad_values_fail_at_parse_time_naming_the_flag(bad):
    [name] = bad
    with pytest.raises(ValueError, match=f"--{name}"):
        EvaluationArguments(**bad)
