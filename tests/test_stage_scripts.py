"""Governance and config errors through the scripts, against the test server on 127.0.0.1.

Restricted (or unknown) notes: refused a public push and non-allowed endpoints before any
request or training step; credentials in a URL never recorded; config mistakes, bad inputs
and missing models are one-line errors (exit 2).
"""

from __future__ import annotations

import json

import pytest
from test_data_pipeline import DEMO, error_line, run_script, script_env

from asclepius.stage.files import read_card_metadata
from asclepius.stage.provenance import MIMIC_LICENSE_NAME, mark_mimic_derived
from asclepius.testing import OpenAIServer

NOTEEVENTS = (
    "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CATEGORY,DESCRIPTION,TEXT\n"
    '1,10,100,2150-01-01,Discharge summary,Report,"Admitted with chest pain. Discharged home on aspirin."\n'
    '2,11,101,2150-02-01,Discharge summary,Report,"Admitted with pneumonia. Treated with antibiotics."\n'
)


@pytest.fixture
def env(tmp_path):
    return script_env(tmp_path)


def data_flags(server, *extra: str) -> list[str]:
    return ["--config", "recipes/tiny/data.yaml", "--base_url", server.base_url, "--model", "teacher-test",
            "--show_progress", "false", *extra]  # fmt: skip


def test_raw_noteevents_given_to_make_notes_make_restricted_notes_and_no_public_push(tmp_path, env):
    raw = tmp_path / "NOTEEVENTS.csv"
    raw.write_text(NOTEEVENTS, encoding="utf-8")
    output = tmp_path / "notes"
    columns = [
        "--input",
        str(raw),
        "--text_column",
        "TEXT",
        "--id_column",
        "SUBJECT_ID",
        "--output_dir",
        str(output),
    ]
    with OpenAIServer() as server:
        refused = run_script("make_notes.py", *data_flags(server, *columns, "--push_to_hub", "true",
                                                           "--hub_dataset_id", "someone/notes"), env=env)  # fmt: skip
        assert refused.returncode == 2 and "public repository" in error_line(refused)
        assert len(server.billing) == 0 and not output.exists()  # refused before any work
        made = run_script("make_notes.py", *data_flags(server, *columns), env=env)  # 127.0.0.1 is allowed
        assert made.returncode == 0, made.stderr[-2000:]
    metadata = read_card_metadata(output)
    assert metadata["mimic_derived"] is True and metadata["data_provenance"] == "restricted"
    assert metadata["license_name"] == MIMIC_LICENSE_NAME


def test_restricted_notes_never_go_to_an_endpoint_off_the_allow_list(tmp_path, env):
    mimic = tmp_path / "mimic-notes"
    with OpenAIServer() as server:
        (tmp_path / "NOTEEVENTS.csv").write_text(NOTEEVENTS, encoding="utf-8")
        made = run_script("prepare_mimic.py", "--config", "recipes/tiny/data.yaml", "--input",
                          str(tmp_path / "NOTEEVENTS.csv"), "--output_dir", str(mimic), "--exclude_ids", "none",
                          env=env)  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
        # OPENAI_BASE_URL decides where the client sends when --base_url is absent: it is checked too.
        remote = {
            **env,
            "OPENAI_BASE_URL": "https://user:hunter2@api.openai.com/v1",
            "OPENAI_API_KEY": "sk-test",
        }
        for stage in ("make_questions.py", "make_answers.py"):
            refused = run_script(stage, "--input", str(mimic), "--output_dir", str(tmp_path / stage),
                                 "--show_progress", "false", env=remote)  # fmt: skip
            assert refused.returncode == 2, refused.stderr[-2000:]
            line = error_line(refused)
            assert "restricted" in line and "--allowed_endpoints" in line and "api.openai.com" in line
            assert "hunter2" not in refused.stderr + refused.stdout
        allowed = run_script("make_questions.py", *data_flags(server, "--input", str(mimic),
                             "--output_dir", str(tmp_path / "q")), env=env)  # fmt: skip
        assert allowed.returncode == 0, allowed.stderr[-2000:]
        assert len(server.billing) == 2
    # generate --backend openai and the judge refuse the same way.
    keyed = {**env, "OPENAI_API_KEY": "sk-test"}
    refused = run_script("generate.py", "--backend", "openai", "--base_url", "https://api.openai.com/v1",
                         "--input", str(tmp_path / "q"), "--split", "train", "--output_dir", str(tmp_path / "ans"),
                         env=keyed)  # fmt: skip
    assert refused.returncode == 2 and "--allowed_endpoints" in error_line(refused)
    answers = tmp_path / "mimic-answers"
    mark_mimic_derived(answers)
    (answers / "answers.jsonl").write_text(
        json.dumps({"note": "n", "question": "q", "generated": "a"}) + "\n"
    )
    refused = run_script("judge.py", "--inputs", str(answers / "answers.jsonl"), "--output_dir", str(tmp_path / "r"),
                         "--judge_base_url", "https://api.openai.com/v1", env=keyed)  # fmt: skip
    assert refused.returncode == 2 and "--allowed_endpoints" in error_line(refused)


