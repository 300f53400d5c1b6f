"""The licence a model card names (the stricter of data and base model), and what its snippet loads."""

from __future__ import annotations

from trl import ModelConfig, SFTConfig

from asclepius.stage.files import read_card_metadata
from asclepius.training import card
from asclepius.training.config import TrainScriptArguments


def facts_for(
    tmp_path,
    *,
    dataset="starmpcc/Asclepius-Synthetic-Clinical-Notes",
    base="meta-llama/Llama-2-7b-hf",
    declared=None,
):
    training_args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none")
    return card.gather_facts(stage="sft", script_args=TrainScriptArguments(dataset_name=dataset, dataset_license=declared),
                             training_args=training_args, model_args=ModelConfig(model_name_or_path=base),
                             train_metrics={}, log_history=[], num_train_examples=1, learning_signal=None)  # fmt: skip


def test_the_licence_is_the_stricter_of_the_data_and_the_base_model(tmp_path):
    # The published dataset (CC BY-NC-SA, PMC-derived) on Llama 2: the non-commercial data licence governs.
    card.render_card(tmp_path / "out", facts_for(tmp_path))
    assert read_card_metadata(tmp_path / "out")["license"] == "cc-by-nc-sa-4.0"
    text = (tmp_path / "out" / "README.md").read_text()
    assert "training data: cc-by-nc-sa-4.0" in text and "starting model: llama2" in text

    # CC0 data (a raw file whose licence the user declares) on an Apache-2.0 model: Apache-2.0.
    data = tmp_path / "notes.jsonl"
    data.write_text("{}\n")
    facts = facts_for(
        tmp_path / "b", dataset=str(data), base="HuggingFaceTB/SmolLM2-135M-Instruct", declared="cc0-1.0"
    )
    card.render_card(tmp_path / "b" / "out", facts)
    assert read_card_metadata(tmp_path / "b" / "out")["license"] == "apache-2.0"
    assert (
        "training data: cc0-1.0, from the declaration (--dataset_license)"
        in (tmp_path / "b" / "out" / "README.md").read_text()
    )

    # A base model whose licence cannot be read: "other", named unknown, never a permissive guess.
    facts = facts_for(tmp_path / "c", dataset=str(data), base="someone/unlisted-model", declared="cc0-1.0")
    card.render_card(tmp_path / "c" / "out", facts)
    metadata = read_card_metadata(tmp_path / "c" / "out")
    assert metadata["license"] == "other" and metadata["license_name"] == "unknown"


def test_licence_ranking():
    from asclepius.training.licenses import License, stricter

    assert stricter(License("cc0-1.0"), License("llama3.1")).license == "llama3.1"
    assert stricter(License("cc-by-nc-sa-4.0"), License("apache-2.0")).license == "cc-by-nc-sa-4.0"
    bespoke = stricter(License("cc-by-nc-sa-4.0"), License("other", "llama-1-noncommercial"))
    assert (bespoke.license, bespoke.name) == ("other", "llama-1-noncommercial")
    assert stricter(License(None), License("other", "x")).card_fields() == {
        "license": "other",
        "license_name": "unknown+x",
    }


def test_the_usage_snippet_loads_the_hub_id_or_the_folder_never_its_bare_name(tmp_path):
    local = facts_for(tmp_path)
    card.render_card(tmp_path / "out", local)
    text = (tmp_path / "out" / "README.md").read_text()
    assert f'from_pretrained("{tmp_path / "out"}")' in text and 'from_pretrained("out")' not in text
    assert "no Hub id was given" in text

    training_args = SFTConfig(
        output_dir=str(tmp_path / "pushed"),
        hub_model_id="me/asclepius",
        use_cpu=True,
        bf16=False,
        report_to="none",
    )
    facts = card.gather_facts(stage="sft", script_args=TrainScriptArguments(dataset_name="x/y"),
                              training_args=training_args, model_args=ModelConfig(model_name_or_path="a/b"),
                              train_metrics={}, log_history=[], num_train_examples=1, learning_signal=None)  # fmt: skip
    card.render_card(tmp_path / "pushed", facts)
    text = (tmp_path / "pushed" / "README.md").read_text()
    assert 'from_pretrained("me/asclepius")' in text and "no Hub id was given" not in text
