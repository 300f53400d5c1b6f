"""Every YAML under recipes/ parses into its config classes; a misspelt key or a wrong type fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from asclepius.errors import InputError
from asclepius.recipes import RecipeError, check_all, check_recipe, main, parse_recipe, recipe_kind

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


# --- one argument class per stage: a family's recipe file, each stage's flags ----------------
def write_family_recipe(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "my-recipe" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_each_data_stage_takes_its_keys_of_data_yaml_and_leaves_the_others():
    recipe = REPO / "recipes/tiny/data.yaml"
    notes, engine = parse_recipe("make_notes", ["--config", str(recipe)])
    assert notes.case_reports and notes.context_length == 2048 and engine.max_tokens == 48
    (mimic,) = parse_recipe("prepare_mimic", ["--config", str(recipe)])  # base_url, model...: not its keys
    assert mimic.mimic_notes_dir == "outputs/tiny/mimic-notes" and not hasattr(mimic, "context_length")
    answers, _ = parse_recipe("make_answers", ["--config", str(recipe)])
    assert answers.test_ratio == 0.2 and not hasattr(answers, "dedup_threshold")


def test_a_key_no_stage_of_the_family_knows_fails(tmp_path):
    path = write_family_recipe(tmp_path, "data.yaml", "notes_dir: x\ndedup_treshold: 0.5\n")
    with pytest.raises(
        RecipeError, match="unknown key 'dedup_treshold' \\(did you mean 'dedup_threshold'\\?\\)"
    ):
        check_recipe(path)
    with pytest.raises(
        InputError, match="data.yaml: field 'dedup_treshold': unknown key; did you mean 'dedup_threshold'"
    ):
        parse_recipe("prepare_mimic", ["--config", str(path)])  # whichever stage reads it
    # A key of another family is unknown here too: eval.yaml's judge_model is no data key.
    path.write_text("judge_model: gpt-4o\n")
    with pytest.raises(RecipeError, match="unknown key 'judge_model'"):
        check_recipe(path)


def test_check_recipes_runs_every_stages_own_checks(tmp_path):
    path = write_family_recipe(tmp_path, "data.yaml", "deid_style: bogus\ndedup_threshold: 2.0\n")
    with pytest.raises(RecipeError) as error:
        check_recipe(path)
    assert "prepare_mimic: --deid_style" in str(error.value) and "make_questions: --dedup_threshold" in str(
        error.value
    )
    path = write_family_recipe(tmp_path, "eval.yaml", "num_shuffles: 0\n")
    with pytest.raises(RecipeError, match="judge: --num_shuffles must be >= 1"):
        check_recipe(path)


def test_an_alias_is_a_recipe_key_too(tmp_path):
    path = write_family_recipe(tmp_path, "data.yaml", "teacher_model: m\nhub_private_repo: true\n")
    notes, engine = parse_recipe("make_notes", ["--config", str(path)])
    assert engine.model == "m" and notes.private
    path.write_text("teacher_model: m\nmodel: n\n")
    with pytest.raises(InputError, match="'model' and 'model' are the same setting|same setting"):
        parse_recipe("make_notes", ["--config", str(path)])


@pytest.mark.parametrize(
    "stage, flag, owners",
    [
        ("generate", "--judge_model", "judge"),
        ("judge", "--device", "generate"),
        ("prepare_mimic", "--base_url", "make_notes"),
        ("make_notes", "--deid_style", "prepare_mimic"),
        ("sft", "--judge_style", "judge"),
    ],
)
def test_a_flag_of_another_stage_is_a_one_line_error_naming_it(stage, flag, owners):
    with pytest.raises(InputError) as error:
        parse_recipe(stage, [flag, "x"])
    message = str(error.value)
    assert message.startswith(f"{flag}: not a flag of {stage}; it is a flag of ") and owners in message
    assert "\n" not in message


def test_the_judge_names_its_own_flag_for_generates():
    with pytest.raises(InputError, match="--model: not a flag of judge.*judge takes --judge_model"):
        parse_recipe("judge", ["--model", "gpt-4o"])


def test_a_misspelt_flag_gets_the_closest_of_the_stages_own():
    with pytest.raises(InputError, match="--limt: not a flag of make_notes; did you mean --limit\\?"):
        parse_recipe("make_notes", ["--limt", "3"])
    with pytest.raises(InputError, match="--max_tok: not a flag of generate"):  # no silent abbreviations
        parse_recipe("generate", ["--max_tok", "3"])


@pytest.mark.parametrize(
    "stage, argv, expected",
    [
        ("make_notes", ["--limit", "abc"], "--limit: expected an integer, got 'abc'"),
        ("make_notes", ["--push_to_hub", "maybe"], "--push_to_hub: expected true or false, got 'maybe'"),
        ("generate", ["--max_new_tokens", "ten"], "--max_new_tokens: expected an integer, got 'ten'"),
        ("judge", ["--decontamination_threshold", "half"], "--decontamination_threshold: expected a number"),
        ("prepare_mimic", ["--deid_style", "x"], "--deid_style: expected one of original, ours, got 'x'"),
        ("make_answers", ["--limit"], "--limit: needs a value (an integer)"),
    ],
)
def test_type_errors_on_the_command_line_are_one_line(stage, argv, expected):
    with pytest.raises(InputError) as error:
        parse_recipe(stage, argv)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_type_errors_in_the_recipe_are_one_line_naming_file_and_key(tmp_path):
    path = write_family_recipe(tmp_path, "data.yaml", "limit: abc\n")
    with pytest.raises(InputError, match=r"data.yaml: limit: 'abc' is a str, expected int"):
        parse_recipe("make_notes", ["--config", str(path)])
    path.write_text("push_to_hub: maybe\n")
    with pytest.raises(InputError, match=r"push_to_hub: 'maybe' is a str, expected bool \(true/false\)"):
        parse_recipe("prepare_mimic", ["--config", str(path)])


def test_one_name_per_idea_aliases():
    notes, engine = parse_recipe("make_notes", ["--teacher_model", "t", "--hub_private_repo", "true"])
    assert engine.model == "t" and notes.private
    args, engine = parse_recipe(
        "generate", ["--model_name_or_path", "m", "--max_new_tokens", "7", "--dataset_name", "d"]
    )
    assert (engine.model, engine.max_tokens, args.input) == ("m", 7, "d")
    (merge,) = parse_recipe("merge_adapter", ["--private", "true"])
    assert merge.hub_private_repo
    _, training, _ = parse_recipe("sft", ["--private", "true", "--output_dir", "x", "--use_cpu", "true"])
    assert training.hub_private_repo
