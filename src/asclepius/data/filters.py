"""Cleaning and filtering of generated text: questions, answers, and their grounding.

Each check returns a short *reason* string (or None when the row passes); the stages
count rows per reason and show the counts in the dataset card, so what was dropped and
why is part of the data's provenance.
"""

from __future__ import annotations

import re

from asclepius.tasks import SELF_REFERENCE_PHRASES as OUR_SELF_REFERENCE_PHRASES

# --- drop reasons, as they appear in the cards ----------------------------------------
EMPTY = "empty"
TRUNCATED = "truncated"
CONTENT_FILTER = "content_filter"
FAILED = "failed"
PROMPT_TOO_LONG = "prompt_too_long"
SELF_REFERENCE = "self_reference"  # one of the original's 11 phrases
SELF_REFERENCE_EXTRA = "self_reference_extra"  # one of our extra phrases only (a separate count)
NEAR_DUPLICATE = "near_duplicate"
ANSWER_IS_QUESTION = "answer_is_question"


def generation_problem(
    ok: bool, content: str | None, finish_reason: str | None, error: str | None, *, keep_truncated: bool
) -> str | None:
    """Why an engine result cannot be used as it is: failed, filtered, truncated, or empty."""
    if finish_reason == "content_filter" or error == "content_filter":
        return CONTENT_FILTER
    if not ok and error != "length":
        return FAILED
    if (finish_reason == "length" or error == "length") and not keep_truncated:
        return TRUNCATED
    if not (content or "").strip():
        return EMPTY
    return None


# --- self-reference -------------------------------------------------------------------
# Exactly the original code's phrases, matched case-insensitively as substrings of the
# note, the question and the answer. Rows they catch are dropped as SELF_REFERENCE.
ORIGINAL_SELF_REFERENCE_PHRASES: tuple[str, ...] = (
    "ai language",
    "language model",
    "clinical language",
    "recognition model",
    "extraction model",
    "the model",
    "summarization model",
    "clinical model",
    "generation model",
    "ai model",
    "ner model",
)
# Our additions ("as an ai", "qa model", ...), configurable (--self_reference_extra) and
# counted apart as SELF_REFERENCE_EXTRA, so turning them off gives the original's row counts.
EXTRA_SELF_REFERENCE_PHRASES: tuple[str, ...] = tuple(
    phrase for phrase in OUR_SELF_REFERENCE_PHRASES if phrase not in ORIGINAL_SELF_REFERENCE_PHRASES
)


def _mentions(phrases: tuple[str, ...] | list[str], texts: tuple[str | None, ...]) -> bool:
    lowered = [(text or "").lower() for text in texts]
    return any(phrase.lower() in text for phrase in phrases for text in lowered)


def mentions_model(*texts: str | None) -> bool:
    """True if any text holds one of the original's phrases ("AI language model", "the NER model")."""
    return _mentions(ORIGINAL_SELF_REFERENCE_PHRASES, texts)


def self_reference_problem(
    *texts: str | None, extra_phrases: tuple[str, ...] | list[str] = EXTRA_SELF_REFERENCE_PHRASES
) -> str | None:
    """SELF_REFERENCE for an original phrase; else SELF_REFERENCE_EXTRA for one of ``extra_phrases``."""
    if mentions_model(*texts):
        return SELF_REFERENCE
    if extra_phrases and _mentions(extra_phrases, texts):
        return SELF_REFERENCE_EXTRA
    return None


# --- questions --------------------------------------------------------------------------
# Lead-ins a teacher puts before the question even when told not to.
_PREAMBLE = re.compile(
    r"^(?:sure|okay|ok|certainly|of course)?[,!.]?\s*"
    r"(?:here(?:'s| is| are)\s+(?:a|an|one|my|the)?\s*(?:new|brief|possible|sample)?\s*"
    r"(?:clinical\s+)?(?:question|instruction|task|query|prompt)s?\b[^:\n]*:"
    r"|(?:new\s+|brief\s+)?(?:instruction|question|task|query|prompt|q)\s*(?:\d+)?\s*[:\-]"
    r")\s*",
    re.IGNORECASE,
)
_NUMBERING = re.compile(r"^(?:\(?\d{1,2}[.)]|[-*\u2022#]+)\s+")
_ANSWER_LINE = re.compile(r"^(?:answer|response|a)\s*[:\-]", re.IGNORECASE)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def clean_question(text: str | None) -> str:
    """The bare question: preambles, numbering, quotes and any trailing answer removed.

    "Sure! Here is a new instruction:\\n1. \\"What was the dose of X?\\"" -> "What was the dose of X?"
    """
    lines = [line.strip() for line in (text or "").strip().splitlines()]
    kept: list[str] = []
    for line in lines:
        if not line:
            if kept:
                break  # the question is the first paragraph; what follows is chatter
            continue
        if _ANSWER_LINE.match(line) and kept:
            break
        line = _strip_decorations(line)
        if line:
            kept.append(line)
    return " ".join(kept).strip()


