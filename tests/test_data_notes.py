"""Note synthesis: the token budget within the teacher's context, and flags on generations."""

from __future__ import annotations

from asclepius import prompts
from asclepius.data.case_reports import CaseReport
from asclepius.data.notes import NoteSynthesis, note_token_budget
from asclepius.engine import Result
from asclepius.engine.request import estimate_prompt_tokens


def test_budget_is_context_minus_prompt_capped():
    messages = prompts.note_messages("A short case report.")
    prompt = estimate_prompt_tokens(messages)
    assert note_token_budget(messages, context_length=4096, cap=2048) == 2048
    assert note_token_budget(messages, context_length=prompt + 64 + 100, cap=2048) == 100
    assert note_token_budget(messages, context_length=prompt + 64 + 100, cap=16) == 16  # a small cap is fine
    assert (
        note_token_budget(messages, context_length=prompt + 64 + 10, cap=2048) is None
    )  # no room for a note


def result_for(request, content, finish_reason="stop", ok=True, error=None):
    return Result(
        request,
        "k",
        ok,
        content,
        finish_reason,
        {"prompt_tokens": 100, "completion_tokens": 50},
        error,
        1,
        False,
    )


def test_requests_rows_and_flags():
    rows = []
    synthesis = NoteSynthesis(
        teacher_model="t", context_length=1200, max_tokens_cap=512, keep_truncated=False, sink=rows.append
    )
    reports = [
        CaseReport(row=1, patient_id=10, patient_uid="10-1", text="Fever and cough."),
        CaseReport(row=2, patient_id=11, patient_uid="11-1", text="word " * 4000),  # longer than the context
        CaseReport(row=3, patient_id=12, patient_uid="12-1", text="Chest pain."),
    ]
    requests = list(synthesis.requests(reports))
    assert [r.metadata["report"].patient_id for r in requests] == [10, 12]
    assert all(r.max_tokens <= 512 for r in requests)
    synthesis.on_result(result_for(requests[0], "  DISCHARGE SUMMARY\nFever, treated.  "))
    synthesis.on_result(result_for(requests[1], "DISCHARGE SUMMARY\nChest", finish_reason="length"))
    by_id = {row["patient_id"]: row for row in rows}
    assert by_id[11]["drop_reason"] == "prompt_too_long" and by_id[11]["note"] == ""
    assert by_id[10]["drop_reason"] is None and by_id[10]["note"] == "DISCHARGE SUMMARY\nFever, treated."
    assert by_id[12]["drop_reason"] == "truncated" and by_id[12]["finish_reason"] == "length"
    assert by_id[10]["prompt_hash"] == prompts.NOTE_PROMPT_HASH and by_id[10]["source_row"] == 1
    assert synthesis.drops == {"prompt_too_long": 1, "truncated": 1}
    assert synthesis.tokens == {"prompt_tokens": 200, "completion_tokens": 100}


def test_filtered_generation_is_flagged():
    rows = []
    synthesis = NoteSynthesis(
        teacher_model="t", context_length=4096, max_tokens_cap=512, keep_truncated=True, sink=rows.append
    )
    [request] = synthesis.requests([CaseReport(row=1, patient_id=1, patient_uid="1", text="Rash.")])
    synthesis.on_result(
        result_for(request, None, finish_reason="content_filter", ok=False, error="content_filter")
    )
    assert rows[0]["drop_reason"] == "content_filter" and rows[0]["error"] == "content_filter"
