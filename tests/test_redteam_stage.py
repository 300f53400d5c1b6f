"""Red team of the stage-folder routes: each test tries, through the scripts, what an attacker or a
careless user would, and checks that nothing finished is replaced, nothing is deleted before every
check passed, nothing is sent by a dry run, and nothing restricted or private is uploaded.

The Hub is a stub (:mod:`asclepius.testing.hub_stub`) that records what would be created and
uploaded; the model endpoints are the project's test server on 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from test_data_pipeline import ROOT, error_line, run_script, script_env
from test_evaluation_expert import answers, scorer

from asclepius.stage import RESTRICTED, Provenance
from asclepius.testing import OpenAIServer, hub_stub

NOTEEVENTS = (
    "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CATEGORY,TEXT\n"
    '1,10,100,2150-01-01,Discharge summary,"Admitted with chest pain. Discharged home."\n'
)


@pytest.fixture
def env(tmp_path):
    environment = hub_stub.script_env(tmp_path, script_env(tmp_path))
    environment.pop("AZURE_OPENAI_ENDPOINT", None)
    return environment


def last_error(process) -> str:
    """The one-line error a script ends with (after any log lines), and no traceback."""
    assert "Traceback" not in process.stderr, process.stderr[-3000:]
    line = process.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), process.stderr[-3000:]
    return line


def uploads(env) -> list[dict]:
    return [call for call in hub_stub.calls(env) if call["call"] == "upload_folder"]


def snapshot(folder) -> dict[str, bytes]:
    """Every file of a folder but its working state, by relative path."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".asclepius" not in path.parts
    }


def evaluation_set(tmp_path):
    path = tmp_path / "eval.jsonl"
    rows = [{"patient_id": k, "note": f"Note {k}: treated for condition {k}.", "question": f"What ({k})?",
             "answer": f"Condition {k}."} for k in range(3)]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def corpus(tmp_path, *, bad_row: bool = False):
    path = tmp_path / ("bad.csv" if bad_row else "notes.csv")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["note_id", "text"])
        for k in range(3):
            writer.writerow([k, "" if bad_row and k == 2 else f"Patient {k} admitted and discharged home."])
    return path


@pytest.fixture(scope="module")
def finished_notes(tmp_path_factory):
    """A finished public notes folder (prepare_notes on a 3-note CC0 CSV), copied by each test that needs one."""
    root = tmp_path_factory.mktemp("finished-notes")
    process = prepare_notes(script_env(root), corpus(root), root / "notes")
    assert process.returncode == 0, process.stderr[-2000:]
    return root / "notes"


def prepare_notes(env, source, output, *extra: str):
    return run_script("prepare_notes.py", "--input", str(source), "--text_column", "text", "--id_column", "note_id",
                      "--source", "clinic", "--source_license", "cc0-1.0", "--source_restricted", "false",
                      "--output_dir", str(output), *extra, env=env)  # fmt: skip


def generate(server, tmp_path, output, env, *extra: str):
    return run_script("generate.py", "--config", "recipes/tiny/eval.yaml", "--input", str(evaluation_set(tmp_path)),
                      "--split", "train", "--test_ratio", "0", "--backend", "openai", "--base_url", server.base_url,
                      "--model", "cand-a", "--output_dir", str(output), "--show_progress", "false", *extra,
                      env=env)  # fmt: skip


def test_generate_never_replaces_a_finished_folder_and_overwrite_checks_every_flag_first(tmp_path, env):
    output = tmp_path / "answers"
    with OpenAIServer() as server:
        made = generate(server, tmp_path, output, env)
        assert made.returncode == 0, made.stderr[-2000:]
        finished, billed = snapshot(output), len(server.billing)
        # Another model's answers onto the finished folder: nothing changes, nothing is paid for.
        other = generate(server, tmp_path, output, env, "--model", "cand-b")
        assert other.returncode == 0 and "already finished" in other.stdout
        assert snapshot(output) == finished and len(server.billing) == billed
        # --overwrite with a flag the run would fail on: refused in one line, the folder intact.
        for flags, expected in (
            (["--base_url", "http://127.0.0.1:99999/v1"], "port"),
            (["--base_url", "", "--azure_api_version", "2024-06-01"], "--azure_api_version"),
        ):
            # The Azure endpoint from the environment (allowed: 127.0.0.1), but --base_url missing.
            azure = {**env, "AZURE_OPENAI_ENDPOINT": server.base_url}
            refused = generate(
                server, tmp_path, output, azure, "--overwrite", "true", "--model", "cand-b", *flags
            )
            assert refused.returncode == 2 and expected in error_line(refused).lower()
            assert snapshot(output) == finished and len(server.billing) == billed
        rebuilt = generate(server, tmp_path, output, env, "--overwrite", "true", "--model", "cand-b")
        assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert "cand-b" in (output / "README.md").read_text()


