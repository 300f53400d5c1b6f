"""Model cards of the training stages: metadata, what the text says, and the MIMIC guard."""

from __future__ import annotations

import json

import pytest
from trl import ModelConfig, SFTConfig

from asclepius.errors import InputError
from asclepius.prompts import INFERENCE_PROMPT
from asclepius.stage import check_push, classify
from asclepius.stage.files import read_card_metadata
from asclepius.stage.provenance import MIMIC_LICENSE_NAME, mark_mimic_derived
from asclepius.training import card
from asclepius.training.config import TrainScriptArguments


def facts_for(
    tmp_path, *, stage="sft", dataset="starmpcc/Asclepius-Synthetic-Clinical-Notes", provenance=None, **model
):
    training_args = SFTConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, per_device_train_batch_size=4,
        gradient_accumulation_steps=8, packing=stage == "pretrain", packing_strategy="wrapped", report_to="none",
    )  # fmt: skip
    return card.gather_facts(
        stage=stage,
        script_args=TrainScriptArguments(dataset_name=dataset),
        training_args=training_args,
        model_args=ModelConfig(model_name_or_path=model.pop("base", "meta-llama/Llama-2-7b-hf"), **model),
        train_metrics={"train_loss": 1.25, "train_runtime": 12.0},
        log_history=[{"loss": 1.5, "step": 10}, {"loss": 1.1, "step": 20}],
        num_train_examples=1234,
        learning_signal={"heldout_answer_loss_before": 2.0, "heldout_answer_loss_after": 1.2},
        provenance=provenance,
    )


def test_sft_card_has_the_metadata_and_the_prompt(tmp_path):
    facts = facts_for(tmp_path)
    path = card.render_card(tmp_path / "out", facts)
    metadata = read_card_metadata(tmp_path / "out")
    assert metadata["base_model"] == "meta-llama/Llama-2-7b-hf"
    assert metadata["datasets"] == ["starmpcc/Asclepius-Synthetic-Clinical-Notes"]
    assert metadata["license"] == "cc-by-nc-sa-4.0" and metadata["library_name"] == "transformers"
    text = path.read_text()
    assert INFERENCE_PROMPT in text, "the prompt must appear byte for byte"
    assert "Research use only. Not for clinical decisions." in text
    assert "| global_batch_size | 32 (4 per device x 8 accumulation x 1 processes) |" in text
    assert "| final_logged_loss | 1.1 |" in text and "| heldout_answer_loss_after | 1.2 |" in text
    assert "kweon2024publicly" in text and "zhao2023pmcpatients" in text
    assert json.loads((tmp_path / "out" / ".asclepius" / "card_facts.json").read_text())["stage"] == "sft"


def test_adapter_card_says_peft_and_merged_card_says_transformers(tmp_path):
    facts = facts_for(tmp_path, use_peft=True, lora_r=8)
    card.render_card(tmp_path / "out", facts)
    assert read_card_metadata(tmp_path / "out")["library_name"] == "peft"
    assert "AutoPeftModelForCausalLM" in (tmp_path / "out" / "README.md").read_text()
    assert "r=8" in (tmp_path / "out" / "README.md").read_text()

    merged = card.merged_facts(
        str(tmp_path / "out"), base_model="meta-llama/Llama-2-7b-hf", model_name="me/merged"
    )
    card.render_card(tmp_path / "merged", merged)
    assert read_card_metadata(tmp_path / "merged")["library_name"] == "transformers"
    assert "merged into the base weights" in (tmp_path / "merged" / "README.md").read_text()


def test_local_base_model_resolves_to_the_hub_id_its_card_names(tmp_path):
    pretrain = facts_for(tmp_path, stage="pretrain", base="huggyllama/llama-7b")
    card.render_card(tmp_path / "out", pretrain)
    # The SFT stage starts from the local CPT folder; its card names the Hub base.
    assert card.resolve_base_model(str(tmp_path / "out")) == "huggyllama/llama-7b"
    assert card.resolve_base_model("mistralai/Mistral-7B-v0.3") == "mistralai/Mistral-7B-v0.3"


def test_a_model_trained_on_mimic_data_inherits_the_licence_and_cannot_go_public(tmp_path):
    dataset = tmp_path / "mimic-instructions"
    mark_mimic_derived(dataset)
    # The flag comes from the stage's provenance alone (what the stage layer classified), not re-derived.
    assert not facts_for(tmp_path, dataset=str(dataset))["mimic_derived"]
    facts = facts_for(tmp_path, dataset=str(dataset), provenance=classify(dataset))
    assert facts["mimic_derived"] and facts["restricted_sources"] == [str(dataset.resolve())]
    card.render_card(tmp_path / "out", facts)
    metadata = read_card_metadata(tmp_path / "out")
    assert metadata["license"] == "other" and metadata["license_name"] == MIMIC_LICENSE_NAME
    assert "datasets" not in metadata, "a local folder is not a Hub dataset id"
    with pytest.raises(InputError, match="public repository"):
        check_push(classify(tmp_path / "out"), push=True, private=False)
    check_push(classify(tmp_path / "out"), push=True, private=True)


def test_the_learning_signal_reads_as_one_line():
    from asclepius.training.stage import describe_signal

    signal = {
        "heldout_note_perplexity_before": 4017.39,
        "heldout_note_perplexity_after": 481.88,
        "heldout_note_perplexity_reduction": 0.88,
        "heldout_notes": 5,
    }
    assert describe_signal(signal) == "held-out note perplexity: 4017.390 before, 481.880 after (88% lower)"
