"""Reading case reports: chunked CSV, streamed JSON, datasets; one-line errors; reproducible subsets."""

from __future__ import annotations

import csv
import json

import pytest

from asclepius.data import readers
from asclepius.data.case_reports import iter_case_reports, scan_case_reports
from asclepius.errors import InputError

PMC_COLUMNS = [
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


def pmc_record(i: int, text: str | None = None) -> dict:
    return {
        "patient_id": i,
        "patient_uid": f"{7000 + i}-1",
        "PMID": 7000 + i,
        "file_path": f"comm/PMC{7000 + i}.xml",
        "title": f"Case {i}",
        "patient": text
        if text is not None
        else f"A {30 + i}-year-old man had fever,\nthen a rash on day {i}.",
        "age": "[[40.0, 'year']]",
        "gender": "M",
        "relevant_articles": "{}",
        "similar_patients": "{}",
    }


def write_csv(path, records, columns=PMC_COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in records:
            writer.writerow({column: record.get(column, "") for column in columns})
    return path


def test_csv_is_read_in_chunks_with_multiline_text(tmp_path):
    path = write_csv(tmp_path / "PMC-Patients.csv", [pmc_record(i) for i in range(1, 8)])
    rows = list(readers.iter_csv(path, chunk_size=3))
    assert [row for row, _ in rows] == list(range(1, 8))
    assert rows[4][1]["patient"] == "A 35-year-old man had fever,\nthen a rash on day 5."
    assert rows[0][1]["patient_id"] == "1"  # kept as written; ids are checked by the caller


def test_json_list_is_decoded_incrementally(tmp_path, monkeypatch):
    # A read size far below one record forces the decoder to refill mid-record many times.
    monkeypatch.setattr(readers, "_JSON_READ_CHARS", 7)
    records = [pmc_record(i) for i in range(1, 6)]
    path = tmp_path / "PMC-Patients.json"
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    rows = list(readers.iter_json(path))
    assert [record for _, record in rows] == records
    assert [row for row, _ in rows] == [1, 2, 3, 4, 5]


def test_json_lines_in_a_json_file_are_read_as_records(tmp_path):
    path = tmp_path / "cases.json"
    path.write_text("\n".join(json.dumps(pmc_record(i)) for i in (1, 2, 3)) + "\n", encoding="utf-8")
    assert [record["patient_id"] for _, record in readers.iter_json(path)] == [1, 2, 3]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"patient": ["a", "b"], "patient_id": [1, 2]}', "not JSON records"),
        ('[{"patient": "a", "patient_id": 1}, ["not", "a", "record"]]', "row 2: not a record"),
        ('[{"patient": "a", "patient_id": 1}, {"patient": ', "row 2: invalid JSON"),
        ('"just a string"', "not JSON records"),
    ],
)
def test_json_that_is_not_records_is_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as error:
        list(readers.iter_json(path))
    assert message in str(error.value)
    assert str(error.value).startswith(str(path))
    assert "\n" not in str(error.value)


def test_missing_text_column_names_the_field(tmp_path):
    columns = [c for c in PMC_COLUMNS if c != "patient"]
    path = write_csv(tmp_path / "PMC-Patients.csv", [pmc_record(1)], columns=columns)
    with pytest.raises(InputError) as error:
        scan_case_reports(str(path))
    assert "field 'patient'" in str(error.value) and "missing column" in str(error.value)


def test_empty_text_names_row_and_field(tmp_path):
    records = [pmc_record(1), pmc_record(2), pmc_record(3, text="   ")]
    path = write_csv(tmp_path / "PMC-Patients.csv", records)
    with pytest.raises(InputError, match=r"row 3: field 'patient': empty text"):
        scan_case_reports(str(path), chunk_size=2)


def test_non_utf8_text_names_row_and_field(tmp_path):
    path = write_csv(tmp_path / "PMC-Patients.csv", [pmc_record(1), pmc_record(2, text="PLACEHOLDER")])
    path.write_bytes(path.read_bytes().replace(b"PLACEHOLDER", b"caf\xe9 au lait"))
    with pytest.raises(InputError, match=r"row 2: field 'patient': text is not valid UTF-8"):
        scan_case_reports(str(path))


def test_non_integer_patient_id_is_rejected(tmp_path):
    record = pmc_record(1) | {"patient_id": "P-1"}
    path = write_csv(tmp_path / "PMC-Patients.csv", [record])
    with pytest.raises(InputError, match=r"row 1: field 'patient_id': expected an integer"):
        scan_case_reports(str(path))


def test_json_record_without_text_field(tmp_path):
    path = tmp_path / "PMC-Patients.json"
    records = [pmc_record(1), {k: v for k, v in pmc_record(2).items() if k != "patient"}]
    path.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(InputError, match=r"row 2: field 'patient': missing field"):
        scan_case_reports(str(path))


def test_subset_is_reproducible_and_grows_by_extension(tmp_path):
    path = str(write_csv(tmp_path / "PMC-Patients.csv", [pmc_record(i) for i in range(1, 41)]))
    five = scan_case_reports(path, limit=5, seed=3)
    again = scan_case_reports(path, limit=5, seed=3, chunk_size=7)
    ten = scan_case_reports(path, limit=10, seed=3)
    other_seed = scan_case_reports(path, limit=5, seed=4)
    assert five.total == 40 and five.count == 5
    assert five.selected == again.selected
    assert five.selected < ten.selected  # a larger limit extends the subset, never reshuffles it
    assert five.selected != other_seed.selected
    reports = list(iter_case_reports(path, five))
    assert [r.row for r in reports] == sorted(five.selected)
    assert all(r.patient_uid == f"{7000 + r.patient_id}-1" for r in reports)