def test_a_local_dry_run_loads_no_model_and_writes_nothing(tmp_path, env, tiny_model_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_path, model)
    (model / "model.safetensors").write_bytes(b"not weights")  # loading them would fail
    output = tmp_path / "answers"
    process = run_script("generate.py", "--config", "recipes/tiny/eval.yaml", "--input", str(evaluation_set(tmp_path)),
                         "--split", "train", "--test_ratio", "0", "--model", str(model), "--output_dir", str(output),
                         "--dry_run", "true", env=env)  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    assert "dry run: 3 rows" in process.stdout and not output.exists()


def test_the_judge_never_replaces_a_finished_report_and_checks_its_azure_flags_first(tmp_path, env):
    inputs = [answers(tmp_path, "good", "GOOD"), answers(tmp_path, "poor", "POOR")]
    report = tmp_path / "report"

    def judge(server, *extra: str, env=env):
        return run_script("judge.py", "--config", "recipes/tiny/eval.yaml", "--inputs", *inputs,
                          "--output_dir", str(report), "--judge_base_url", server.base_url, "--judge_model", "judge",
                          "--train_dataset", "", "--include_reference", "false", "--bootstrap_samples", "20",
                          "--show_progress", "false", *extra, env=env)  # fmt: skip

    with OpenAIServer(responder=scorer) as server:
        assert judge(server).returncode == 0
        finished, billed = snapshot(report), len(server.billing)
        again = judge(server, "--judge_model", "another-judge", "--num_shuffles", "1")
        assert again.returncode == 0 and "already finished" in again.stdout
        refused = judge(
            server,
            "--overwrite",
            "true",
            "--judge_base_url",
            "",
            "--judge_azure_api_version",
            "2024-06-01",
            env={**env, "AZURE_OPENAI_ENDPOINT": server.base_url},
        )
        assert refused.returncode == 2 and "--judge_azure_api_version" in error_line(refused)
        assert snapshot(report) == finished and len(server.billing) == billed