def _strip_decorations(line: str) -> str:
    previous = None
    while line != previous:
        previous = line
        line = _PREAMBLE.sub("", line, count=1).strip()
        line = _NUMBERING.sub("", line, count=1).strip()
        line = line.strip("*_").strip()
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1].strip()
    return line


# --- answers ------------------------------------------------------------------------------
def answer_problem(
    note: str,
    question: str,
    answer: str,
    extra_phrases: tuple[str, ...] | list[str] = EXTRA_SELF_REFERENCE_PHRASES,
) -> str | None:
    """The paper's filters on a (note, question, answer) row, then our extra phrases (pass () to match the original)."""
    if not answer.strip():
        return EMPTY
    problem = self_reference_problem(note, question, answer, extra_phrases=extra_phrases)
    if problem:
        return problem
    if answer.rstrip().endswith("?"):
        return ANSWER_IS_QUESTION
    return None


# --- grounding --------------------------------------------------------------------------
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    r"\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|"
    rf"{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS}(?:\s+\d{{4}})?)\b",
    re.IGNORECASE,
)
_UNITS = (
    r"mg|mcg|µg|ug|g|kg|ml|mL|l|L|units?|iu|IU|meq|mEq|mmol|mmhg|mmHg|%|cm|mm|bpm|"
    r"mg/dl|mg/dL|mg/kg|g/dl|g/dL|ng/ml|ng/mL|mmol/l|mmol/L|mcg/min|mg/day|puffs?|tabs?|tablets?|caps?|capsules?"
)
_DOSE = re.compile(rf"(?<![\w.])(\d+(?:[.,]\d+)?)\s?({_UNITS})(?![\w])", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).replace(",", "")


def _numbers_in(text: str) -> set[str]:
    """Numbers of a text in canonical form ('10.0' and '10' are the same number)."""
    found = set()
    for match in _NUMBER.finditer(text.replace(",", "")):
        value = float(match.group())
        found.add(f"{value:g}")
    return found


def ungrounded_values(answer: str, note: str) -> list[str]:
    """Dates, doses and numbers written in ``answer`` that the note does not contain.

    A flag, not a filter: an answer may rightly compute a value (a length of stay) that
    no sentence of the note spells out. Single-digit counts ("2 medications") are left
    alone because answers restate them freely; list markers ("1.") never count.
    """
    note_text = _normalize(note)
    note_numbers = _numbers_in(note)
    flagged: list[str] = []
    seen: set[str] = set()

    def flag(value: str) -> None:
        if value not in seen:
            seen.add(value)
            flagged.append(value)

    answer_body = re.sub(r"(?m)^\s*\d{1,2}[.)]\s+", "", answer)  # list markers are not values
    answer_body = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", answer_body)  # 1,940 is one number
    consumed: list[tuple[int, int]] = []
    for match in _DATE.finditer(answer_body):
        consumed.append(match.span())
        if _normalize(match.group()) not in note_text:
            flag(match.group())
    for match in _DOSE.finditer(answer_body):
        if any(start <= match.start() < end for start, end in consumed):
            continue
        consumed.append(match.span())
        number, unit = match.group(1).replace(",", ""), match.group(2).lower()
        written = re.compile(rf"(?<![\d.]){re.escape(number)}\s?{re.escape(unit)}(?![a-z])")
        if not written.search(note_text):
            flag(match.group())
    for match in _NUMBER.finditer(answer_body):
        if any(start <= match.start() < end for start, end in consumed):
            continue
        value = float(match.group())
        if value.is_integer() and abs(value) < 10:
            continue
        if f"{value:g}" not in note_numbers:
            flag(match.group())
    return flagged
