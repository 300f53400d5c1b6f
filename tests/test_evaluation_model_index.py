"""Results go into a model card's model-index; other results and the card text are kept."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from asclepius.evaluation.model_index import update_model_index


def test_results_replace_our_previous_ones_and_keep_others(tmp_path):
    other = EvalResult(task_type="text-generation", dataset_type="medqa", dataset_name="MedQA",
                       metric_type="accuracy", metric_value=0.5)  # fmt: skip
    data = ModelCardData(license="cc-by-nc-sa-4.0", model_name="asclepius-tiny", eval_results=[other])
    ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n# Tiny\n\nBody text.\n").save(
        tmp_path / "README.md"
    )
    for mean in (2.5, 3.25):  # the second run replaces the first
        update_model_index(tmp_path, dataset_source=str(tmp_path), dataset_split="test", judge_model="gpt-4o",
                           mean_score=mean, ci95=[mean - 0.2, mean + 0.2], rouge_l=0.31)  # fmt: skip
    card = ModelCard.load(tmp_path / "README.md")
    results = {(r.dataset_type, r.metric_type): r for r in card.data.eval_results}
    assert set(results) == {("medqa", "accuracy"), ("local", "llm_judge_score"), ("local", "rougeL")}
    judge = results[("local", "llm_judge_score")]
    assert tmp_path.name in judge.dataset_name and "not on the Hub" in judge.dataset_name
    assert judge.metric_value == 3.25 and judge.dataset_split == "test"
    assert judge.metric_args == {"judge": "gpt-4o", "scale": "1-4", "ci95_low": 3.05, "ci95_high": 3.45}
    assert card.data.license == "cc-by-nc-sa-4.0" and "Body text." in card.text
    assert "model-index" in (tmp_path / "README.md").read_text()


def test_a_local_evaluation_set_is_never_named_as_a_hub_dataset():
    from asclepius.evaluation.model_index import dataset_reference

    assert dataset_reference("someone/eval-set") == (
        "someone/eval-set",
        "Asclepius evaluation (someone/eval-set)",
    )
    # Paths recorded at generation time, relative to a folder the judge may not run in.
    for source in ("outputs/instructions", "data/demo/synthetic_notes.jsonl", "./eval", "notes.parquet"):
        kind, name = dataset_reference(source)
        assert kind == "local" and Path(source).name in name and "not on the Hub" in name


def test_a_card_without_a_model_name_gets_one(tmp_path):
    folder = tmp_path / "my-sft-model"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Model\n")
    update_model_index(
        folder, dataset_source="someone/eval-set", dataset_split="test", judge_model="j", mean_score=3.0
    )
    card = ModelCard.load(folder / "README.md")
    assert card.data.model_name == "my-sft-model"
    [result] = card.data.eval_results
    assert (result.dataset_type, result.metric_value) == ("someone/eval-set", 3.0)


def test_which_cards_get_results(tmp_path):
    import pytest

    from asclepius.errors import InputError
    from asclepius.evaluation.model_index import model_cards_to_update

    with_card, without_card, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (with_card, without_card, other):
        folder.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (with_card / "README.md").write_text("---\nlicense: mit\ntags: [asclepius, continued-pretraining]\n---\n")
    for folder in (other, base):  # a card this project did not train (a base model's, the tiny model's)
        (folder / "README.md").write_text("---\nlicense: mit\ntags: [asclepius, tiny]\n---\n")
    candidates = {"a": {"model_path": str(with_card)}, "b": {"model_path": str(without_card)}, "api": {},
                  "base": {"model_path": str(base)}}  # fmt: skip
    # Automatic: the local folder whose card says it was trained here; an explicit CANDIDATE=DIR adds any.
    assert set(model_cards_to_update(candidates, [])) == {"a"}
    assert set(model_cards_to_update(candidates, [f"base={base}"])) == {"a", "base"}
    assert model_cards_to_update(candidates, [f"api={other}"], automatic=False) == {"api": (str(other), {})}
    with pytest.raises(InputError, match="name the candidate"):
        model_cards_to_update(candidates, [str(other)])  # a bare DIR no candidate was made from, among four
    with pytest.raises(InputError, match="no README.md"):
        model_cards_to_update(candidates, [f"b={without_card}"])
