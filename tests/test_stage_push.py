"""The push: restricted data only to repositories that are really private; never a pickle or a token.

The Hub API is stubbed (no network in tests) for exactly what the push asks it: create
the repository, report its visibility, upload a folder.
"""

from __future__ import annotations

import fnmatch

import huggingface_hub
import pytest

from asclepius.errors import InputError
from asclepius.stage import PUBLIC, Provenance, push_folder
from asclepius.stage.provenance import mark_mimic_derived
from asclepius.stage.push import NEVER_UPLOADED


class StubHub:
    """Records calls; ``repo_is_private`` is what the Hub says after create_repo (an existing repo stays as it was)."""

    calls: list = []
    repo_is_private = False

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, *, repo_type, private, exist_ok):
        StubHub.calls.append(("create_repo", repo_id, private))
        return f"https://huggingface.co/{repo_type}s/{repo_id}"

    def repo_info(self, repo_id, *, repo_type):
        StubHub.calls.append(("repo_info", repo_id))
        return type("Info", (), {"private": StubHub.repo_is_private})()

    def upload_folder(self, *, repo_id, folder_path, repo_type, ignore_patterns, commit_message):
        StubHub.calls.append(("upload_folder", repo_id, tuple(ignore_patterns)))


@pytest.fixture
def stub_hub(monkeypatch):
    StubHub.calls, StubHub.repo_is_private = [], False
    monkeypatch.setattr(huggingface_hub, "HfApi", StubHub)
    return StubHub


def finished_folder(path, *, mimic=False):
    path.mkdir(parents=True)
    (path / "README.md").write_text(
        "---\nlicense: cc0-1.0\ntags: [asclepius]\ndata_provenance: public\n---\n# data\n", encoding="utf-8"
    )
    if mimic:
        mark_mimic_derived(path)
    return path


def test_restricted_data_is_refused_when_the_existing_repo_is_public_despite_private(stub_hub, tmp_path):
    folder = finished_folder(tmp_path / "mimic", mimic=True)
    with pytest.raises(InputError, match="public on the Hub"):
        push_folder(folder, "someone/mimic", private=True)
    assert [call[0] for call in stub_hub.calls] == ["create_repo", "repo_info"]  # nothing uploaded
    stub_hub.repo_is_private = True
    push_folder(folder, "someone/mimic", private=True)
    assert stub_hub.calls[-1][0] == "upload_folder"


def test_restricted_data_is_refused_a_public_push_before_the_hub_is_asked(stub_hub, tmp_path):
    folder = finished_folder(tmp_path / "mimic", mimic=True)
    with pytest.raises(InputError, match="public repository"):
        push_folder(folder, "someone/mimic", private=False)
    unknown = finished_folder(tmp_path / "raw")
    (unknown / "README.md").write_text("# not a card of ours\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown"):
        push_folder(unknown, "someone/raw", private=False)
    assert stub_hub.calls == []


def test_pickles_training_args_and_working_state_are_never_uploaded(stub_hub, tmp_path):
    folder = finished_folder(tmp_path / "model")
    push_folder(folder, "someone/model", repo_type="model", provenance=Provenance(PUBLIC, "test"))
    patterns = stub_hub.calls[-1][2]
    assert patterns == tuple(NEVER_UPLOADED)
    for name in ("training_args.bin", "sub/training_args.bin", "state.pkl", ".asclepius/ledger.sqlite",
                 "checkpoint-5/optimizer.pt"):  # fmt: skip
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
    assert not any(fnmatch.fnmatch("model.safetensors", pattern) for pattern in patterns)


def test_a_file_holding_a_token_is_never_pushed(stub_hub, tmp_path):
    folder = finished_folder(tmp_path / "model")
    (folder / "notes.txt").write_text("login with hf_" + "a" * 30 + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="notes.txt holds a token"):
        # Private: a file the card does not list is unknown, and refused a public push before this check.
        push_folder(
            folder, "someone/model", repo_type="model", private=True, provenance=Provenance(PUBLIC, "test")
        )
    assert stub_hub.calls == []


def test_working_state_checkpoints_and_pickles_are_excluded_at_every_depth(tmp_path):
    """The exact filter huggingface_hub applies: a nested stage folder's .asclepius/ is not uploaded."""
    from asclepius.stage.files import uploaded_files

    folder = finished_folder(tmp_path / "data")
    kept = ["README.md", "data/default/train-00000-of-00001.parquet", "runs/sft/model.safetensors"]
    excluded = [".asclepius/ledger.sqlite", "runs/sft/.asclepius/lock.json", "runs/sft/.asclepius/staging/rows.parquet",
                "a/b/c/.asclepius/ledger.sqlite", "runs/sft/checkpoint-4/optimizer.pt", "checkpoint-1/model.safetensors",
                "runs/sft/training_args.bin", "x/y/state.pkl", "runs/.tmp.parquet.tmp"]  # fmt: skip
    for name in kept + excluded:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    assert sorted(uploaded_files(folder)) == sorted(kept)


def test_a_token_in_a_nested_stage_folder_is_found_and_one_in_its_working_state_is_not_uploaded(
    stub_hub, tmp_path
):
    folder = finished_folder(tmp_path / "model")
    (folder / "runs" / "sft" / ".asclepius").mkdir(parents=True)
    (folder / "runs" / "sft" / ".asclepius" / "log.txt").write_text("hf_" + "b" * 30)  # never uploaded: fine
    push_folder(folder, "someone/model", repo_type="model", provenance=Provenance(PUBLIC, "test"))
    (folder / "runs" / "sft" / "notes.md").write_text(
        "token hf_" + "c" * 30
    )  # a file the card does not list:
    stub_hub.repo_is_private = True  # unknown, so a private push, where the token is still refused
    with pytest.raises(InputError, match="notes.md holds a token"):
        push_folder(folder, "someone/model", repo_type="model", private=True)


def test_a_dry_run_push_checks_everything_and_contacts_nothing(stub_hub, tmp_path, capsys):
    folder = finished_folder(tmp_path / "data")
    assert push_folder(folder, "someone/data", provenance=Provenance(PUBLIC, "test"), dry_run=True) is None
    assert stub_hub.calls == [] and "would push 1 files" in capsys.readouterr().out
    restricted = finished_folder(tmp_path / "mimic", mimic=True)
    with pytest.raises(InputError, match="public repository"):
        push_folder(restricted, "someone/mimic", dry_run=True)


def test_the_folder_is_classified_again_right_before_the_upload(stub_hub, tmp_path):
    """A public run's provenance does not vouch for MIMIC notes dropped into its folder afterwards."""
    folder = finished_folder(tmp_path / "data")
    (folder / "NOTEEVENTS.csv").write_text(
        "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CATEGORY,TEXT\n1,2,3,2150-01-01,Discharge summary,x\n"
    )
    with pytest.raises(InputError, match="public repository"):
        push_folder(folder, "someone/data", provenance=Provenance(PUBLIC, "the run's inputs"))
    assert stub_hub.calls == []
