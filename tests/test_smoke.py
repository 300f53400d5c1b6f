"""The smoke check: every stage of a recipe at toy scale, on a CPU, with the recipe's own files.

`make test` runs one recipe family here (the paper's LLaMA-7B recipe: data, pretraining,
full, LoRA and QLoRA instruction tuning, evaluation); `make smoke-all` runs every recipe.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asclepius import smoke

ROOT = Path(__file__).resolve().parents[1]


def test_model_types_of_the_recipes_are_known_without_a_download():
    names = set()
    for path in (ROOT / "recipes").rglob("*.yaml"):
        values = smoke.read_recipe(path)
        for key in ("model_name_or_path", "model"):
            value = str(values.get(key) or "")
            if value and not value.startswith(("outputs/", "gpt-")):
                names.add(value)
    assert names and all(smoke.model_type_of(name) in ("llama", "mistral") for name in names)
    with pytest.raises(smoke.SmokeFailure, match="unknown architecture"):
        smoke.model_type_of("someone/unheard-of-model")


def test_a_random_model_of_another_architecture_loads_and_runs(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smoke.build_random_model("mistral", tmp_path / "mistral")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "mistral" and model.num_parameters() < 2_000_000
    with torch.no_grad():
        assert model(**tokenizer("Pt admitted.", return_tensors="pt")).logits.shape[-1] == len(tokenizer)
    assert (
        "random Mistral" in (folder / "README.md").read_text()
        or "mistral" in (folder / "README.md").read_text()
    )


def test_cpu_overrides_are_stated():
    flags, notes = smoke.training_overrides(
        {
            "bf16": True,
            "tf32": True,
            "dtype": "bfloat16",
            "attn_implementation": "flash_attention_2",
            "report_to": "trackio",
            "max_length": 8192,
            "per_device_train_batch_size": 1,
        }  # fmt: skip
    )
    pairs = dict(zip(flags[::2], flags[1::2]))
    assert pairs["--bf16"] == "false" and pairs["--tf32"] == "false" and pairs["--dtype"] == "float32"
    assert pairs["--attn_implementation"] == "sdpa" and pairs["--max_length"] == "1024"
    assert "--per_device_train_batch_size" not in pairs  # 1 is already toy scale
    assert any("flash_attention_2 needs a GPU" in note for note in notes)
    assert any("tracker trackio is checked" in note for note in notes)


def test_a_recipe_family_runs_every_stage(tmp_path, capsys):
    [report] = smoke.smoke(["asclepius-llama-7b"], work_dir=tmp_path)
    steps = {step.name: step for step in report.steps}
    assert report.ok, "\n".join(report.lines())
    assert [name for name in steps] == [
        "data.yaml",
        "pretrain",
        "sft full",
        "sft lora",
        "sft qlora",
        "generate + judge",
    ]
    assert steps["sft qlora"].status in ("ok", "skipped")  # skipped without bitsandbytes and a GPU
    assert "bf16=false (a CPU cannot)" in report.overrides
    out = capsys.readouterr().out
    assert "== asclepius-llama-7b: ok" in out and "override  bf16=false" in out


def test_it_fails_on_a_wrong_path_an_unknown_key_and_a_missing_eval_recipe(tmp_path, capsys):
    recipes = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes" / "tiny", recipes / "broken")
    sft = recipes / "broken" / "sft" / "config_full.yaml"
    sft.write_text(sft.read_text().replace("outputs/tiny-pretrain", "outputs/tiny-pretrian"))
    lora = recipes / "broken" / "sft" / "config_lora.yaml"
    lora.write_text(lora.read_text() + "\nlearning_rat: 0.1\n")
    (recipes / "broken" / "eval.yaml").unlink()
    [report] = smoke.smoke(["broken"], root=recipes, work_dir=tmp_path / "work")
    steps = {step.name: step for step in report.steps}
    assert not report.ok
    assert steps["pretrain"].status == "ok"
    assert steps["sft full"].status == "failed" and "outputs/tiny-pretrian" in steps["sft full"].detail
    assert steps["sft lora"].status == "failed" and "exited 2" in steps["sft lora"].detail  # the unknown key
    assert (
        steps["generate + judge"].status == "failed"
        and "eval.yaml: missing" in steps["generate + judge"].detail
    )
    assert "learning_rat" in capsys.readouterr().err  # the script's own one-line error names the key
