"""Decontamination: evaluation notes that also occur in the training data are flagged."""

from __future__ import annotations

from pathlib import Path

from asclepius.data.loading import load_split
from asclepius.evaluation.decontamination import check_contamination

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "synthetic_notes.jsonl"

NOTE = ("Reason for admission: chest pain. HPI: 58 yo M with high blood pressure presented with two hours of "
        "crushing chest pain radiating to the left arm. Cath showed LAD occlusion and a stent was placed.")  # fmt: skip


def test_containment_and_patient_id_flag_notes():
    eval_rows = [
        ("copied", NOTE, 1),
        ("same-patient", "Unrelated short note about a rash.", 7),
        ("short-copy", "Knee pain.", 9),
    ]
    train_notes = [
        "Header text. " + NOTE + " Follow-up in clinic.",
        "Some other patient entirely.",
        "Knee pain.",
    ]
    report = check_contamination(eval_rows, train_notes, [7, 8], n=8, threshold=0.5)
    assert report.checks["copied"].containment == 1.0 and not report.checks["copied"].patient_overlap
    assert report.checks["same-patient"].patient_overlap
    # A short note equal to a training note is contaminated too (one n-gram of all its words).
    assert report.flagged == {"copied", "same-patient", "short-copy"}
    summary = report.summary()
    assert (summary["flagged"], summary["by_patient_id"], summary["by_ngram"]) == (3, 1, 2)


def test_partial_overlap_below_the_threshold_is_not_flagged():
    half = " ".join(NOTE.split()[:18])
    report = check_contamination([("e", NOTE, None)], [half], n=8, threshold=0.5)
    assert 0.0 < report.checks["e"].containment < 0.5 and not report.flagged
    assert check_contamination([("e", NOTE, None)], [half], n=8, threshold=0.2).flagged == {"e"}


def test_held_out_demo_patients_are_clean_against_the_train_side():
    test = load_split(str(DEMO), "test", test_ratio=0.2)
    train = load_split(str(DEMO), "train", test_ratio=0.2)
    # The train side of a plain file excludes the held-out patients (not every row of the file).
    assert len(train) + len(test) == 198 and not set(train["patient_id"]) & set(test["patient_id"])
    rows = [(str(i), note, pid) for i, (note, pid) in enumerate(zip(test["note"], test["patient_id"]))]
    assert not check_contamination(rows, train["note"], train["patient_id"]).flagged
    everything = load_split(str(DEMO), "train")
    assert len(check_contamination(rows, everything["note"], everything["patient_id"]).flagged) == len(rows)
