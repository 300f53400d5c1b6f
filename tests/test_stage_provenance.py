"""Provenance of inputs: public only when our card says so or the user declares it; unknown is restricted."""

from __future__ import annotations

import csv

import pytest
from datasets import Dataset

from asclepius import hub
from asclepius.stage import PUBLIC, RESTRICTED, UNKNOWN, classify, combine, declare_source
from asclepius.stage.provenance import mark


def write_csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


NOTEEVENTS = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION", "TEXT"]


@pytest.fixture
def mimic_tree(tmp_path):
    """outputs/ with a MIMIC notes folder (marked, a parquet inside) next to a synthetic one."""
    root = tmp_path / "outputs"
    mimic = root / "mimic-notes"
    (mimic / "data" / "default").mkdir(parents=True)
    Dataset.from_dict({"patient_id": [1], "note": ["x"]}).to_parquet(
        str(mimic / "data" / "default" / "train-00000-of-00001.parquet")
    )
    hub.mark_mimic_derived(mimic)
    (root / "synthetic").mkdir()
    return root, mimic


def test_a_noteevents_table_is_restricted_whatever_is_declared(tmp_path):
    raw = write_csv(
        tmp_path / "notes.csv", NOTEEVENTS, [[1, 2, 3, "2150-01-01", "Discharge summary", "", "text"]]
    )
    assert classify(raw).status == RESTRICTED
    assert declare_source(raw, license="cc0-1.0").status == RESTRICTED
    assert classify(raw, declared_license="cc0-1.0").mimic_derived


def test_mimic_folder_its_subfolders_files_and_parents_are_restricted(mimic_tree):
    root, mimic = mimic_tree
    parquet = next(mimic.rglob("*.parquet"))
    for source in (mimic, mimic / "data", parquet, root):
        assert classify(source).status == RESTRICTED, source
    assert classify(root / "synthetic").status == UNKNOWN  # no card: not shown to be public


def test_raw_files_and_hub_ids_are_unknown_unless_declared(tmp_path):
    raw = write_csv(tmp_path / "reports.csv", ["patient_id", "patient"], [[1, "A case."]])
    assert classify(raw).status == UNKNOWN and classify(raw).restricted
    assert classify(raw, declared_license="cc-by-nc-sa-4.0").status == PUBLIC
    assert classify("zhengyun21/PMC-Patients").status == UNKNOWN
    assert (
        classify("zhengyun21/PMC-Patients", declared_license="cc-by-nc-sa-4.0").license == "cc-by-nc-sa-4.0"
    )
    assert classify("someone/clinical-lora", kind="adapter").status == UNKNOWN  # a Hub adapter
    assert classify("huggyllama/llama-7b", kind="model").status == PUBLIC  # base weights, public already
    assert declare_source(raw, license="cc0-1.0", restricted_source=True).status == RESTRICTED


def test_a_checkpoint_of_an_unfinished_run_is_unknown_and_of_a_restricted_run_restricted(tmp_path):
    run = tmp_path / "sft"
    (run / "checkpoint-10").mkdir(parents=True)
    assert classify(run / "checkpoint-10").status == UNKNOWN
    mark(
        run, declare_source("NOTEEVENTS", license=None, restricted_source=True)
    )  # what training writes first
    assert classify(run / "checkpoint-10").status == RESTRICTED


def test_our_public_card_makes_a_folder_public_and_outputs_take_the_most_restrictive_input(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "README.md").write_text(
        "---\nlicense: cc0-1.0\ntags: [asclepius]\ndata_provenance: public\n---\n# notes\n", encoding="utf-8"
    )
    public = classify(folder)
    assert public.status == PUBLIC and public.license == "cc0-1.0"
    unknown = classify(tmp_path / "elsewhere.jsonl")
    assert combine([public, unknown]).status == UNKNOWN
    assert combine(
        [public, declare_source("x/y", license=None, restricted_source=True), unknown]
    ).mimic_derived


def test_a_card_vouches_for_its_own_files_not_for_whatever_is_copied_deeper(tmp_path):
    folder = tmp_path / "demo"
    (folder / "copied" / "in").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nlicense: cc0-1.0\ntags: [asclepius]\ndata_provenance: public\n---\n# demo\n", encoding="utf-8"
    )
    for name in ("notes.csv", "copied/in/notes.csv"):
        write_csv(folder / name, ["note"], [["text"]])
    assert classify(folder / "notes.csv").status == PUBLIC
    assert classify(folder / "copied" / "in" / "notes.csv").status == UNKNOWN
