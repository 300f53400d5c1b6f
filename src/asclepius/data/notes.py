"""Stage 1: case reports -> synthetic discharge summaries.

One request per case report with the note-synthesis prompt. As in the paper, a note may
use the whole context the prompt leaves: ``max_tokens`` = context length minus the
estimated prompt tokens (minus a safety margin), capped by the recipe's ``max_tokens``.
Generations that were cut short or filtered are kept, flagged, in the ``annotated``
config and left out of the default one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from datasets import Dataset, Features, Value

from asclepius import prompts
from asclepius.data import filters
from asclepius.data.case_reports import CaseReport
from asclepius.data.config import CONTEXT_SAFETY_MARGIN, MIN_NOTE_TOKENS
from asclepius.data.stage import PROVENANCE_FEATURES, SOURCE_ROW, kept_rows, provenance
from asclepius.engine import Request, Result
from asclepius.engine.request import estimate_prompt_tokens

NOTE_COLUMNS = [
    "patient_id",
    "patient_uid",
    "case_report",
    "note",
    "teacher_model",
    "prompt_hash",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
]
NOTE_FEATURES = Features(
    {
        "patient_id": Value("int64"),
        "patient_uid": Value("string"),
        "case_report": Value("string"),
        "note": Value("string"),
        "drop_reason": Value("string"),
        **PROVENANCE_FEATURES,
        SOURCE_ROW: Value("int64"),
    }
)


def note_token_budget(messages: list[dict[str, str]], *, context_length: int, cap: int) -> int | None:
    """Completion tokens a note may use: what the context leaves after the prompt, at most ``cap``.

    None when the case report leaves too little room for any note (it is skipped, counted).
    """
    room = context_length - estimate_prompt_tokens(messages) - CONTEXT_SAFETY_MARGIN
    if room < MIN_NOTE_TOKENS:
        return None
    return min(cap, room)


class NoteSynthesis:
    """Turns case reports into requests, and results into rows (with drop reasons counted)."""

    def __init__(
        self,
        *,
        teacher_model: str,
        context_length: int,
        max_tokens_cap: int,
        keep_truncated: bool,
        sink: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.teacher_model = teacher_model
        self.context_length = context_length
        self.max_tokens_cap = max_tokens_cap
        self.keep_truncated = keep_truncated
        self.sink = sink  # None in a dry run: nothing is written
        self.drops: Counter = Counter()
        self.tokens = Counter()

    def requests(self, reports: Iterable[CaseReport]) -> Iterator[Request]:
        for report in reports:
            messages = prompts.note_messages(report.text)
            budget = note_token_budget(messages, context_length=self.context_length, cap=self.max_tokens_cap)
            if budget is None:
                self._add(report, note="", result=None, drop_reason=filters.PROMPT_TOO_LONG)
                continue
            yield Request(messages=messages, metadata={"report": report}, max_tokens=budget)

    def on_result(self, result: Result) -> None:
        report: CaseReport = result.request.metadata["report"]
        problem = filters.generation_problem(
            result.ok, result.content, result.finish_reason, result.error, keep_truncated=self.keep_truncated
        )
        self._add(report, note=(result.content or "").strip(), result=result, drop_reason=problem)

    def _add(self, report: CaseReport, *, note: str, result: Result | None, drop_reason: str | None) -> None:
        usage = result.usage if result is not None else {}
        if drop_reason:
            self.drops[drop_reason] += 1
        self.tokens.update({key: int(usage.get(key) or 0) for key in ("prompt_tokens", "completion_tokens")})
        if self.sink is None:
            return
        self.sink(
            {
                "patient_id": report.patient_id,
                "patient_uid": report.patient_uid,
                "case_report": report.text,
                "note": note,
                "drop_reason": drop_reason,
                **provenance(result, teacher_model=self.teacher_model, prompt_hash=prompts.NOTE_PROMPT_HASH),
                SOURCE_ROW: report.row,
            }
        )


def note_configs(rows: Dataset) -> dict[str, dict[str, Dataset]]:
    """``default``: usable notes with the published-style columns; ``annotated``: every row, flagged."""
    return {
        "default": {"train": kept_rows(rows).select_columns(NOTE_COLUMNS)},
        "annotated": {"train": rows},
    }
