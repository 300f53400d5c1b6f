"""Question bootstrapping: task assignment, the growing pool, ROUGE-L near-duplicates, resume keys."""

from __future__ import annotations

from collections import Counter

import pytest
from datasets import Dataset

from asclepius.data.questions import QuestionBootstrap, QuestionPool, assign_tasks
from asclepius.engine import Result
from asclepius.tasks import SEED_QUESTIONS, TASKS


def test_assignment_is_seeded_balanced_and_covers_all_tasks():
    tasks = assign_tasks(20, seed=1)
    assert tasks == assign_tasks(20, seed=1)
    assert tasks != assign_tasks(20, seed=2)
    counts = Counter(tasks)
    assert set(counts) == set(TASKS)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_pool_near_duplicates_use_rouge_l_threshold():
    pool = QuestionPool(threshold=0.7)
    seed = SEED_QUESTIONS["Summarization"][0]  # "Summarize the hospital course in three sentences."
    assert pool.max_similarity("Summarization", seed) == pytest.approx(1.0)
    assert pool.max_similarity("Summarization", "Summarize the hospital course in two sentences.") > 0.7
    assert pool.max_similarity("Summarization", "Which drug caused the rash after surgery?") < 0.7
    # The pool is per task: a Summarization seed is new for Paraphrasing.
    assert pool.max_similarity("Paraphrasing", seed) < 0.7


def test_pool_grows_with_accepted_questions():
    pool = QuestionPool(threshold=0.7)
    question = "Which anticoagulant was bridged before the hip operation?"
    assert pool.max_similarity("Relation Extraction", question) < 0.7
    pool.add("Relation Extraction", question)
    assert pool.generated["Relation Extraction"] == [question]
    assert pool.max_similarity("Relation Extraction", question.replace("hip", "knee")) > 0.7


def fake_result(request, content, finish_reason="stop"):
    return Result(
        request=request,
        key="k",
        ok=True,
        content=content,
        finish_reason=finish_reason,
        usage={"prompt_tokens": 10, "completion_tokens": 5},
        error=None,
        attempts=1,
        from_ledger=False,
    )


def bootstrap_over(notes, **kwargs):
    rows = []
    dataset = Dataset.from_dict({"patient_id": list(range(len(notes))), "note": notes})
    return QuestionBootstrap(dataset, seed=0, teacher_model="teacher", sink=rows.append, **kwargs), rows


def test_prompts_show_seed_questions_and_questions_the_pool_gained_meanwhile():
    notes = [f"Note {i}: fever treated with drug number {i}." for i in range(16)]
    bootstrap, rows = bootstrap_over(notes)
    task = bootstrap.tasks[0]
    later = next(i for i in range(1, 16) if bootstrap.tasks[i] == task)

    first = bootstrap.request_for(0, 0, notes[0])
    prompt = first.messages[-1]["content"]
    assert sum(seed in prompt for seed in SEED_QUESTIONS[task]) == 3
    generated = "Which drug number did the note record for the fever?"
    bootstrap.on_result(fake_result(first, f"Instruction: {generated}"))
    assert rows[-1]["question"] == generated and rows[-1]["drop_reason"] is None

    # A request built after that result shows the generated question as an example.
    second = bootstrap.request_for(later, later, notes[later])
    assert generated in second.messages[-1]["content"]
    # The resume key names the note and task, not the examples, so a rerun finds the answer.
    assert second.resume_key == bootstrap.request_for(later, later, notes[later]).resume_key
    assert task in second.resume_key and first.resume_key != second.resume_key


def test_resume_key_changes_with_the_question_prompt(monkeypatch):
    """A changed prompt template asks again: an answer to the old prompt is never reused."""
    from asclepius import prompts

    notes = ["Note 0: fever treated with drug number 0."]
    bootstrap, _ = bootstrap_over(notes)
    before = bootstrap.request_for(0, 0, notes[0]).resume_key
    monkeypatch.setattr(prompts, "QUESTION_PROMPT_HASH", "another-template")
    assert bootstrap.request_for(0, 0, notes[0]).resume_key != before


def test_near_duplicates_and_self_references_are_dropped_and_counted():
    notes = [f"Note {i}." for i in range(8)]
    bootstrap, rows = bootstrap_over(notes)
    index = 0
    task = bootstrap.tasks[index]
    request = bootstrap.request_for(index, index, notes[index])
    bootstrap.on_result(fake_result(request, SEED_QUESTIONS[task][0]))
    bootstrap.on_result(fake_result(request, "As an AI language model, what should I ask?"))
    bootstrap.on_result(fake_result(request, '""'))
    assert [row["drop_reason"] for row in rows] == ["near_duplicate", "self_reference", "empty"]
    assert rows[0]["rouge_l_to_pool"] == pytest.approx(1.0)
    assert bootstrap.drops == {"near_duplicate": 1, "self_reference": 1, "empty": 1}
    assert bootstrap.pool.generated[task] == []


def test_truncated_questions_are_dropped_unless_kept():
    notes = ["Note."]
    bootstrap, rows = bootstrap_over(notes)
    request = bootstrap.request_for(0, 0, notes[0])
    bootstrap.on_result(fake_result(request, "Which drug was stopped and", finish_reason="length"))
    kept_bootstrap, kept_rows = bootstrap_over(notes, keep_truncated=True)
    kept_bootstrap.on_result(fake_result(kept_bootstrap.request_for(0, 0, notes[0]), "Which drug", "length"))
    assert rows[0]["drop_reason"] == "truncated" and kept_rows[0]["drop_reason"] is None
