"""Provenance of inputs: stamps in the files, cards that vouch for the files they list, the readers' detector.

Unknown is restricted; public only when a stamp, a card of ours listing the file, or the
user's declaration says so.
"""

from __future__ import annotations

import csv
import json
import shutil

import huggingface_hub
import pytest
from datasets import Dataset

from asclepius.stage import PUBLIC, RESTRICTED, UNKNOWN, Provenance, classify, combine, declare_source
from asclepius.stage.cards import render_card
from asclepius.stage.files import write_dataset_configs
from asclepius.stage.provenance import from_stamp, mark, mark_mimic_derived, read_marker, restricted


def write_csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


NOTEEVENTS = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION", "TEXT"]
PUBLIC_NOTES = Provenance(PUBLIC, "test", license="cc0-1.0")
CONTEXT = {"parameters": "1M", "seed": 0, "vocab_size": 1}  # what the small template needs


def public_folder(path, *, files=("notes.csv",)):
    """A finished folder of ours: stamped parquet plus ``files``, listed by a card rendered last."""
    rows = Dataset.from_dict({"patient_id": [1], "note": ["A note."]})
    configs = write_dataset_configs(path, {"default": {"train": rows}}, provenance=PUBLIC_NOTES)
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        write_csv(path / name, ["note"], [["text"]])
    card_data = {"license": "cc0-1.0", "tags": ["asclepius"], "data_provenance": "public", "configs": configs}
    render_card(path, kind="dataset", template="tiny_model_card.md", card_data=card_data, context=CONTEXT,
                provenance=PUBLIC_NOTES)  # fmt: skip
    return path


@pytest.fixture
def mimic_tree(tmp_path):
    """outputs/ with a MIMIC notes folder (marked, a parquet inside) next to a synthetic one."""
    root = tmp_path / "outputs"
    mimic = root / "mimic-notes"
    (mimic / "data" / "default").mkdir(parents=True)
    Dataset.from_dict({"patient_id": [1], "note": ["x"]}).to_parquet(
        str(mimic / "data" / "default" / "train-00000-of-00001.parquet")
    )
    mark_mimic_derived(mimic)
    (root / "synthetic").mkdir()
    return root, mimic


def test_a_noteevents_table_is_restricted_whatever_is_declared(tmp_path):
    raw = write_csv(
        tmp_path / "notes.csv", NOTEEVENTS, [[1, 2, 3, "2150-01-01", "Discharge summary", "", "text"]]
    )
    assert classify(raw).status == RESTRICTED
    assert declare_source(raw, license="cc0-1.0").status == RESTRICTED
    assert classify(raw, declared_license="cc0-1.0").mimic_derived
    assert str(raw) in classify(raw).restricted_sources


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
    assert classify("someone/clinical-lora", kind="adapter").status == UNKNOWN  # no card anywhere
    assert declare_source(raw, license="cc0-1.0", restricted_source=True).status == RESTRICTED


