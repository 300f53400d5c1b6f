"""Prompt styles render exactly as specified, for local models and for endpoints."""

from __future__ import annotations

import pytest

from asclepius import prompts
from asclepius.errors import InputError
from asclepius.evaluation.config import PROMPT_STYLE_CHOICES, GenerateArguments
from asclepius.evaluation.generation import LocalGenerator
from asclepius.evaluation.prompting import (
    api_request,
    auto_style,
    fit_note,
    model_prompt_format,
    render_prompt,
    style_for_model,
    style_prompt_hash,
)

NOTE, QUESTION = "Pt admitted w/ CP.\nTrop neg x2.", "What were the troponins?"


def test_asclepius_style_is_the_published_prompt_byte_for_byte():
    assert render_prompt("asclepius", NOTE, QUESTION) == prompts.render_inference_prompt(NOTE, QUESTION)
    assert render_prompt("asclepius", NOTE, QUESTION).endswith(
        f"[Instruction Begin]\n{QUESTION}\n[Instruction End] \n"
    )


PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)
# The same sample with newlines around both fields: the paper's styles strip them first.
PADDED_NOTE, PADDED_QUESTION = f"\n{NOTE}\n\n", f"{QUESTION}\n"


@pytest.mark.parametrize(
    "style, expected",
    [
        # Base LLaMA / PMC-LLaMA: the Asclepius prompt, a newline, "Response: ".
        ("llama_base", prompts.INFERENCE_PROMPT.format(note=NOTE, question=QUESTION) + "\nResponse: "),
        # Alpaca / ChatDoctor: no newline after "### Response:".
        ("alpaca", f"{PREAMBLE}\n\n### Instruction:\n{QUESTION}\n\n### Input:\n{NOTE}\n\n### Response:"),
        # MedAlpaca: the same sections, a newline after "### Response:".
        ("medalpaca", f"{PREAMBLE}\n\n### Instruction:\n{QUESTION}\n\n### Input:\n{NOTE}\n\n### Response:\n"),
        # Vicuna / Clinical Camel: leading newline, the note in markers, "ASSISTANT: " then a newline.
        (
            "vicuna",
            "\nA chat between a curious user and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the user's questions. USER: [The start of the Discharge "
            f"Summary]\n{NOTE}\n[The end of the Discharge Summary]\n{QUESTION} ASSISTANT: \n",
        ),
        # The Asclepius models as the paper's evaluation asked them: README bytes, fields stripped.
        ("asclepius_paper", prompts.INFERENCE_PROMPT.format(note=NOTE, question=QUESTION)),
        # A model trained with prompt_format original: no space after [Instruction End].
        (
            "asclepius_original",
            prompts.INFERENCE_PROMPT.format(note=NOTE, question=QUESTION).replace(
                "[Instruction End] \n", "[Instruction End]\n"
            ),
        ),
    ],
)
def test_paper_styles_are_byte_identical(style, expected):
    assert render_prompt(style, PADDED_NOTE, PADDED_QUESTION).encode() == expected.encode()
    request = api_request(style, PADDED_NOTE, PADDED_QUESTION)  # an endpoint gets the same bytes, raw
    assert request.prompt == expected and request.messages == []


def test_every_style_has_its_own_hash_and_unknown_styles_fail():
    styles = [s for s in PROMPT_STYLE_CHOICES if s not in ("chat_template", "auto")]  # auto: resolved first
    assert len({style_prompt_hash(s) for s in styles}) == len(styles)
    # asclepius fills the fields verbatim (as our training does); the paper's evaluation stripped them.
    assert (
        render_prompt("asclepius", PADDED_NOTE, QUESTION).count(f"\n{NOTE}\n\n\n[Discharge Summary End]") == 1
    )
    assert style_prompt_hash("asclepius") == prompts.INFERENCE_PROMPT_HASH
    with pytest.raises(ValueError, match="unknown prompt style"):
        render_prompt("llama", NOTE, QUESTION)


def _trained_folder(tmp_path, prompt_format):
    folder = tmp_path / f"model-{prompt_format}"
    folder.mkdir(exist_ok=True)
    (folder / "README.md").write_text(f"---\nprompt_format: {prompt_format}\n---\n# card\n")
    return str(folder)


def test_asclepius_style_follows_the_prompt_format_in_the_model_card(tmp_path):
    assert model_prompt_format(_trained_folder(tmp_path, "original")) == "original"
    assert style_for_model("asclepius", _trained_folder(tmp_path, "original")) == "asclepius_original"
    assert style_for_model("asclepius", _trained_folder(tmp_path, "readme")) == "asclepius"
    assert style_for_model("asclepius", "starmpcc/Asclepius-7B") == "asclepius"  # no local card: README bytes
    assert style_for_model("alpaca", _trained_folder(tmp_path, "original")) == "alpaca"  # explicit wins
    with pytest.raises(InputError, match="unknown prompt_format 'chatml'"):
        model_prompt_format(_trained_folder(tmp_path, "chatml"))


def test_a_long_note_is_cut_at_its_end_and_never_the_instruction():
    words = [f"w{i}" for i in range(100)]

    def measure(text):
        return len(render_prompt("alpaca", text, QUESTION).split())

    limit = measure("") + 10
    note, cut = fit_note(words, " ".join, measure, limit)
    assert note == " ".join(words[:10]) and cut == 90
    assert render_prompt("alpaca", note, QUESTION).endswith(f"### Input:\n{note}\n\n### Response:")
    assert fit_note(words, " ".join, measure, 10_000) == (" ".join(words), 0)
    with pytest.raises(InputError, match="template and question alone exceed the 5-token prompt budget"):
        fit_note(words, " ".join, measure, 5)


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


def test_endpoints_get_raw_styles_as_completions_and_the_chat_style_as_a_user_turn():
    raw = api_request("alpaca", NOTE, QUESTION)
    assert (raw.prompt, raw.messages) == (render_prompt("alpaca", NOTE, QUESTION), [])
    # The server applies the model's chat template: the one user turn is the published prompt.
    chat = api_request("chat_template", NOTE, QUESTION)
    assert chat.prompt is None
    assert chat.messages == [{"role": "user", "content": render_prompt("asclepius", NOTE, QUESTION)}]


@pytest.mark.parametrize(
    "model_id, style",
    [
        ("lmsys/vicuna-7b-v1.3", "vicuna"),
        ("eachadea/vicuna-13b-1.1", "vicuna"),
        ("clinical-camel", "vicuna"),
        # The 70B release's id contains neither marker: the original rule gives it the Asclepius prompt.
        ("wanglab/ClinicalCamel-70B", "asclepius_paper"),
        ("starmpcc/Asclepius-7B", "asclepius_paper"),
        ("chaoyi-wu/PMC_LLAMA_7B", "llama_base"),
        ("zl111/ChatDoctor", "alpaca"),
        ("chavinlo/alpaca-native", "alpaca"),
        ("medalpaca/medalpaca-7b", "medalpaca"),
        ("huggyllama/llama-7b", "asclepius_paper"),  # not on the original's list
    ],
)
def test_auto_style_follows_the_original_rule(model_id, style):
    assert auto_style(model_id) == style
    assert style_for_model("auto", model_id) == style  # a Hub id: no card is looked up


def test_auto_style_of_a_model_trained_here_is_its_training_bytes(tmp_path):
    model = tmp_path / "vicuna-style-name"
    model.mkdir()
    (model / "README.md").write_text("---\nprompt_format: original\n---\n# card\n", encoding="utf-8")
    assert style_for_model("auto", str(model)) == "asclepius_original"
    assert GenerateArguments(prompt_style="auto").prompt_style == "auto"