def test_credentials_in_the_teacher_url_are_never_recorded(tmp_path, env):
    output = tmp_path / "notes"
    with OpenAIServer() as server:
        secret_url = server.base_url.replace("http://", "http://alice:s3cret-pass@")
        made = run_script("make_notes.py", *data_flags(server, "--base_url", secret_url, "--input", str(DEMO),
                          "--limit", "2", "--output_dir", str(output)), env=env)  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
    written = made.stdout + made.stderr
    for path in output.rglob("*"):
        if path.is_file() and path.suffix in {".md", ".json", ".yaml", ".txt"}:
            written += path.read_text(encoding="utf-8", errors="ignore")
    assert "s3cret-pass" not in written and "alice" not in written
    assert "***@127.0.0.1" in (output / "README.md").read_text()


@pytest.mark.parametrize(
    "problem, args, expected",
    [
        ("missing config", ["--config", "nope.yaml"], "nope.yaml: field '--config': no such recipe file"),
        (
            "unknown key",
            ["--config", "{bad_key}"],
            "field 'temperatur': unknown key; did you mean 'temperature'?",
        ),
        ("malformed YAML", ["--config", "{bad_yaml}"], "not valid YAML"),
        (
            "invalid value",
            ["--config", "recipes/tiny/data.yaml", "--limit", "0"],
            "--limit must be >= 1, got 0",
        ),
    ],
)
def test_config_mistakes_are_one_line_errors(tmp_path, env, problem, args, expected):
    bad_key, bad_yaml = tmp_path / "key.yaml", tmp_path / "yaml.yaml"
    bad_key.write_text("temperatur: 0.5\n", encoding="utf-8")
    bad_yaml.write_text("limit: [1\n", encoding="utf-8")
    args = [arg.format(bad_key=bad_key, bad_yaml=bad_yaml) for arg in args]
    process = run_script("make_notes.py", *args, "--output_dir", str(tmp_path / "out"), env=env)
    assert process.returncode == 2, problem
    assert expected in error_line(process), problem


def test_generate_and_training_refuse_unreadable_inputs_and_missing_models_in_one_line(tmp_path, env):
    latin1 = tmp_path / "eval.csv"
    latin1.write_bytes(b'note,question\n"caf\xe9 \xff note",what?\n')
    process = run_script("generate.py", "--input", str(latin1), "--split", "train", "--model", str(tmp_path),
                         "--output_dir", str(tmp_path / "a"), env=env)  # fmt: skip
    assert process.returncode == 2 and str(latin1) in error_line(process)
    process = run_script("pretrain.py", "--config", "recipes/tiny/pretrain/config_full.yaml",
                         "--model_name_or_path", "outputs/tiny-model-absent", "--output_dir", str(tmp_path / "p"),
                         env=env)  # fmt: skip
    assert process.returncode == 2
    assert "outputs/tiny-model-absent" in error_line(process) and "make tiny-model" in error_line(process)
    broken = tmp_path / "notes.jsonl"
    broken.write_text('{"note": "x", "question": \n', encoding="utf-8")
    process = run_script("generate.py", "--input", str(broken), "--split", "train", "--model", str(tmp_path),
                         "--output_dir", str(tmp_path / "b"), env=env)  # fmt: skip
    assert process.returncode == 2 and str(broken) in error_line(process)


