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


# The original's phrases, verbatim from REFERENCE.md; each one must be caught in each field.
ORIGINAL_PHRASES = ["AI language", "language model", "clinical language", "recognition model", "extraction model",
                    "the model", "summarization model", "clinical model", "generation model", "AI model", "NER model"]  # fmt: skip


def test_exactly_the_original_eleven_phrases_in_note_question_and_answer():
    assert [p.lower() for p in ORIGINAL_PHRASES] == list(filters.ORIGINAL_SELF_REFERENCE_PHRASES)
    for phrase in ORIGINAL_PHRASES:
        for field in range(3):
            texts = ["Aspirin was continued.", "What drug?", "Aspirin."]
            texts[field] = f"Per {phrase.upper()} output: aspirin."
            assert filters.answer_problem(*texts) == filters.SELF_REFERENCE, (phrase, field)
            assert filters.answer_problem(*texts, extra_phrases=()) == filters.SELF_REFERENCE


def test_our_extra_phrases_are_a_separate_configurable_reason():
    row = ("Aspirin was continued.", "What drug?", "As an AI, I think it is aspirin.")
    assert not filters.mentions_model(*row)  # not one of the original's phrases
    assert filters.answer_problem(*row) == filters.SELF_REFERENCE_EXTRA
    assert filters.answer_problem(*row, extra_phrases=()) is None  # the original keeps this row
    assert filters.answer_problem(*row, extra_phrases=["i think"]) == filters.SELF_REFERENCE_EXTRA
    assert not set(filters.EXTRA_SELF_REFERENCE_PHRASES) & set(filters.ORIGINAL_SELF_REFERENCE_PHRASES)


def test_the_extra_phrases_are_a_data_recipe_option():
    from asclepius.data.config import AnswersArguments

    assert AnswersArguments().self_reference_extra == list(filters.EXTRA_SELF_REFERENCE_PHRASES)
    assert AnswersArguments(self_reference_extra=[]).self_reference_extra == []
    assert (
        AnswersArguments(self_reference_extra=["none"]).self_reference_extra == []
    )  # --self_reference_extra none


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


def test_the_answer_stage_counts_original_and_extra_self_reference_apart():
    from datasets import Dataset

    from asclepius.data.answers import AnswerGeneration
    from asclepius.engine.request import Request, Result

    questions = Dataset.from_dict({"patient_id": [1, 2, 3], "note": ["Aspirin given."] * 3,
                                   "question": ["What drug?"] * 3, "task": ["Question Answering"] * 3})  # fmt: skip
    replies = ["As an AI language model, aspirin.", "As an AI, I would say aspirin.", "Aspirin."]

    def drops(**options):
        stage = AnswerGeneration(questions, teacher_model="t", **options)
        for request, reply in zip(stage.requests(), replies):
            stage.on_result(Result(request=request, key="k", ok=True, content=reply, finish_reason="stop",
                                   usage={}, error=None, attempts=1, from_ledger=False))  # fmt: skip
        return dict(stage.drops)

    assert isinstance(next(AnswerGeneration(questions, teacher_model="t").requests()), Request)
    assert drops() == {filters.SELF_REFERENCE: 1, filters.SELF_REFERENCE_EXTRA: 1}
    # Without our extras, the row counts are the original's: only its phrases drop a row.
    assert drops(extra_self_reference_phrases=()) == {filters.SELF_REFERENCE: 1}
