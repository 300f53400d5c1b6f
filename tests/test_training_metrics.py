"""Held-out perplexity and answer loss: token-weighted, batching-invariant, scored where training scores."""

from __future__ import annotations

import math

import pytest
import torch

from asclepius.prompts import render_inference_prompt
from asclepius.training.metrics import (
    answer_examples,
    answer_loss,
    mean_nll,
    note_examples,
    note_perplexity,
    read_metrics,
    update_metrics,
)
from asclepius.training.tokenizer import load_tokenizer

NOTES = [
    "Reason for Admission: chest pain.",
    "HPI: 70 yo F w/ fall, R hip fx. ORIF done. PT/OT. Discharged to rehab day 5 on apixaban.",
    "Pt w/ DKA, pH 7.1, insulin gtt, AG closed in 18 hrs.",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return load_tokenizer(str(tiny_model_path))


@pytest.fixture(scope="module")
def model(tiny_model_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()


def test_mean_nll_matches_the_model_loss_on_one_sequence(model, tokenizer):
    (example,) = note_examples(tokenizer, NOTES[:1])
    ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=ids, labels=ids).loss.item()
    nll, count = mean_nll(model, [example], pad_token_id=tokenizer.pad_token_id)
    assert count == len(example["input_ids"]) - 1
    assert nll == pytest.approx(expected, rel=1e-5)


def test_padding_and_batching_do_not_change_the_result(model, tokenizer):
    examples = note_examples(tokenizer, NOTES)
    one_by_one = [mean_nll(model, [e], pad_token_id=tokenizer.pad_token_id) for e in examples]
    token_weighted = sum(nll * count for nll, count in one_by_one) / sum(count for _, count in one_by_one)
    batched, count = mean_nll(model, examples, pad_token_id=tokenizer.pad_token_id, max_batch_tokens=10_000)
    assert count == sum(c for _, c in one_by_one)
    assert batched == pytest.approx(token_weighted, rel=1e-4)
    assert note_perplexity(model, tokenizer, NOTES) == pytest.approx(math.exp(token_weighted), rel=1e-4)


def test_answer_examples_score_only_the_answer_and_eos(tokenizer):
    (example,) = answer_examples(tokenizer, [NOTES[1]], ["Where did she go?"], ["To rehab."])
    prompt_ids = tokenizer(render_inference_prompt(NOTES[1], "Where did she go?"))["input_ids"]
    scored = [label for label in example["labels"] if label != -100]
    assert example["labels"][: len(prompt_ids)] == [-100] * len(prompt_ids)
    assert tokenizer.decode(scored[:-1]) == "To rehab." and scored[-1] == tokenizer.eos_token_id


def test_rows_cut_before_their_answer_are_skipped(model, tokenizer):
    prompt_length = len(tokenizer(render_inference_prompt(NOTES[1], "Q?"))["input_ids"])
    assert answer_examples(tokenizer, [NOTES[1]], ["Q?"], ["A."], max_length=prompt_length) == []
    with pytest.raises(ValueError, match="nothing to score"):
        answer_loss(model, tokenizer, [NOTES[1]], ["Q?"], ["A."], max_length=prompt_length)


def test_a_model_trained_on_an_answer_scores_it_better(tiny_model_path, tokenizer):
    """The metric moves the right way: a few steps on one row lower that row's answer loss."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    rows = ([NOTES[2]], ["What was the diagnosis?"], ["Diabetic ketoacidosis."])
    before = answer_loss(model, tokenizer, *rows)
    (example,) = answer_examples(tokenizer, *rows)
    ids, labels = torch.tensor([example["input_ids"]]), torch.tensor([example["labels"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(5):
        optimizer.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
    assert answer_loss(model, tokenizer, *rows) < before - 0.5


def test_metrics_file_merges_updates(tmp_path):
    update_metrics(tmp_path, {"a": 1, "b": 2})
    assert update_metrics(tmp_path, {"b": 3}) == {"a": 1, "b": 3}
    assert read_metrics(tmp_path) == {"a": 1, "b": 3}
    assert (tmp_path / ".asclepius" / "metrics.json").exists()
