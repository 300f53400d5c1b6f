"""The bundled fictional demo data matches the public schemas the pipeline reads."""

import ast
import csv
import json
from collections import Counter
from pathlib import Path

from asclepius.tasks import TASKS

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
PMC_PATIENTS_COLUMNS = [
    "patient_id",
    "patient_uid",
    "PMID",
    "file_path",
    "title",
    "patient",
    "age",
    "gender",
    "relevant_articles",
    "similar_patients",
]
PUBLISHED_COLUMNS = ["patient_id", "note", "question", "answer", "task"]


def read_case_reports():
    with (DEMO / "case_reports.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def read_notes():
    with (DEMO / "synthetic_notes.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_case_reports_follow_the_pmc_patients_schema():
    columns, rows = read_case_reports()
    assert columns == PMC_PATIENTS_COLUMNS
    assert len(rows) >= 30
    assert len({row["patient_id"] for row in rows}) == len(rows)
    for row in rows:
        int(row["patient_id"]), int(row["PMID"])
        assert row["patient_uid"].split("-")[-1].isdigit()
        assert 150 <= len(row["patient"].split()) <= 400, row["patient_id"]
        assert row["gender"] in {"M", "F"}
        (value, unit), *_ = ast.literal_eval(row["age"])
        assert value > 0 and unit in {"year", "month", "week", "day", "hour"}
        assert isinstance(ast.literal_eval(row["relevant_articles"]), dict)
        assert isinstance(ast.literal_eval(row["similar_patients"]), dict)


def test_notes_follow_the_published_dataset_schema_with_all_tasks():
    rows = read_notes()
    assert len(rows) >= 160
    assert all(list(row) == PUBLISHED_COLUMNS for row in rows)
    counts = Counter(row["task"] for row in rows)
    assert set(counts) == set(TASKS)
    assert min(counts.values()) >= 15, counts
    assert all(row["answer"].strip() and not row["answer"].rstrip().endswith("?") for row in rows)


def test_every_case_report_has_one_note():
    _, reports = read_case_reports()
    notes = {}
    for row in read_notes():
        assert notes.setdefault(row["patient_id"], row["note"]) == row["note"]
    assert set(notes) == {int(row["patient_id"]) for row in reports}
    assert all("\n" in note and ":" in note for note in notes.values())  # headed EHR sections


def test_some_questions_are_honestly_unanswerable():
    markers = (
        "not mentioned",
        "not documented",
        "not stated",
        "cannot be determined",
        "does not",
        "not specified",
    )
    unanswerable = [row for row in read_notes() if any(m in row["answer"].lower() for m in markers)]
    assert len(unanswerable) >= 5