def test_dataset_source_with_configurable_columns(tmp_path):
    from datasets import Dataset

    path = tmp_path / "reports.parquet"
    Dataset.from_dict({"case_id": [11, 12], "body": ["First case.", "Second case."]}).to_parquet(str(path))
    scan = scan_case_reports(str(path), text_column="body", id_column="case_id")
    reports = list(iter_case_reports(str(path), scan, text_column="body", id_column="case_id"))
    assert [(r.patient_id, r.patient_uid, r.text) for r in reports] == [
        (11, "11", "First case."),
        (12, "12", "Second case."),
    ]


def test_check_int_accepts_integral_values_only():
    assert readers.check_int("f", "12", row=1, field="x") == 12
    assert readers.check_int("f", 12.0, row=1, field="x") == 12
    with pytest.raises(InputError):
        readers.check_int("f", "1.5", row=1, field="x")
    with pytest.raises(InputError):
        readers.check_int("f", True, row=1, field="x")


# -- The one NOTEEVENTS detector: the readers' own parsing, every format they accept ----------------

NOTEEVENTS_HEADER = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION", "TEXT"]
NOTEEVENTS_ROWS = [
    [1, 10, 100, "2150-01-01", "Discharge summary", "Report", "Admitted with chest pain. Discharged home."],
    [2, 11, 101, "2150-02-01", "Discharge summary", "Report", "Admitted with pneumonia. Treated."],
]


def noteevents_variants(folder) -> dict[str, tuple[object, str]]:
    """MIMIC NOTEEVENTS in every shape the readers accept: {name: (path, text column)}."""
    from datasets import Dataset

    folder.mkdir(parents=True, exist_ok=True)
    records = [dict(zip(NOTEEVENTS_HEADER, row)) for row in NOTEEVENTS_ROWS]
    plain = "\n".join(",".join(map(str, row)) for row in [NOTEEVENTS_HEADER, *NOTEEVENTS_ROWS]) + "\n"
    variants = {}

    def add(name, text=None, column="TEXT", **kwargs):
        path = folder / name
        if text is not None:
            path.write_text(text, encoding=kwargs.get("encoding", "utf-8"))
        variants[name] = (path, column)
        return path

    add("bom.csv", plain, encoding="utf-8-sig")
    add("leading_blank_line.csv", "\n" + plain)
    add(
        "comma_space.csv",
        "\n".join(", ".join(map(str, row)) for row in [NOTEEVENTS_HEADER, *NOTEEVENTS_ROWS]),
    )
    add("one_line.json", json.dumps(records))
    add("pretty.json", json.dumps(records, indent=2))
    large = [{**records[0], "TEXT": "Admitted. " * 20_000}, records[1]]  # a first record far over 64 KB
    add("large_first.jsonl", "".join(json.dumps(record) + "\n" for record in large))
    Dataset.from_list(records).save_to_disk(str(add("saved_to_disk")))
    Dataset.from_list(records).to_parquet(str(add("notes.parquet")))
    partial = [
        {"text": r["TEXT"], "subject_id": r["SUBJECT_ID"], "chartdate": r["CHARTDATE"]} for r in records
    ]
    add("partial_lowercase.jsonl", "".join(json.dumps(record) + "\n" for record in partial), column="text")
    return variants


def test_noteevents_is_recognised_in_every_format_the_readers_accept(tmp_path):
    from asclepius.data.loading import load_any

    for name, (path, column) in noteevents_variants(tmp_path).items():
        columns = readers.read_columns(str(path)) or list(load_any(str(path))["train"].column_names)
        assert column in columns, (name, columns)  # the readers parse what the detector judges
        if path.is_file():
            assert readers.is_noteevents(readers.table_columns(path)), name
        assert readers.is_noteevents(columns), name


def test_the_detector_needs_text_and_two_noteevents_columns():
    assert readers.is_noteevents(["\ufeff row_id ", "hadm_id", " Text"])
    assert readers.is_noteevents(["TEXT", "CATEGORY", "CHARTDATE"])
    assert not readers.is_noteevents(["TEXT", "ROW_ID"]) and not readers.is_noteevents(
        ["note", "ROW_ID", "HADM_ID"]
    )
    assert not readers.is_noteevents(None)


def test_a_comma_space_header_is_read_with_clean_names(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("id, TEXT\n1, first note\n", encoding="utf-8")
    assert readers.read_columns(str(path)) == ["id", "TEXT"]
    assert [record for _, record in readers.iter_csv(path, usecols=["TEXT"])] == [{"TEXT": " first note"}]


def test_a_save_to_disk_folder_is_read_like_any_dataset(tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_dict({"note": ["a", "b"]}).save_to_disk(str(tmp_path / "one"))
    DatasetDict({"test": Dataset.from_dict({"note": ["c"]})}).save_to_disk(str(tmp_path / "dict"))
    assert [record["note"] for _, record in readers.iter_records(str(tmp_path / "one"))] == ["a", "b"]
    assert readers.read_columns(str(tmp_path / "dict"), split="test") == ["note"]
