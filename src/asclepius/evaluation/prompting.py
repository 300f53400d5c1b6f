"""The prompt a model is asked in, by style.

The paper prompted each model in the format it was trained on: the Asclepius models in
the published template, the baselines in Alpaca, MedAlpaca or Vicuna chat format. The
``chat_template`` style wraps the published prompt in the model's own chat template,
for instruction-tuned models that expect one (Llama-3-Instruct, Mistral-Instruct...).
"""

from __future__ import annotations

from asclepius import prompts
from asclepius.evaluation.config import PROMPT_STYLE_CHOICES


def prompt_template(style: str) -> str:
    """The template text of a style (for the prompt hash); chat_template uses the published prompt."""
    if style == "chat_template":
        return prompts.INFERENCE_PROMPT
    if style not in prompts.PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {', '.join(PROMPT_STYLE_CHOICES)}")
    return prompts.PROMPT_STYLES[style]


def style_prompt_hash(style: str) -> str:
    return prompts.prompt_hash(prompt_template(style))


def render_prompt(style: str, note: str, question: str, tokenizer=None) -> str:
    """The full text the model continues, for one (note, question).

    Notes and questions are inserted as they are (no stripping): the published models
    were trained on the template filled with the dataset's fields verbatim.
    """
    if style == "chat_template":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "prompt style 'chat_template' needs a tokenizer with a chat template; this model has none "
                "(use --prompt_style asclepius)"
            )
        messages = [{"role": "user", "content": prompts.render_inference_prompt(note, question)}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return prompt_template(style).format(note=note, question=question)


def renders_special_tokens(style: str) -> bool:
    """Chat templates write BOS themselves; the plain styles rely on the tokenizer to add it."""
    return style == "chat_template"


def api_messages(style: str, note: str, question: str) -> list[dict[str, str]]:
    """The chat messages for an OpenAI-compatible endpoint: the styled prompt as the one user turn.

    The server applies the model's chat template, so ``chat_template`` and ``asclepius``
    send the same message.
    """
    text_style = "asclepius" if style == "chat_template" else style
    return [{"role": "user", "content": render_prompt(text_style, note, question)}]