def hf_cache_card(cache, repo_id, text):
    """A model card in the Hugging Face cache layout (refs/main -> snapshots/<sha>/README.md)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "README.md").write_text(text, encoding="utf-8")


def test_a_hub_model_is_judged_by_its_card_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hf_cache_card(
        tmp_path / "hub", "meta-llama/Llama-2-7b-hf", "---\nlicense: llama2\n---\n# Llama 2\nA model.\n"
    )
    hf_cache_card(
        tmp_path / "hub", "someone/clinical-7b", "---\nlicense: other\n---\nFine-tuned on MIMIC-III notes.\n"
    )
    hf_cache_card(tmp_path / "hub", "someone/physio", "---\nlicense: other\ntags: [physionet]\n---\n# x\n")
    assert classify("meta-llama/Llama-2-7b-hf", kind="model").status == PUBLIC
    assert classify("meta-llama/Llama-2-7b-hf", kind="model").license == "llama2"
    assert classify("someone/clinical-7b", kind="model").status == RESTRICTED
    assert classify("someone/physio", kind="adapter").status == RESTRICTED
    no_card = classify("huggyllama/llama-7b", kind="model")
    assert no_card.status == UNKNOWN and "no readable model card" in no_card.reason
    assert classify("huggyllama/llama-7b", kind="model", declared_license="other").status == PUBLIC
    # A declaration never makes a restricted card public.
    assert classify("someone/clinical-7b", kind="model", declared_license="cc0-1.0").status == RESTRICTED


def test_a_checkpoint_is_what_its_run_is_marked(tmp_path):
    run = tmp_path / "sft"
    (run / "checkpoint-10").mkdir(parents=True)
    (run / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    assert classify(run / "checkpoint-10").status == UNKNOWN
    mark(
        run, declare_source("NOTEEVENTS", license=None, restricted_source=True)
    )  # what training writes first
    assert classify(run / "checkpoint-10").status == RESTRICTED
    assert read_marker(run).status == RESTRICTED and read_marker(tmp_path).status == UNKNOWN


def test_our_public_card_makes_a_folder_public_and_outputs_take_the_most_restrictive_input(tmp_path):
    folder = public_folder(tmp_path / "notes")
    public = classify(folder)
    assert public.status == PUBLIC and public.license == "cc0-1.0", public
    unknown = classify(tmp_path / "elsewhere.jsonl")
    assert combine([public, unknown]).status == UNKNOWN
    merged = combine([public, restricted("a.csv", "test"), unknown, restricted("b.csv", "test")])
    assert merged.mimic_derived and merged.restricted_sources == ("a.csv", "b.csv")


def test_a_card_vouches_for_the_files_it_lists_not_for_a_file_dropped_in_later(tmp_path):
    folder = public_folder(tmp_path / "demo", files=("notes.csv", "copied/in/notes.csv"))
    assert classify(folder / "notes.csv").status == PUBLIC
    assert classify(folder / "copied" / "in" / "notes.csv").status == PUBLIC
    write_csv(folder / "dropped.csv", ["note"], [["someone's notes"]])
    assert classify(folder / "dropped.csv").status == UNKNOWN
    whole = classify(folder)
    assert whole.status == UNKNOWN and "dropped.csv" in whole.reason
    # A listed file changed after the card was written is no longer vouched for either.
    (folder / "dropped.csv").unlink()
    write_csv(folder / "notes.csv", ["note"], [["changed"]])
    assert classify(folder / "notes.csv").status == UNKNOWN
    assert classify(folder).status == UNKNOWN


def test_a_hand_written_card_vouches_for_no_file(tmp_path):
    folder = tmp_path / "hand"
    folder.mkdir()
    (folder / "README.md").write_text(
        "---\nlicense: cc0-1.0\ntags: [asclepius]\ndata_provenance: public\n---\n# notes\n", encoding="utf-8"
    )
    assert classify(folder).status == PUBLIC  # the card alone
    write_csv(folder / "notes.csv", ["note"], [["text"]])
    assert classify(folder / "notes.csv").status == UNKNOWN
    assert classify(folder).status == UNKNOWN


def test_a_copied_parquet_keeps_its_stamp_outside_its_folder(tmp_path, mimic_tree):
    folder = public_folder(tmp_path / "notes")
    parquet = next((folder / "data").rglob("*.parquet"))
    copy = shutil.copy(parquet, tmp_path / "renamed.bin")
    assert classify(copy).status == PUBLIC and classify(copy).license == "cc0-1.0"
    _, mimic = mimic_tree
    restricted_rows = Dataset.from_dict({"patient_id": [1], "note": ["x"]})
    write_dataset_configs(mimic, {"default": {"train": restricted_rows}}, provenance=classify(mimic))
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(next(mimic.rglob("*.parquet")), loose / "notes.parquet")
    assert classify(loose / "notes.parquet").status == RESTRICTED
    assert classify(loose).status == RESTRICTED, "a folder of copied files is what their stamps say"


def test_a_symlink_is_judged_by_what_it_points_to(tmp_path):
    raw = write_csv(tmp_path / "NOTEEVENTS.csv", NOTEEVENTS, [[1, 2, 3, "2150-01-01", "x", "", "text"]])
    folder = tmp_path / "innocent"
    folder.mkdir()
    (folder / "reports.dat").symlink_to(raw)
    (folder / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.csv").symlink_to(raw)
    assert classify(folder, declared_license="cc0-1.0").status == RESTRICTED
    (folder / "reports.dat").unlink()
    assert classify(folder, declared_license="cc0-1.0").status == RESTRICTED  # through the linked folder
    (tmp_path / "elsewhere" / "loop").symlink_to(folder, target_is_directory=True)  # a cycle ends
    assert classify(folder, declared_license="cc0-1.0").status == RESTRICTED


def test_an_unreadable_stamp_is_unknown(tmp_path):
    folder = public_folder(tmp_path / "notes")
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text(card.replace("status: public", "status: sure"), encoding="utf-8")
    assert classify(folder).status == UNKNOWN
    assert "unreadable" in from_stamp({"status": 1}, "x", "the test").reason
    assert from_stamp(
        json.loads('{"status": "restricted", "restricted_sources": ["a"]}'), "x", "t"
    ).mimic_derived


def test_the_demo_data_card_vouches_for_every_demo_file_as_it_is():
    """A demo file changed without updating data/demo/README.md's sha256 list would be unknown."""
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "data" / "demo"
    for path in sorted(demo.iterdir()):
        if path.name != "README.md":
            found = classify(path)
            assert found.status == PUBLIC and found.license == "cc0-1.0", found
