"""prepare_notes.py: any note corpus becomes a notes folder; licence and restriction are stated; bad rows are one line."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest

from asclepius.data.loading import load_any
from asclepius.stage import classify

ROOT = Path(__file__).resolve().parents[1]
NOTES = [
    {"nid": "n1", "pid": "10", "body": "Pt admitted w/ CAP, tx abx, d/c home.", "kind": "Discharge summary"},
    {"nid": "n2", "pid": "11", "body": "Chest pain r/o MI, trop neg x2.", "kind": "Discharge summary"},
    {"nid": "n3", "pid": "11", "body": "Nursing note: pt comfortable.", "kind": "Nursing"},
]


def prepare(argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["prepare_notes.py", *argv])
    runpy.run_path(str(ROOT / "scripts" / "prepare_notes.py"), run_name="__main__")


def fails(argv: list[str], monkeypatch, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        prepare(argv, monkeypatch)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_every_format_becomes_the_same_notes_folder(tmp_path, monkeypatch, suffix):
    source = tmp_path / f"notes{suffix}"
    frame = pd.DataFrame(NOTES)
    {".csv": lambda: frame.to_csv(source, index=False), ".jsonl": lambda: frame.to_json(source, orient="records", lines=True),
     ".json": lambda: frame.to_json(source, orient="records"), ".parquet": lambda: frame.to_parquet(source)}[suffix]()  # fmt: skip
    out = tmp_path / "out"
    prepare(["--input", str(source), "--text_column", "body", "--id_column", "nid", "--patient_column", "pid",
             "--where", "kind=Discharge summary", "--source", "clinic-x", "--source_license", "cc-by-4.0",
             "--source_restricted", "false", "--output_dir", str(out)], monkeypatch)  # fmt: skip
    rows = load_any(str(out))["train"]
    assert rows.column_names == ["patient_id", "note_id", "note", "source"]
    assert (
        rows["note_id"] == ["n1", "n2"]
        and rows["patient_id"] == [10, 11]
        and set(rows["source"]) == {"clinic-x"}
    )
    card = (out / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "data_provenance: public" in card
    assert classify(str(out)).status == "public"


def test_restricted_corpora_are_marked_and_never_pushed_publicly(tmp_path, monkeypatch, capsys):
    source = tmp_path / "notes.csv"
    pd.DataFrame(NOTES).to_csv(source, index=False)
    out = tmp_path / "restricted"
    base = [
        "--input",
        str(source),
        "--text_column",
        "body",
        "--source",
        "hospital",
        "--source_license",
        "other",
    ]
    prepare([*base, "--source_restricted", "true", "--output_dir", str(out)], monkeypatch)
    assert classify(str(out)).restricted and "mimic_derived: true" in (out / "README.md").read_text()
    # Refused before anything is written: a public push of restricted notes.
    message = fails([*base, "--source_restricted", "true", "--output_dir", str(tmp_path / "o2"),
                     "--push_to_hub", "true", "--hub_dataset_id", "me/notes"], monkeypatch, capsys)  # fmt: skip
    assert "public" in message and not (tmp_path / "o2" / "README.md").exists()


def test_restricted_corpus_keeps_its_declared_licence(tmp_path, monkeypatch):
    """An institution's notes are restricted under their own licence, not PhysioNet's."""
    source = tmp_path / "notes.csv"
    pd.DataFrame(NOTES).to_csv(source, index=False)
    out = tmp_path / "clinic"
    prepare(["--input", str(source), "--text_column", "body", "--source", "clinic", "--source_license",
             "cc-by-nc-4.0", "--source_restricted", "true", "--output_dir", str(out)], monkeypatch)  # fmt: skip
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "physionet" not in card.lower()
    provenance = classify(str(out))
    assert provenance.restricted and provenance.license == "cc-by-nc-4.0"


def test_mimic_layout_is_restricted_whatever_is_stated(tmp_path, monkeypatch):
    source = tmp_path / "export.csv"
    pd.DataFrame([{"ROW_ID": 1, "SUBJECT_ID": 5, "HADM_ID": 7, "CHARTDATE": "2100-01-01", "CATEGORY": "Discharge summary",
                   "TEXT": "Admission Date: [**2100-1-1**] ..."}]).to_csv(source, index=False)  # fmt: skip
    out = tmp_path / "out"
    prepare(["--input", str(source), "--text_column", "TEXT", "--id_column", "ROW_ID", "--source", "mimic",
             "--source_license", "cc0-1.0", "--source_restricted", "false", "--output_dir", str(out)], monkeypatch)  # fmt: skip
    assert classify(str(out)).restricted
    assert json.loads((out / ".asclepius" / "provenance.json").read_text())["status"] == "restricted"


def test_keep_ids_selects_the_held_out_notes(tmp_path, monkeypatch):
    source = tmp_path / "notes.csv"
    pd.DataFrame(NOTES).to_csv(source, index=False)
    ids = tmp_path / "held_out.txt"
    ids.write_text("nid\nn3\n# a comment\nn1\n")
    out = tmp_path / "out"
    prepare(["--input", str(source), "--text_column", "body", "--id_column", "nid", "--keep_ids", str(ids),
             "--source", "s", "--source_license", "other", "--source_restricted", "true", "--output_dir", str(out)],
            monkeypatch)  # fmt: skip
    assert load_any(str(out))["train"]["note_id"] == ["n1", "n3"]


def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    source = tmp_path / "notes.csv"
    pd.DataFrame([*NOTES[:1], {**NOTES[1], "body": "   "}]).to_csv(source, index=False)

    def base(out: str) -> list[str]:  # a folder per run: a failed run in this process keeps its lock
        return [
            "--input",
            str(source),
            "--source",
            "s",
            "--source_license",
            "other",
            "--output_dir",
            str(tmp_path / out),
        ]

    message = fails([*base("o1"), "--text_column", "body"], monkeypatch, capsys)
    assert "--source_restricted: required" in message
    message = fails(
        [*base("o2"), "--text_column", "body", "--source_restricted", "false"], monkeypatch, capsys
    )
    assert message == f"error: {source}: row 2: field 'body': empty text"
    assert not (tmp_path / "o2" / "README.md").exists()
    message = fails(
        [*base("o3"), "--text_column", "text", "--source_restricted", "false"], monkeypatch, capsys
    )
    assert f"{source}: field 'text': missing column" in message
    without_licence = [a for a in base("o4") if a not in ("--source_license", "other")]
    message = fails(
        [*without_licence, "--text_column", "body", "--source_restricted", "false"], monkeypatch, capsys
    )
    assert "--source_license: required" in message
