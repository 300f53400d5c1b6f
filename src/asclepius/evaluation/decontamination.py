"""Evaluation notes that the model may have seen in training.

Two checks, before any judge call is paid for:

- the same ``patient_id`` in the training data (the published dataset's id is the
  PMC-Patients id, so this catches a patient split the wrong way);
- word n-gram containment: the share of an evaluation note's n-grams (13 by default, as
  in the usual LLM decontamination practice) that occur anywhere in the training notes.
  Containment rather than Jaccard, because a note pasted into a longer training note (or
  trimmed from one) is contaminated even though the two texts differ in length.

Only the evaluation notes' n-grams are held in memory; training notes are streamed, so
a 158k-row training set is checked in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """Word n-grams; a text shorter than n is one n-gram of all its words (so it still counts)."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class NoteCheck:
    containment: float  # share of the note's n-grams found in the training notes
    patient_overlap: bool
    contaminated: bool


@dataclass
class DecontaminationReport:
    n: int
    threshold: float
    checks: dict[str, NoteCheck] = field(default_factory=dict)  # item key -> check

    @property
    def flagged(self) -> set[str]:
        return {key for key, check in self.checks.items() if check.contaminated}

    def summary(self) -> dict[str, Any]:
        checks = list(self.checks.values())
        return {
            "ngram": self.n,
            "threshold": self.threshold,
            "items_checked": len(checks),
            "flagged": sum(c.contaminated for c in checks),
            "by_patient_id": sum(c.patient_overlap for c in checks),
            "by_ngram": sum(c.containment >= self.threshold for c in checks),
            "max_containment": round(max((c.containment for c in checks), default=0.0), 4),
        }


def check_contamination(
    eval_rows: Iterable[tuple[str, str, Any]],
    train_notes: Iterable[str],
    train_patient_ids: Iterable[Any] = (),
    *,
    n: int = 13,
    threshold: float = 0.5,
) -> DecontaminationReport:
    """Check ``(item_key, note, patient_id)`` rows against the training notes and patient ids."""
    eval_rows = list(eval_rows)
    note_grams: dict[str, set[tuple[str, ...]]] = {}
    for _, note, _ in eval_rows:
        if note not in note_grams:
            note_grams[note] = ngrams(words(note), n)
    wanted = set().union(*note_grams.values()) if note_grams else set()
    seen: set[tuple[str, ...]] = set()
    seen_notes: set[int] = set()
    for note in train_notes:
        if not note:
            continue
        fingerprint = hash(note)
        if fingerprint in seen_notes:  # instruction datasets repeat each note per question
            continue
        seen_notes.add(fingerprint)
        seen.update(ngrams(words(note), n) & wanted)
    train_ids = {str(pid) for pid in train_patient_ids if pid is not None}
    report = DecontaminationReport(n=n, threshold=threshold)
    for key, note, patient_id in eval_rows:
        grams = note_grams[note]
        containment = len(grams & seen) / len(grams) if grams else 0.0
        overlap = patient_id is not None and str(patient_id) in train_ids
        report.checks[key] = NoteCheck(
            containment=containment, patient_overlap=overlap, contaminated=overlap or containment >= threshold
        )
    return report
