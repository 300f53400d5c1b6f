"""The stamp inside parquet and safetensors files and the files a card vouches for."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import torch
from datasets import Dataset, load_dataset
from safetensors.torch import load_file, save_file

from asclepius.stage import PUBLIC, RESTRICTED, Provenance, classify
from asclepius.stage.cards import render_card
from asclepius.stage.files import read_card_metadata, write_dataset_configs
from asclepius.stage.provenance import restricted
from asclepius.stage.stamps import (
    CARD_FILES_KEY,
    CARD_STAMP_KEY,
    STAMP_KEY,
    file_kind,
    read_stamp,
    sha256_of,
    stamp_safetensors,
    stamp_weights,
    write_parquet,
)

MIMIC = restricted("/secure/NOTEEVENTS.csv", "MIMIC NOTEEVENTS columns")


def test_a_parquet_file_carries_its_stamp_and_loads_as_before(tmp_path):
    rows = Dataset.from_dict({"patient_id": [3, 1, 2], "note": ["c", "a", "b"]}).sort("patient_id")
    path = write_parquet(rows, tmp_path / "train.parquet", MIMIC)
    stamp = read_stamp(path)
    assert stamp["status"] == RESTRICTED and stamp["restricted_sources"] == ["/secure/NOTEEVENTS.csv"]
    assert (
        STAMP_KEY.encode() in pq.read_schema(path).metadata
        and b"huggingface" in pq.read_schema(path).metadata
    )
    loaded = load_dataset("parquet", data_files=str(path), cache_dir=str(tmp_path / "cache"))["train"]
    assert (
        loaded["note"] == ["a", "b", "c"] and loaded.features == rows.features
    )  # the sorted view, as written
    assert read_stamp(shutil.copy(path, tmp_path / "renamed.dat"))["status"] == RESTRICTED
    assert file_kind(tmp_path / "renamed.dat") == "parquet"


def test_unstamped_files_say_nothing_and_other_files_are_no_stamped_kind(tmp_path):
    Dataset.from_dict({"a": [1]}).to_parquet(str(tmp_path / "plain.parquet"))
    assert read_stamp(tmp_path / "plain.parquet") is None
    (tmp_path / "notes.csv").write_text("note\nx\n")
    assert read_stamp(tmp_path / "notes.csv") is None and file_kind(tmp_path / "notes.csv") is None
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really PAR1")
    assert read_stamp(tmp_path / "broken.parquet") == {}  # a damaged stamped kind: unreadable, so unknown


def test_safetensors_weights_carry_the_stamp_and_load_unchanged(tmp_path):
    tensors = {
        "w": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b": torch.ones(5, dtype=torch.int64),
    }
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert read_stamp(tmp_path / "model.safetensors") is None
    assert stamp_safetensors(tmp_path / "model.safetensors", MIMIC)
    assert not stamp_safetensors(tmp_path / "model.safetensors", MIMIC)  # already stamped: not rewritten
    loaded = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(loaded[name], tensors[name]) for name in tensors)
    renamed = shutil.copy(tmp_path / "model.safetensors", tmp_path / "weights.bin")
    assert read_stamp(renamed)["status"] == RESTRICTED and classify(renamed).mimic_derived
    assert stamp_weights(tmp_path, Provenance(PUBLIC, "test")) == [tmp_path / "model.safetensors"]
    assert read_stamp(tmp_path / "model.safetensors")["status"] == PUBLIC


def test_a_card_stamps_its_folder_and_lists_its_files_with_their_hashes(tmp_path):
    rows = Dataset.from_dict({"patient_id": [1], "note": ["a"]})
    configs = write_dataset_configs(tmp_path, {"default": {"train": rows}}, provenance=MIMIC)
    (tmp_path / ".asclepius").mkdir()
    (tmp_path / ".asclepius" / "ledger.sqlite").write_bytes(b"never uploaded, never listed")
    render_card(tmp_path, kind="dataset", template="tiny_model_card.md",
                card_data={"configs": configs, "tags": ["asclepius"]},
                context={"parameters": "1", "seed": 0, "vocab_size": 1}, provenance=MIMIC)  # fmt: skip
    metadata = read_card_metadata(tmp_path)
    assert metadata[CARD_STAMP_KEY]["status"] == RESTRICTED
    parquet = "data/default/train-00000-of-00001.parquet"
    assert metadata[CARD_FILES_KEY] == [{"name": parquet, "sha256": sha256_of(tmp_path / parquet)}]
    assert classify(tmp_path).status == RESTRICTED
