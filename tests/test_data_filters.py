"""Filters on generated text: question cleaning, self-reference, answers, grounding flags."""

from __future__ import annotations

import pytest

from asclepius.data import filters


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("What was the discharge dose of metoprolol?", "What was the discharge dose of metoprolol?"),
        ('"What was the discharge dose of metoprolol?"', "What was the discharge dose of metoprolol?"),
        ("Instruction: Summarize the hospital course.", "Summarize the hospital course."),
        ("Here is a question: Which antibiotics were given?", "Which antibiotics were given?"),
        (
            "Sure! Here is a new instruction:\n1. \u201cList the imaging studies.\u201d",
            "List the imaging studies.",
        ),
        ("New instruction: - Expand 'CABG' in the note.", "Expand 'CABG' in the note."),
        ("Q: When was the stent placed?\nA: On day 2.", "When was the stent placed?"),
        ("2) What does 'it' refer to?\n\nThis tests coreference.", "What does 'it' refer to?"),
        ("   \n  ", ""),
        (None, ""),
    ],
)
def test_clean_question(raw, clean):
    assert filters.clean_question(raw) == clean


def test_self_reference_is_case_insensitive_over_all_fields():
    assert filters.mentions_model("note", "q", "As an AI Language Model I cannot")
    assert filters.mentions_model("The NER model should tag drugs", "q", "a")
    assert not filters.mentions_model("The patient improved.", "What improved?", "The patient.")


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("", filters.EMPTY),
        ("Could you clarify which admission?", filters.ANSWER_IS_QUESTION),
        ("As an AI language model, I cannot see the note.", filters.SELF_REFERENCE),
        ("Aspirin 81 mg daily.", None),
    ],
)
def test_answer_problem(answer, reason):
    assert (
        filters.answer_problem("Aspirin 81 mg daily was continued.", "What antiplatelet?", answer) == reason
    )


@pytest.mark.parametrize(
    "ok, content, finish, error, keep, reason",
    [
        (True, "text", "stop", None, False, None),
        (True, "text", "length", None, False, filters.TRUNCATED),
        (True, "text", "length", None, True, None),
        (False, "text", "length", "length", False, filters.TRUNCATED),
        (False, None, "content_filter", "content_filter", False, filters.CONTENT_FILTER),
        (False, None, None, "http 400: bad", False, filters.FAILED),
        (True, "  ", "stop", None, False, filters.EMPTY),
    ],
)
def test_generation_problem(ok, content, finish, error, keep, reason):
    assert filters.generation_problem(ok, content, finish, error, keep_truncated=keep) == reason


NOTE = (
    "Admitted 2151-07-16 with chest pain. Started aspirin 81 mg and metoprolol 25 mg BID. "
    "Troponin peaked at 12.4. Discharged on 07/20 with follow-up in 14 days."
)


def test_grounded_answer_has_no_flags():
    answer = (
        "Aspirin 81 mg and metoprolol 25 mg BID were started; troponin peaked at 12.4, follow-up in 14 days."
    )
    assert filters.ungrounded_values(answer, NOTE) == []


def test_numbers_doses_and_dates_absent_from_the_note_are_flagged():
    answer = (
        "Metoprolol 50 mg was given on 2151-07-18; troponin was 12.40 and potassium 3.9. She stayed 4 days."
    )
    flagged = filters.ungrounded_values(answer, NOTE)
    assert "50 mg" in flagged and "2151-07-18" in flagged and "3.9" in flagged
    assert "12.40" not in flagged  # the same number as 12.4
    assert "4" not in flagged  # single-digit counts are restated freely


def test_dose_with_the_wrong_unit_is_flagged():
    assert filters.ungrounded_values("Aspirin 81 mcg daily.", NOTE) == ["81 mcg"]


def test_thousands_separators_do_not_split_numbers():
    assert filters.ungrounded_values("LDH was 1,940 U/L.", "baseline LDH of 1,940 U/L") == []
    assert filters.ungrounded_values("LDH was 1,950 U/L.", "baseline LDH of 1,940 U/L") == ["1950"]


def test_list_markers_are_not_values():
    assert filters.ungrounded_values("1. aspirin\n2. metoprolol\n12. troponin", NOTE) == []