def fake_adapter(tmp_path, base) -> str:
    """A LoRA adapter folder with no card of ours (its provenance is unknown)."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    return str(adapter)


def test_merge_never_overwrites_a_finished_model_folder_and_a_failed_push_can_be_redone(
    tmp_path, env, tiny_model_path
):
    finished = tmp_path / "sft"
    shutil.copytree(tiny_model_path, finished)  # a finished model folder: it has its card
    before = snapshot(finished)
    adapter = fake_adapter(tmp_path, tiny_model_path)
    # Merging onto it and pushing it publicly: nothing merged, and the adapter's provenance is
    # unknown, so the push is refused before the Hub is asked.
    flags = ["--adapter_dir", adapter, "--output_dir", str(finished), "--push_to_hub", "true",
             "--hub_model_id", "someone/merged"]  # fmt: skip
    refused = run_script("merge_adapter.py", *flags, env=env)
    assert refused.returncode == 2 and "public repository" in last_error(refused)
    assert hub_stub.calls(env) == [] and snapshot(finished) == before
    private = {**env, hub_stub.PRIVATE_ENV: "1"}
    pushed = run_script("merge_adapter.py", *flags, "--hub_private_repo", "true", env=private)
    assert pushed.returncode == 0 and "already finished" in pushed.stdout, pushed.stderr[-2000:]
    (upload,) = uploads(env)
    assert upload["repo_id"] == "someone/merged" and "model.safetensors" in upload["files"]
    assert snapshot(finished) == before


def test_a_finished_training_folder_is_pushed_when_asked_and_restricted_data_is_still_refused(
    tmp_path, env, tiny_model_path
):
    finished = tmp_path / "sft"
    shutil.copytree(tiny_model_path, finished)
    flags = ["--config", "recipes/tiny/sft/config_full.yaml", "--model_name_or_path", str(tiny_model_path),
             "--output_dir", str(finished), "--push_to_hub", "true", "--hub_model_id", "someone/sft"]  # fmt: skip
    raw = tmp_path / "NOTEEVENTS.csv"
    raw.write_text(NOTEEVENTS, encoding="utf-8")
    refused = run_script("sft.py", *flags, "--dataset_name", str(raw), env=env)
    assert refused.returncode == 2 and "public repository" in last_error(refused)
    assert hub_stub.calls(env) == []
    pushed = run_script("sft.py", *flags, "--dataset_license", "cc0-1.0", env=env)  # the demo notes are CC0
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    (upload,) = uploads(env)
    assert upload["repo_id"] == "someone/sft" and "README.md" in upload["files"]


def test_push_script_excludes_working_state_at_every_depth_and_reclassifies_right_before_upload(
    tmp_path, env, finished_notes
):
    folder = tmp_path / "notes"
    shutil.copytree(finished_notes, folder)
    nested = folder / "extra" / "run"  # a stage folder nested in the pushed one
    for path in (nested / ".asclepius" / "ledger.sqlite", nested / "checkpoint-2" / "optimizer.pt",
                 folder / ".asclepius" / "staging" / "rows.parquet", nested / "training_args.bin"):  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"private state")
    dry = run_script(
        "push.py", "--folder", str(folder), "--repo_id", "someone/notes", "--dry_run", "true", env=env
    )
    assert dry.returncode == 0 and "dry run" in dry.stdout and hub_stub.calls(env) == []
    pushed = run_script("push.py", "--folder", str(folder), "--repo_id", "someone/notes", env=env)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    (upload,) = uploads(env)
    assert upload["repo_type"] == "dataset" and "README.md" in upload["files"]
    leaked = [f for f in upload["files"] if ".asclepius" in f or "checkpoint-" in f or f.endswith(".bin")]
    assert not leaked, leaked
    # MIMIC notes dropped into the finished public folder afterwards: it is not public any more.
    (folder / "extra" / "NOTEEVENTS.csv").write_text(NOTEEVENTS, encoding="utf-8")
    refused = run_script("push.py", "--folder", str(folder), "--repo_id", "someone/notes", env=env)
    assert refused.returncode == 2 and "public repository" in error_line(refused)
    assert len(hub_stub.calls(env)) == 2  # create_repo + upload_folder of the first push only


def test_a_data_stage_rerun_with_push_flags_pushes_its_finished_folder(tmp_path, env, finished_notes):
    folder = tmp_path / "notes"
    shutil.copytree(finished_notes, folder)
    pushed = prepare_notes(
        env, corpus(tmp_path), folder, "--push_to_hub", "true", "--hub_dataset_id", "someone/n"
    )
    assert pushed.returncode == 0 and "already finished" in pushed.stdout, pushed.stderr[-2000:]
    assert [u["repo_id"] for u in uploads(env)] == ["someone/n"]


def test_overwrite_reads_every_row_before_it_deletes_and_a_corrupt_parquet_is_one_line(
    tmp_path, env, finished_notes
):
    folder = tmp_path / "notes"
    shutil.copytree(finished_notes, folder)
    finished = snapshot(folder)
    refused = prepare_notes(env, corpus(tmp_path, bad_row=True), folder, "--overwrite", "true")
    assert refused.returncode == 2 and "row" in error_line(refused)
    assert snapshot(folder) == finished
    corrupt = tmp_path / "notes.parquet"
    corrupt.write_bytes(b"PAR1" + b"\0" * 64)
    for process in (
        prepare_notes(env, corrupt, tmp_path / "other"),
        run_script("make_questions.py", "--config", "recipes/tiny/data.yaml", "--input", str(corrupt),
                   "--output_dir", str(tmp_path / "questions"), "--base_url", "http://127.0.0.1:9/v1", env=env),
    ):  # fmt: skip
        assert process.returncode == 2 and str(corrupt) in error_line(process)


def test_a_dry_run_contacts_nothing_not_even_the_hub(tmp_path, env):
    output = tmp_path / "notes"
    with OpenAIServer() as server:
        process = run_script("make_notes.py", "--config", "recipes/tiny/data.yaml", "--base_url", server.base_url,
                             "--model", "teacher", "--input", str(ROOT / "data" / "demo" / "case_reports.csv"),
                             "--output_dir", str(output), "--limit", "2", "--dry_run", "true", "--push_to_hub", "true",
                             "--hub_dataset_id", "someone/notes", "--show_progress", "false", env=env)  # fmt: skip
        assert process.returncode == 0, process.stderr[-2000:]
        assert len(server.billing) == 0
    assert hub_stub.calls(env) == [] and not output.exists()


def test_rater_packets_of_restricted_answers_say_so_in_every_file_a_rater_gets(tmp_path, env):
    from datasets import Dataset

    from asclepius.evaluation.folders import with_answers, write_answers_folder

    inputs = []
    for name in ("a", "b"):
        rows = [{"patient_id": k, "note": f"Note {k}.", "question": f"Q {k}?", "answer": "x", "task": "summary"}
                for k in range(4)]  # fmt: skip
        write_answers_folder(tmp_path / name, with_answers(Dataset.from_list(rows), name, [f"{name} {k}" for k in range(4)]),
                             split="test", provenance={"model": name, "backend": "transformers", "source": "mimic",
                                                       "split": "test", "prompt_style": "asclepius", "prompt_hash": "x"},
                             origin=Provenance(RESTRICTED, "MIMIC-III notes", "NOTEEVENTS.csv"))  # fmt: skip
        inputs.append(str(tmp_path / name))
    output = tmp_path / "expert"
    process = run_script("expert_eval.py", "export", "--inputs", *inputs, "--output_dir", str(output), "--raters", "1",
                         "--items", "4", env=env)  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    packet = output / "packets" / "rater_1"
    assert "RESTRICTED DATA" in (packet / "packet.md").read_text().split("## Item")[0]
    with (packet / "ratings.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all("RESTRICTED DATA" in row["notice"] for row in rows)
    records = [json.loads(line) for line in (packet / "ratings.jsonl").read_text().splitlines()]
    assert records and all("RESTRICTED DATA" in record["notice"] for record in records)


def test_a_max_length_that_leaves_no_training_row_is_one_line(tmp_path, env, tiny_model_path):
    process = run_script("sft.py", "--config", "recipes/tiny/sft/config_full.yaml", "--model_name_or_path",
                         str(tiny_model_path), "--output_dir", str(tmp_path / "sft"), "--max_length", "8",
                         "--max_steps", "1", "--report_to", "none", env=env)  # fmt: skip
    assert process.returncode == 2 and "--max_length" in last_error(process)