def test_training_refuses_a_public_push_of_restricted_data_before_the_first_step(
    tmp_path, env, tiny_model_path
):
    data = tmp_path / "mimic-instructions"
    data.mkdir()
    (data / "train.jsonl").write_text(
        json.dumps({"patient_id": 1, "note": "n", "question": "q", "answer": "a"})
    )
    mark_mimic_derived(data)
    output = tmp_path / "sft"
    process = run_script("sft.py", "--config", "recipes/tiny/sft/config_full.yaml", "--model_name_or_path",
                         str(tiny_model_path), "--dataset_name", str(data), "--output_dir", str(output),
                         "--push_to_hub", "true", "--hub_model_id", "someone/model", env=env)  # fmt: skip
    assert process.returncode == 2 and "public repository" in error_line(process)
    assert not list(output.glob("*.safetensors")) and not list(output.glob("checkpoint-*"))


def test_judge_rejects_generates_endpoint_flags_naming_its_own(tmp_path, env):
    for flag, own in (("--base_url", "--judge_base_url"), ("--model", "--judge_model")):
        process = run_script("judge.py", "--inputs", str(tmp_path), "--output_dir", str(tmp_path / "r"),
                             flag, "http://127.0.0.1:1/v1", env=env)  # fmt: skip
        assert process.returncode == 2 and own in error_line(process)


def test_replicas_log_at_warning_and_the_main_process_at_info():
    import logging

    from asclepius.training.stage import set_log_levels

    class Args:  # what set_log_levels reads of TrainingArguments, for rank `main` or a replica
        log_level = "passive"

        def __init__(self, main: bool):
            self.should_log = main

        def get_process_log_level(self):
            return logging.WARNING if not self.should_log else logging.WARNING  # passive: the library default

    set_log_levels(Args(main=False))
    assert logging.getLogger("asclepius.training").getEffectiveLevel() == logging.WARNING
    set_log_levels(Args(main=True))
    assert logging.getLogger("asclepius.training").getEffectiveLevel() == logging.INFO


def test_merge_refuses_a_public_push_of_an_adapter_of_unknown_provenance_before_merging(tmp_path, env):
    adapter = tmp_path / "adapter"  # a LoRA folder with no card of ours: where it was trained is unknown
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path)}))
    output = tmp_path / "merged"
    process = run_script("merge_adapter.py", "--adapter_dir", str(adapter), "--output_dir", str(output),
                         "--push_to_hub", "true", "--hub_model_id", "someone/merged", env=env)  # fmt: skip
    assert (
        process.returncode == 2
        and "unknown" in error_line(process)
        and "public repository" in error_line(process)
    )
    assert not output.exists()


def test_training_refuses_a_malformed_dataset_in_one_line(tmp_path, env, tiny_model_path):
    broken = tmp_path / "instructions.jsonl"
    broken.write_text('{"patient_id": 1, "note": "n", "question": "q", "answer": \n', encoding="utf-8")
    process = run_script("sft.py", "--config", "recipes/tiny/sft/config_full.yaml", "--model_name_or_path",
                         str(tiny_model_path), "--dataset_name", str(broken), "--output_dir", str(tmp_path / "sft"),
                         env=env)  # fmt: skip
    assert process.returncode == 2 and str(broken) in error_line(process)
