"""The prompt a model is asked in, by style, and how an over-long note is cut to fit.

The paper prompted each model in the format it was trained on: the Asclepius models in
the published template, the baselines in their own formats (``prompts.PROMPT_STYLES``:
base LLaMA/PMC-LLaMA, Alpaca/ChatDoctor, MedAlpaca, Vicuna/Clinical Camel), byte for
byte. The ``chat_template`` style wraps the published prompt in the model's own chat
template, for instruction-tuned models that expect one (Llama-3-Instruct, ...).

A model trained by this project says in its card which ``prompt_format`` it learned
(:func:`model_prompt_format`); the ``asclepius`` style then asks it in those bytes
(:func:`style_for_model`), so a model trained with ``original`` is prompted as trained.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asclepius import prompts
from asclepius.engine.request import Request
from asclepius.errors import InputError
from asclepius.evaluation.config import PROMPT_STYLE_CHOICES
from asclepius.stage.files import WORK_DIR_NAME, read_card_metadata

logger = logging.getLogger(__name__)

# Where a trained model folder records its training prompt (card YAML key, or the stage's facts file).
PROMPT_FORMAT_KEY = "prompt_format"
# Styles whose prompt is a chat turn: an endpoint wraps it in the model's chat template
# (/v1/chat/completions). Every other style is text the model continues as it is (/v1/completions).
CHAT_STYLES = ("chat_template",)


def prompt_template(style: str) -> str:
    """The template text of a style (for the prompt hash); chat_template uses the published prompt."""
    if style == "chat_template":
        return prompts.INFERENCE_PROMPT
    if style not in prompts.PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {', '.join(PROMPT_STYLE_CHOICES)}")
    return prompts.PROMPT_STYLES[style]


def style_prompt_hash(style: str) -> str:
    """Version of a style: its template, and whether the fields are stripped (asclepius vs asclepius_paper)."""
    if style in prompts.FIELD_STRIPPED_STYLES:
        return prompts.prompt_hash(prompt_template(style), "fields stripped of leading/trailing newlines")
    return prompts.prompt_hash(prompt_template(style))


def render_prompt(style: str, note: str, question: str, tokenizer=None) -> str:
    """The full text the model continues, for one (note, question).

    ``asclepius`` fills the fields verbatim (our models are trained on them verbatim);
    the paper's baseline styles and ``asclepius_original`` strip leading and trailing
    newlines from each field first, as the original code did.
    """
    if style == "chat_template":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "prompt style 'chat_template' needs a tokenizer with a chat template; this model has none "
                "(use --prompt_style asclepius)"
            )
        messages = [{"role": "user", "content": prompts.render_inference_prompt(note, question)}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    template = prompt_template(style)
    if style in prompts.FIELD_STRIPPED_STYLES:
        note, question = note.strip("\n"), question.strip("\n")
    return template.format(note=note, question=question)


def renders_special_tokens(style: str) -> bool:
    """Chat templates write BOS themselves; the plain styles rely on the tokenizer to add it."""
    return style == "chat_template"


def api_request(style: str, note: str, question: str, **fields) -> Request:
    """The request to an OpenAI-compatible endpoint for one (note, question), in the style's exact bytes.

    A raw style (the paper's formats, ``asclepius``) is a completions request: the server
    tokenizes the prompt as given (BOS added by the tokenizer, as locally) and applies no
    chat template, so a served model sees what it sees under the transformers backend. The
    chat style sends the published prompt as the one user turn; the server applies the
    model's chat template, as ``chat_template`` does locally.
    """
    if style in CHAT_STYLES:
        return Request(
            [{"role": "user", "content": prompts.render_inference_prompt(note, question)}], **fields
        )
    return Request.raw(render_prompt(style, note, question), **fields)


# --- --prompt_style auto: the original evaluation's choice by model id ---------------------
AUTO_STYLE = "auto"
# The ids the original named one by one (as written there: decapoda-research/llama-7b-hf is gone
# from the Hub, and huggyllama/llama-7b, its usual replacement, is not on the list: under the
# original rule it gets the Asclepius prompt; the paper-eval recipe names llama_base instead).
AUTO_STYLE_OF_ID = {
    "decapoda-research/llama-7b-hf": "llama_base",
    "chaoyi-wu/PMC_LLAMA_7B": "llama_base",
    "chavinlo/alpaca-native": "alpaca",
    "zl111/ChatDoctor": "alpaca",
    "medalpaca/medalpaca-7b": "medalpaca",
}
# Substrings (case-sensitive, as the original tested them) that select the Vicuna chat format.
# "wanglab/ClinicalCamel-70B" contains neither, so the original rule gives it the Asclepius prompt.
AUTO_CHAT_MARKERS = ("vicuna", "clinical-camel")


def auto_style(model_id: str) -> str:
    """The style the original evaluation picked for ``model_id``: its named ids, the chat format for
    ids containing "vicuna" or "clinical-camel", and the Asclepius prompt (published bytes, fields
    stripped: ``asclepius_paper``) for everything else."""
    if model_id in AUTO_STYLE_OF_ID:
        return AUTO_STYLE_OF_ID[model_id]
    if any(marker in model_id for marker in AUTO_CHAT_MARKERS):
        return "vicuna"
    return "asclepius_paper"


# --- which bytes a trained model expects ------------------------------------------------
def model_prompt_format(model_path: str) -> str | None:
    """The ``prompt_format`` a local model folder's card says it was trained with (None: not recorded).

    Read from the card's YAML header, else from the training stage's facts file (an
    unfinished or merged folder). Hub ids are not looked up (nothing is downloaded at run time).
    """
    folder = Path(model_path)
    if not folder.is_dir():
        return None
    value = read_card_metadata(folder).get(PROMPT_FORMAT_KEY) if (folder / "README.md").exists() else None
    facts_file = folder / WORK_DIR_NAME / "card_facts.json"
    if value is None and facts_file.exists():
        value = json.loads(facts_file.read_text(encoding="utf-8")).get(PROMPT_FORMAT_KEY)
    if value is not None and value not in prompts.PROMPT_FORMATS:
        raise InputError(folder / "README.md", f"unknown prompt_format {value!r}", field=PROMPT_FORMAT_KEY)
    return value


def style_for_model(style: str, model_path: str) -> str:
    """``asclepius`` becomes the style of the prompt_format the model's card records; ``auto`` too, and
    for a model without one, the original evaluation's choice by id (:func:`auto_style`); others are kept."""
    if style not in ("asclepius", AUTO_STYLE):
        return style
    recorded = model_prompt_format(model_path)
    if recorded is None:
        if style == AUTO_STYLE:
            logger.info(
                "%s: prompt style %s (the original evaluation's rule)", model_path, auto_style(model_path)
            )
            return auto_style(model_path)
        return style
    resolved = prompts.STYLE_OF_PROMPT_FORMAT[recorded]
    if resolved != style:
        logger.info(
            "%s was trained with prompt_format %s: prompting it as %s", model_path, recorded, resolved
        )
    return resolved


# --- cutting an over-long note, never the instruction ------------------------------------
@dataclass
class TruncationLog:
    """How often prompts were too long, and how much note text was cut to fit."""

    prompts_cut: int = 0
    note_tokens_cut: int = 0
    max_note_tokens_cut: int = 0

    def record(self, tokens_cut: int) -> None:
        self.prompts_cut += 1
        self.note_tokens_cut += tokens_cut
        self.max_note_tokens_cut = max(self.max_note_tokens_cut, tokens_cut)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompts_cut": self.prompts_cut,
            "note_tokens_cut": self.note_tokens_cut,
            "max_note_tokens_cut": self.max_note_tokens_cut,
        }


def fit_note(
    note_units: list,
    join: Callable[[list], str],
    measure: Callable[[str], int],
    limit: int,
    *,
    what: str = "prompt",
) -> tuple[str, int]:
    """The longest prefix of the note whose prompt measures at most ``limit``; returns (note, units cut).

    ``note_units`` is the note split into units (token ids, or characters for an
    endpoint); ``join`` rebuilds note text from a prefix; ``measure(note_text)`` is the
    size of the full prompt with that note. The template, the question and the answer
    cue are always kept: only the end of the note is cut. A limit the prompt exceeds
    even with an empty note is a one-line InputError.
    """
    full = join(note_units)
    if measure(full) <= limit:
        return full, 0
    if measure(join([])) > limit:
        raise InputError(
            what,
            f"the prompt template and question alone exceed the {limit}-token prompt budget; "
            "raise --max_prompt_tokens (or lower --max_tokens) or use a model with a longer context",
        )
    low, high = 0, len(note_units)  # measure(join(units[:low])) <= limit < measure(join(units[:high]))
    while high - low > 1:
        middle = (low + high) // 2
        if measure(join(note_units[:middle])) <= limit:
            low = middle
        else:
            high = middle
    return join(note_units[:low]), len(note_units) - low
