"""Prompt styles render exactly as specified, for local models and for endpoints."""

from __future__ import annotations

import pytest

from asclepius import prompts
from asclepius.evaluation.generation import LocalGenerator
from asclepius.evaluation.prompting import api_messages, render_prompt, style_prompt_hash

NOTE, QUESTION = "Pt admitted w/ CP.\nTrop neg x2.", "What were the troponins?"


def test_asclepius_style_is_the_published_prompt_byte_for_byte():
    assert render_prompt("asclepius", NOTE, QUESTION) == prompts.render_inference_prompt(NOTE, QUESTION)
    assert render_prompt("asclepius", NOTE, QUESTION).endswith(
        f"[Instruction Begin]\n{QUESTION}\n[Instruction End] \n"
    )


def test_baseline_styles_render_their_own_formats():
    assert (
        render_prompt("medalpaca", NOTE, QUESTION) == f"Context: {NOTE}\n\nQuestion: {QUESTION}\n\nAnswer: "
    )
    alpaca = render_prompt("alpaca", NOTE, QUESTION)
    assert alpaca.startswith("Below is an instruction that describes a task, paired with an input")
    assert alpaca.endswith(f"### Instruction:\n{QUESTION}\n\n### Input:\n{NOTE}\n\n### Response:\n")
    vicuna = render_prompt("vicuna", NOTE, QUESTION)
    assert vicuna.startswith("A chat between a curious user and an artificial intelligence assistant.")
    assert vicuna.endswith(f"USER: {NOTE}\n\n{QUESTION} ASSISTANT:")
    hashes = {style_prompt_hash(s) for s in ("asclepius", "alpaca", "medalpaca", "vicuna")}
    assert len(hashes) == 4
    with pytest.raises(ValueError, match="unknown prompt style"):
        render_prompt("llama", NOTE, QUESTION)


def test_chat_template_style_wraps_the_published_prompt_in_the_model_template(tiny_model_path):
    generator = LocalGenerator(str(tiny_model_path), prompt_style="chat_template", device="cpu")
    text = generator.prompt(NOTE, QUESTION)
    # The tiny model's template: BOS, role-tagged turns, then the assistant tag.
    assert text == "<s><|user|>\n" + prompts.render_inference_prompt(NOTE, QUESTION) + "\n<|assistant|>\n"
    ids = generator.encode(NOTE, QUESTION)
    # The template writes BOS itself: the tokenizer must not add a second one.
    assert ids[0] == generator.tokenizer.bos_token_id and ids.count(generator.tokenizer.bos_token_id) == 1
    plain = LocalGenerator(str(tiny_model_path), prompt_style="asclepius", device="cpu").encode(
        NOTE, QUESTION
    )
    assert plain[0] == generator.tokenizer.bos_token_id and plain.count(generator.tokenizer.bos_token_id) == 1


def test_chat_template_style_needs_a_template():
    class NoTemplate:
        chat_template = None

    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        render_prompt("chat_template", NOTE, QUESTION, NoTemplate())


def test_endpoints_get_the_styled_prompt_as_one_user_message():
    assert api_messages("alpaca", NOTE, QUESTION) == [
        {"role": "user", "content": render_prompt("alpaca", NOTE, QUESTION)}
    ]
    # The server applies the model's chat template: the message is the published prompt.
    assert api_messages("chat_template", NOTE, QUESTION) == api_messages("asclepius", NOTE, QUESTION)
