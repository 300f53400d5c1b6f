"""Red team: every route around the provenance stamp, tried through the scripts as an attacker or a
careless user would. Nothing restricted may leave: no public push (the Hub is stubbed and records
every call), no note to an endpoint off the allow-list (refused before any request).

Routes: NOTEEVENTS in every format the readers accept; a stamped parquet copied out of its folder;
a foreign file dropped into a public folder; restricted weights renamed and dressed in a public
card; a Hub model whose card says MIMIC (a fake Hugging Face cache); an adapter merged into a
restricted base.
"""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import huggingface_hub
import pytest
from datasets import Dataset
from test_data_readers import NOTEEVENTS_HEADER, NOTEEVENTS_ROWS, noteevents_variants

from asclepius.stage import PUBLIC, RESTRICTED, FolderLock, Provenance, classify
from asclepius.stage.cards import render_card
from asclepius.stage.files import read_card_metadata
from asclepius.stage.provenance import restricted
from asclepius.stage.stamps import read_stamp, stamp_weights

ROOT = Path(__file__).resolve().parents[1]
REMOTE = "https://api.openai.com/v1"  # off the allow-list: restricted notes are refused before any request


class StubHub:
    """The Hub API as the push uses it; records every call (nothing leaves the machine)."""

    calls: list = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, *, repo_type, private, exist_ok):
        StubHub.calls.append(("create_repo", repo_id, private))
        return f"https://huggingface.co/{repo_type}s/{repo_id}"

    def repo_info(self, repo_id, *, repo_type):
        StubHub.calls.append(("repo_info", repo_id))
        return type("Info", (), {"private": True})()

    def upload_folder(self, *, repo_id, folder_path, repo_type, ignore_patterns, commit_message, **_):
        StubHub.calls.append(("upload_folder", repo_id, folder_path))


@pytest.fixture
def hub(monkeypatch):
    StubHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", StubHub)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
    return StubHub


