"""Every YAML under recipes/ parses into its config classes; a misspelt key or a wrong type fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from asclepius.recipes import RecipeError, check_all, check_recipe, main, recipe_kind

REPO = Path(__file__).resolve().parents[1]
REAL_RECIPES = [
    "asclepius-llama-7b",
    "asclepius-llama2-7b",
    "asclepius-llama2-13b",
    "asclepius-llama3.1-8b",
    "asclepius-mistral-7b-v0.3",
]


def test_every_recipe_parses_with_no_unknown_keys():
    results = check_all(REPO / "recipes")
    training = [path for path in results if recipe_kind(path) == "training"]
    assert all(results[path] == "ok" for path in training)
    expected = {REPO / "recipes/tiny/pretrain/config_full.yaml", REPO / "recipes/tiny/sft/config_lora.yaml"}
    for name in REAL_RECIPES:
        expected |= {REPO / f"recipes/{name}/pretrain/config_full.yaml"}
        expected |= {REPO / f"recipes/{name}/sft/config_{kind}.yaml" for kind in ("full", "lora", "qlora")}
    assert expected <= set(results)


@pytest.mark.parametrize("name", REAL_RECIPES)
def test_real_recipes_keep_the_papers_settings(name):
    script_args, training_args, model_args = check_recipe(REPO / f"recipes/{name}/pretrain/config_full.yaml")
    assert training_args.packing and training_args.packing_strategy == "wrapped"
    assert training_args.num_train_epochs == 1 and training_args.learning_rate == 2e-5
    assert training_args.warmup_steps == 0.03 and training_args.weight_decay == 0.0
    assert training_args.bf16 and training_args.activation_checkpointing
    per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    assert per_step * 8 == 128, "global batch 128 on the 8 GPUs the recipe is sized for"
    expected_length = {"asclepius-llama-7b": 2048, "asclepius-llama2-7b": 4096, "asclepius-llama2-13b": 4096}
    assert training_args.max_length == expected_length.get(name, 8192)

    _, sft_args, _ = check_recipe(REPO / f"recipes/{name}/sft/config_full.yaml")
    assert sft_args.num_train_epochs == 3 and sft_args.completion_only_loss
    assert sft_args.lr_scheduler_type == "cosine" or str(sft_args.lr_scheduler_type.value) == "cosine"
    _, qlora_args, qlora_model = check_recipe(REPO / f"recipes/{name}/sft/config_qlora.yaml")
    assert qlora_model.use_peft and qlora_model.load_in_4bit
    assert qlora_args.per_device_train_batch_size * qlora_args.gradient_accumulation_steps == 128


def write_recipe(tmp_path: Path, text: str, stage: str = "sft") -> Path:
    path = tmp_path / "my-recipe" / stage / "config_full.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_a_misspelt_key_fails(tmp_path):
    path = write_recipe(tmp_path, "model_name_or_path: outputs/tiny-model\nlearnig_rate: 1.0e-4\n")
    with pytest.raises(RecipeError, match="unknown key 'learnig_rate'"):
        check_recipe(path)
    with pytest.raises(RecipeError, match="learnig_rate"):
        check_all(tmp_path)


def test_a_float_written_without_a_dot_fails(tmp_path):
    # YAML 1.1 reads 2e-5 as the string "2e-5"; the Trainer would fail much later.
    path = write_recipe(tmp_path, "learning_rate: 2e-5\n", stage="pretrain")
    with pytest.raises(RecipeError, match="learning_rate: '2e-5' is a str.*2.0e-5"):
        check_recipe(path)


def test_a_bool_where_a_number_is_expected_fails(tmp_path):
    with pytest.raises(RecipeError, match="per_device_train_batch_size: True"):
        check_recipe(write_recipe(tmp_path, "per_device_train_batch_size: true\n"))


def test_invalid_values_fail_in_the_config_classes(tmp_path):
    with pytest.raises(RecipeError, match="test_ratio"):
        check_recipe(write_recipe(tmp_path, "test_ratio: 1.5\n"))


def test_gpu_settings_are_checked_only_where_there_is_a_gpu(tmp_path):
    path = write_recipe(tmp_path, "bf16: true\ntf32: true\n")
    assert check_recipe(path, gpu_available=False) is not None


def test_files_route_to_their_config_classes():
    assert recipe_kind(Path("recipes/x/pretrain/config_full.yaml")) == "training"
    assert recipe_kind(Path("recipes/x/sft/config_qlora.yaml")) == "training"
    assert recipe_kind(Path("recipes/x/data.yaml")) == "data"
    assert recipe_kind(Path("recipes/x/eval.yaml")) == "evaluation"


def test_command_line_reports_failures_with_exit_code_1(tmp_path, capsys):
    write_recipe(tmp_path, "not_a_field: 1\n")
    assert main(["--root", str(tmp_path)]) == 1
    assert "unknown key 'not_a_field'" in capsys.readouterr().err
    assert main([str(REPO / "recipes/tiny/sft/config_lora.yaml")]) == 0


def test_a_pretrain_recipe_gets_the_papers_defaults_for_what_it_leaves_out(tmp_path):
    path = write_recipe(tmp_path, "model_name_or_path: outputs/tiny-model\n", stage="pretrain")
    _, training_args, _ = check_recipe(path)
    assert training_args.num_train_epochs == 1 and training_args.packing
    assert training_args.packing_strategy == "wrapped"
    _, sft_args, _ = check_recipe(write_recipe(tmp_path / "other", "model_name_or_path: x\n"))
    assert sft_args.num_train_epochs == 3 and not sft_args.packing  # TRL's defaults, the paper's 3 epochs
