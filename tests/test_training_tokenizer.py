"""The training tokenizer paths on a real pretrained tokenizer (SmolLM2's byte-level BPE and chat template)."""

from __future__ import annotations

import pytest

from asclepius.evaluation.prompting import render_prompt, renders_special_tokens
from asclepius.prompts import render_inference_prompt
from asclepius.training.formatting import tokenize_prompt_completion
from asclepius.training.tokenizer import choose_pad_token, load_tokenizer

NOTE = "Pt w/ CP. Trop I peaked 42 ng/mL.\nDischarged on aspirin 81 mg daily."
QUESTION = "What did the troponin peak at?"


@pytest.fixture(scope="module")
def tokenizer(smol_model_path):
    return load_tokenizer(str(smol_model_path))


def test_pad_is_distinct_from_eos_and_bos(smol_model_path, tokenizer):
    from transformers import AutoTokenizer

    shipped = AutoTokenizer.from_pretrained(smol_model_path)
    assert shipped.pad_token == shipped.eos_token == "<|im_end|>"  # what SmolLM2-Instruct ships
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, tokenizer.bos_token_id)
    assert choose_pad_token(shipped)[0] == "<|endoftext|>"


@pytest.mark.parametrize("answer", ["42 ng/mL.", " 42 ng/mL.", "\n42 ng/mL.\n"])
def test_eos_once_and_the_loss_mask_covers_exactly_the_answer(tokenizer, answer):
    prompt = render_inference_prompt(NOTE, QUESTION)
    row = tokenize_prompt_completion(tokenizer, prompt, answer)
    ids, mask = row["input_ids"], row["completion_mask"]
    prompt_ids = tokenizer(prompt)["input_ids"]
    # The prompt is exactly what inference feeds the model, and carries no loss.
    assert ids[: len(prompt_ids)] == prompt_ids
    assert mask == [0] * len(prompt_ids) + [1] * (len(ids) - len(prompt_ids))
    # The answer and one EOS, nothing of the prompt: decoding the trained tokens gives them back.
    trained = [token for token, bit in zip(ids, mask) if bit]
    assert tokenizer.decode(trained) == answer + tokenizer.eos_token
    assert ids.count(tokenizer.eos_token_id) == 1 and ids[-1] == tokenizer.eos_token_id


def test_the_bpe_merges_across_the_boundary_and_the_mask_still_holds(tokenizer):
    # The template ends in "] \n": alone " \n" is one token, before text it splits.
    prompt = render_inference_prompt(NOTE, QUESTION)
    answer = "Negative twice."
    prompt_ids = tokenizer(prompt)["input_ids"]
    joint = tokenizer(prompt + answer)["input_ids"]
    assert joint[: len(prompt_ids)] != prompt_ids, "no merge across the boundary: this test tests nothing"
    row = tokenize_prompt_completion(tokenizer, prompt, answer)
    assert row["input_ids"][: len(prompt_ids)] == prompt_ids
    assert sum(row["completion_mask"]) == len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1


def test_no_doubled_bos(tokenizer):
    ids = tokenizer(render_inference_prompt(NOTE, QUESTION))["input_ids"]
    assert ids.count(tokenizer.bos_token_id) <= 1
    chat = render_prompt("chat_template", NOTE, QUESTION, tokenizer)
    chat_ids = tokenizer(chat, add_special_tokens=not renders_special_tokens("chat_template"))["input_ids"]
    assert chat_ids[0] == tokenizer.bos_token_id != chat_ids[1]  # "<|im_start|>" once, then "system"


def test_chat_template_prompt_style(tokenizer):
    chat = render_prompt("chat_template", NOTE, QUESTION, tokenizer)
    assert chat.startswith("<|im_start|>system\n")
    assert render_inference_prompt(NOTE, QUESTION) in chat
    assert chat.endswith("<|im_start|>assistant\n")
    ids = tokenizer(chat, add_special_tokens=False)["input_ids"]
    # Special tokens of the template are single ids, not spelled out as text.
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    assert ids.count(tokenizer.eos_token_id) == 2  # the system and user turns are closed
