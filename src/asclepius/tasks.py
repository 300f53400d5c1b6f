"""The eight clinical NLP tasks of the instruction set and their seed questions.

The task labels are the exact strings of the published dataset's ``task`` column.
Seed questions were written for this project; each task's pool starts from them and
grows with the questions the teacher generates.
"""

from __future__ import annotations

TASKS: tuple[str, ...] = (
    "Named Entity Recognition",
    "Abbreviation Expansion",
    "Relation Extraction",
    "Temporal Information Extraction",
    "Coreference Resolution",
    "Paraphrasing",
    "Summarization",
    "Question Answering",
)

SEED_QUESTIONS: dict[str, tuple[str, ...]] = {
    "Named Entity Recognition": (
        "List every medication named in the discharge summary together with its dose.",
        "Which diagnoses are recorded for this patient during the admission?",
        "Pick out all the imaging studies and laboratory tests mentioned in the note.",
        "What procedures did the patient undergo while in hospital?",
        "Identify the symptoms the patient reported when first seen.",
    ),
    "Abbreviation Expansion": (
        "Spell out every abbreviation used in the hospital course section.",
        "What does the abbreviation in the discharge medication list stand for?",
        "Expand the abbreviations found in the assessment of this note.",
        "Which abbreviations describe the patient's past medical history, and what do they mean?",
        "Write the full form of each lab test abbreviation in the summary.",
    ),
    "Relation Extraction": (
        "Which medication was started to treat which condition?",
        "What finding led the team to order the main imaging study?",
        "Link each abnormal lab result to the diagnosis it supported.",
        "Which complication followed which procedure during this stay?",
        "What was the relationship between the patient's symptoms and the final diagnosis?",
    ),
    "Temporal Information Extraction": (
        "On which hospital day was the main procedure performed?",
        "How long after admission did the patient's condition improve?",
        "Put the key events of the hospital stay in chronological order.",
        "When was the current medication regimen started relative to discharge?",
        "How many days did the patient spend in the hospital?",
    ),
    "Coreference Resolution": (
        "In the hospital course, what does the phrase 'the lesion' refer to?",
        "Who does 'she' refer to in the follow-up section?",
        "Which medication is meant by 'this agent' in the note?",
        "What does 'the procedure' refer to in the discharge instructions?",
        "Identify every expression in the note that refers to the patient's main diagnosis.",
    ),
    "Paraphrasing": (
        "Rewrite the discharge diagnosis in plain language a patient can understand.",
        "Restate the hospital course in simpler words.",
        "Explain the discharge instructions to the patient's family without medical jargon.",
        "Paraphrase the sentence describing the imaging result.",
        "Put the reason for admission into everyday language.",
    ),
    "Summarization": (
        "Summarize the hospital course in three sentences.",
        "Give a one-line summary of why the patient was admitted and how it ended.",
        "Summarize the key findings a follow-up physician needs to know.",
        "Write a short summary of the treatment the patient received.",
        "Condense the discharge summary into a brief handover note.",
    ),
    "Question Answering": (
        "What was the patient's condition at discharge?",
        "Was the patient's infection confirmed by culture?",
        "What follow-up was arranged after discharge?",
        "Why was the medication changed during the stay?",
        "Did the patient have any allergies recorded?",
    ),
}

# Phrases that show a generated field talks about the model itself (the paper's filter).
SELF_REFERENCE_PHRASES: tuple[str, ...] = (
    "ai language",
    "language model",
    "ai model",
    "the model",
    "as an ai",
    "ner model",
    "summarization model",
    "paraphrasing model",
    "qa model",
    "coreference resolution model",
    "relation extraction model",
    "abbreviation expansion model",
    "temporal information extraction model",
)


def validate_task(task: str, *, where: str = "") -> str:
    """Return ``task`` if it is one of the eight labels, else raise a one-line ValueError."""
    if task not in SEED_QUESTIONS:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}unknown task label {task!r}; expected one of: {', '.join(TASKS)}")
    return task