def run(name: str, *argv, monkeypatch, capsys) -> tuple[int, str]:
    """A script in this process (the stubbed Hub applies): (exit code, its stderr).

    The folder locks it took are released when it returns, as its process ending would.
    """
    held = []
    acquire = FolderLock.acquire

    def acquire_and_remember(lock, *args, **kwargs):
        acquire(lock, *args, **kwargs)
        held.append(lock)

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", [name, *map(str, argv)])
    monkeypatch.setattr(FolderLock, "acquire", acquire_and_remember)
    try:
        runpy.run_path(str(ROOT / "scripts" / name), run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        monkeypatch.setattr(FolderLock, "acquire", acquire)
        for lock in held:
            lock.release()
    return code, capsys.readouterr().err


def nothing_written(folder: Path) -> bool:
    """No row, card or file outside the working state (a refused run in this process still holds its lock)."""
    return not folder.exists() or all(".asclepius" in path.parts for path in folder.rglob("*"))


def prepare_notes(source, output, *extra, column="TEXT", restricted_source="false"):
    return ["--input", source, "--text_column", column, "--source", "clinic", "--source_license", "cc0-1.0",
            "--source_restricted", restricted_source, "--output_dir", output, *extra]  # fmt: skip


PUBLIC_PUSH = ("--push_to_hub", "true", "--hub_dataset_id", "someone/notes")


def public_notes(tmp_path, monkeypatch, capsys) -> Path:
    """A finished public notes folder, made by prepare_notes from a declared CC0 corpus."""
    raw = tmp_path / "clinic.csv"
    raw.write_text("note_id,note\n1,A public case report.\n2,Another public case report.\n", encoding="utf-8")
    output = tmp_path / "public-notes"
    code, err = run("prepare_notes.py", *prepare_notes(raw, output, column="note"), monkeypatch=monkeypatch,
                    capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert classify(output).status == PUBLIC
    return output


VARIANTS = [
    "bom.csv",
    "leading_blank_line.csv",
    "comma_space.csv",
    "one_line.json",
    "pretty.json",
    "large_first.jsonl",
    "saved_to_disk",
    "notes.parquet",
    "partial_lowercase.jsonl",
    "linked_folder",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_noteevents_declared_public_is_refused_a_public_push_in_every_format(variant, tmp_path, hub, monkeypatch,
                                                                            capsys):  # fmt: skip
    variants = noteevents_variants(tmp_path / "raw")
    if variant == "linked_folder":  # an innocent-looking folder whose file links to NOTEEVENTS elsewhere
        source, column = tmp_path / "innocent", "TEXT"
        source.mkdir()
        (source / "reports.csv").symlink_to(variants["bom.csv"][0])
    else:
        source, column = variants[variant]
    output = tmp_path / "notes"
    code, err = run("prepare_notes.py", *prepare_notes(source, output, *PUBLIC_PUSH, column=column),
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 2 and "the data is restricted" in err and "public repository" in err, err
    assert hub.calls == [] and nothing_written(output)


def test_a_public_corpus_is_pushed_the_control_of_the_routes_above(tmp_path, hub, monkeypatch, capsys):
    raw = tmp_path / "clinic.csv"
    raw.write_text("note_id,note\n1,A public case report.\n", encoding="utf-8")
    code, err = run("prepare_notes.py", *prepare_notes(raw, tmp_path / "notes", *PUBLIC_PUSH, column="note"),
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert [call[0] for call in hub.calls] == ["create_repo", "upload_folder"]


@pytest.mark.parametrize("variant", ["pretty.json", "large_first.jsonl", "comma_space.csv"])
def test_make_notes_never_sends_noteevents_off_the_allow_list(variant, tmp_path, hub, monkeypatch, capsys):
    source, column = noteevents_variants(tmp_path / "raw")[variant]
    output = tmp_path / "notes"
    code, err = run("make_notes.py", "--config", "recipes/tiny/data.yaml", "--base_url", REMOTE, "--model",
                    "gpt-test", "--input", source, "--text_column", column, "--id_column", "SUBJECT_ID",
                    "--output_dir", output, "--show_progress", "false",
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 2 and "restricted notes" in err and "may not be sent" in err, err
    assert nothing_written(output)


def test_generate_never_sends_an_evaluation_set_with_noteevents_columns(tmp_path, hub, monkeypatch, capsys):
    rows = [{"note": "Admitted. " * 10_000, "question": "Why?", "TEXT": "x", "ROW_ID": 1, "HADM_ID": 2},
            {"note": "Admitted.", "question": "Why?", "TEXT": "y", "ROW_ID": 3, "HADM_ID": 4}]  # fmt: skip
    source = tmp_path / "eval.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    argv = ["--backend", "openai", "--base_url", REMOTE, "--model", "gpt-test", "--input", source, "--split",
            "train", "--output_dir", tmp_path / "answers", "--show_progress", "false"]  # fmt: skip
    code, err = run("generate.py", *argv, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "restricted notes" in err, err
    assert nothing_written(tmp_path / "answers")


def test_a_copied_parquet_keeps_its_stamp_through_the_scripts(tmp_path, hub, monkeypatch, capsys):
    raw = tmp_path / "NOTEEVENTS.csv"
    lines = [",".join(map(str, row)) for row in [NOTEEVENTS_HEADER, *NOTEEVENTS_ROWS]]
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mimic = tmp_path / "mimic-notes"
    code, err = run("prepare_notes.py", *prepare_notes(raw, mimic, restricted_source="true"),
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, err
    # Copied out of its folder, renamed, its columns now those of any notes folder: the stamp travels.
    innocent = tmp_path / "innocent"
    innocent.mkdir()
    copy = Path(shutil.copy(next((mimic / "data").rglob("*.parquet")), innocent / "public-notes.parquet"))
    assert read_stamp(copy)["status"] == RESTRICTED
    code, err = run("prepare_notes.py", *prepare_notes(copy, tmp_path / "again", *PUBLIC_PUSH, column="note"),
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 2 and "the data is restricted" in err, err
    code, err = run("make_questions.py", "--config", "recipes/tiny/data.yaml", "--base_url", REMOTE, "--model",
                    "gpt-test", "--input", copy, "--output_dir", tmp_path / "questions", "--show_progress", "false",
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 2 and "restricted notes" in err and "may not be sent" in err, err
    assert hub.calls == []


def test_a_file_dropped_into_a_public_folder_is_not_pushed_publicly(tmp_path, hub, monkeypatch, capsys):
    folder = public_notes(tmp_path, monkeypatch, capsys)
    push = ("--folder", folder, "--repo_id", "someone/notes")
    code, err = run("push.py", *push, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and hub.calls[-1][0] == "upload_folder", err  # the folder as its card lists it: public
    hub.calls.clear()
    # A foreign split file, named like the folder's own: load_dataset(folder) would read it as train rows.
    foreign = folder / "data" / "default" / "train-00001-of-00002.parquet"
    Dataset.from_dict({"note": ["someone's notes"], "patient_id": [9]}).to_parquet(str(foreign))
    assert classify(foreign).status != PUBLIC and classify(folder / "data" / "default" / "train-00000-of-00001.parquet").status == PUBLIC  # fmt: skip
    code, err = run("push.py", *push, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "unknown" in err and "train-00001-of-00002.parquet" in err, err
    assert hub.calls == []
    code, err = run("push.py", *push, "--private", "true", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and hub.calls[-1][0] == "upload_folder", err  # private: allowed


def mimic_trained_copy(tiny_model_path, folder: Path) -> Path:
    """The tiny model's files, its weights stamped as training on MIMIC notes stamps them."""
    shutil.copytree(tiny_model_path, folder, ignore=shutil.ignore_patterns("README.md", ".asclepius"))
    stamp_weights(folder, restricted("/secure/NOTEEVENTS.csv", "MIMIC NOTEEVENTS columns"))
    return folder


def test_renamed_weights_keep_their_stamp_and_answers_of_the_model_are_restricted(
    tiny_model_path, tmp_path, hub, monkeypatch, capsys
):
    trained = mimic_trained_copy(tiny_model_path, tmp_path / "trained")
    renamed = Path(shutil.copy(trained / "model.safetensors", tmp_path / "weights-v2.bin"))
    assert classify(renamed).status == RESTRICTED
    # Dressed as public: a card of ours that says public, written over the restricted weights.
    render_card(trained, kind="model", template="tiny_model_card.md",
                card_data={"license": "apache-2.0", "tags": ["asclepius"], "data_provenance": "public"},
                context={"parameters": "1", "seed": 0, "vocab_size": 1},
                provenance=Provenance(PUBLIC, "a lie"))  # fmt: skip
    assert classify(trained, kind="model").status == RESTRICTED
    source = tmp_path / "eval.jsonl"
    source.write_text(json.dumps({"note": "A public note.", "question": "Why?"}) + "\n", encoding="utf-8")
    answers = tmp_path / "answers"
    code, err = run("generate.py", "--model", trained, "--input", source, "--split", "train", "--max_tokens", 4,
                    "--output_dir", answers, "--show_progress", "false",
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert read_card_metadata(answers)["data_provenance"] == RESTRICTED
    code, err = run("push.py", "--folder", answers, "--repo_id", "someone/answers", monkeypatch=monkeypatch,
                    capsys=capsys)  # fmt: skip
    assert code == 2 and "restricted" in err and hub.calls == [], err


def hf_cache(home: Path, repo_id: str, files: Path | None, card: str) -> None:
    """A model in the Hugging Face cache layout under ``home`` (what HF_HOME points to)."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("1" * 40)
    if files is not None:
        shutil.copytree(files, snapshot, ignore=shutil.ignore_patterns("README.md", ".asclepius"))
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "README.md").write_text(card, encoding="utf-8")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("1" * 40)


MIMIC_CARD = "---\nlicense: other\n---\n# Clinical model\nFine-tuned on MIMIC-III discharge summaries.\n"


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    """A fresh Hugging Face home: huggingface_hub and transformers look models up in its ``hub/`` cache
    (read at each call, so this process sees it as a script started with HF_HOME would)."""
    home = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


def test_a_hub_model_whose_card_says_mimic_gives_restricted_answers(
    tiny_model_path, tmp_path, hf_home, hub, monkeypatch, capsys
):
    hf_cache(hf_home, "someone/clinical-tiny", tiny_model_path, MIMIC_CARD)  # public weights, a MIMIC card
    source = tmp_path / "eval.jsonl"
    source.write_text(json.dumps({"note": "A public note.", "question": "Why?"}) + "\n", encoding="utf-8")
    answers = tmp_path / "answers"
    code, err = run("generate.py", "--model", "someone/clinical-tiny", "--input", source, "--split", "train",
                    "--max_tokens", 4, "--output_dir", answers, "--show_progress", "false",
                    monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, err
    metadata = read_card_metadata(answers)
    assert metadata["data_provenance"] == RESTRICTED
    assert metadata["asclepius_provenance"]["status"] == RESTRICTED
    assert read_stamp(next((answers / "data").rglob("*.parquet")))["status"] == RESTRICTED


def test_merge_adapter_classifies_the_base_it_actually_loads(
    tiny_model_path, tmp_path, hf_home, hub, monkeypatch, capsys
):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    hf_cache(hf_home, "someone/clinical-tiny", tiny_model_path, MIMIC_CARD)
    adapter = tmp_path / "adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_path),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))  # fmt: skip
    model.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": "someone/clinical-tiny"})
    )
    public = Provenance(PUBLIC, "trained on public notes", license="cc0-1.0")
    stamp_weights(adapter, public)
    render_card(adapter, kind="model", template="tiny_model_card.md",
                card_data={"license": "cc0-1.0", "tags": ["asclepius"], "data_provenance": "public"},
                context={"parameters": "1", "seed": 0, "vocab_size": 1}, provenance=public)  # fmt: skip
    assert classify(adapter, kind="adapter").status == PUBLIC  # the adapter alone is public
    merged = tmp_path / "merged"
    code, err = run("merge_adapter.py", "--adapter_dir", adapter, "--output_dir", merged, "--push_to_hub", "true",
                    "--hub_model_id", "someone/merged", monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 2 and "restricted" in err and "someone/clinical-tiny" in err, err
    assert nothing_written(merged) and hub.calls == []
    code, err = run("merge_adapter.py", "--adapter_dir", adapter, "--output_dir", merged, monkeypatch=monkeypatch,
                    capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert read_card_metadata(merged)["data_provenance"] == RESTRICTED
    assert read_stamp(merged / "model.safetensors")["status"] == RESTRICTED
