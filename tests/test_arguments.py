"""Each script takes only its own flags, lists only those in --help, and fails in one line (exit 2)
on a flag of another stage or a value of the wrong type; --hub_token reaches the push.

The per-stage parsing itself is tested in test_recipes.py; these go through the scripts.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys

import pytest
from test_data_pipeline import ROOT, error_line, run_script, script_env

from asclepius.recipes import STAGES, StageParser, stage_classes


def listed_flags(help_text: str) -> set[str]:
    """The flags a --help lists as options (not those its descriptions mention)."""
    options = [re.match(r"^  (-.*?)(?:\s{2,}|$)", line) for line in help_text.splitlines()]
    return {flag for match in options if match for flag in re.findall(r"--[a-z][\w-]*", match.group(1))}


def help_flags(stage: str) -> set[str]:
    """The flags a stage's --help lists (what ``python scripts/<stage>.py --help`` prints)."""
    return listed_flags(StageParser(stage_classes(stage), stage).format_help())


@pytest.fixture
def env(tmp_path):
    return script_env(tmp_path)


def test_each_stage_lists_only_its_own_flags():
    flags = {stage: help_flags(stage) for stage in STAGES}
    judge_only = {"--judge_model", "--judge_base_url", "--num_shuffles", "--train_dataset", "--inputs"}
    generate_only = {"--device", "--decoding", "--prompt_style", "--model", "--base_url", "--max_tokens"}
    assert judge_only <= flags["judge"] and not judge_only & flags["generate"]
    assert generate_only <= flags["generate"] and not generate_only & flags["judge"]
    engine = {"--base_url", "--model", "--max_concurrency", "--dry_run"}
    assert engine <= flags["make_notes"] and not engine & flags["prepare_mimic"]
    assert {"--deid_style", "--exclude_ids"} <= flags["prepare_mimic"]
    assert not {"--deid_style", "--dedup_threshold", "--test_ratio"} & flags["make_notes"]
    assert "--dedup_threshold" in flags["make_questions"] and "--dedup_threshold" not in flags["make_answers"]
    assert (
        "--prompt_format" in flags["sft"] and not {"--prompt_format", "--answer_column"} & flags["pretrain"]
    )
    assert (
        "--dataset_streaming" not in flags["sft"] | flags["pretrain"]
    )  # notes are deduplicated over the set
    # The data scripts shared one ~255-line help of every stage's flags; now each is its own size.
    assert len(flags["prepare_mimic"]) < 30 < len(flags["make_notes"])
    assert len(flags["generate"] ^ flags["judge"]) > 40


def test_help_of_a_script_is_its_stages():
    process = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "judge.py"), "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    listed = listed_flags(process.stdout)
    assert listed == help_flags("judge") and "--device" not in listed and "--judge_model" in listed


@pytest.mark.parametrize(
    "script, argv, expected",
    [
        ("prepare_mimic.py", ["--base_url", "http://127.0.0.1:9/v1"], "error: --base_url: not a flag of "
         "prepare_mimic; it is a flag of make_notes, make_questions, make_answers"),
        ("generate.py", ["--judge_model", "gpt-4o"], "error: --judge_model: not a flag of generate; it is a flag "
         "of judge"),
        ("make_notes.py", ["--limit", "abc"], "error: --limit: expected an integer, got 'abc'"),
        ("make_answers.py", ["--push_to_hub", "maybe"], "error: --push_to_hub: expected true or false, got 'maybe'"),
    ],
)  # fmt: skip
def test_a_foreign_flag_or_a_wrong_type_is_one_line_exit_2(script, argv, expected, env):
    process = run_script(script, *argv, env=env)
    assert process.returncode == 2
    assert error_line(process).startswith(expected)


def test_a_wrong_type_in_the_recipe_is_one_line_exit_2(tmp_path, env):
    recipe = tmp_path / "data.yaml"
    recipe.write_text("notes_dir: x\nlimit: abc\n")
    process = run_script("make_questions.py", "--config", str(recipe), env=env)
    assert process.returncode == 2
    assert error_line(process) == f"error: {recipe}: limit: 'abc' is a str, expected int or null"


# A stand-in for huggingface_hub.HfApi in the script's process: records each call and the token's
# fingerprint (never the token), contacts nothing.
SITECUSTOMIZE = """
import hashlib, json, os
import huggingface_hub

def record(entry):
    with open(os.environ["TOKEN_STUB_LOG"], "a") as handle:
        handle.write(json.dumps(entry) + "\\n")

class RecordingHfApi:
    def __init__(self, *args, token=None, **kwargs):
        record({"call": "init", "token": hashlib.sha256(token.encode()).hexdigest() if token else None})
    def create_repo(self, repo_id, **kwargs):
        record({"call": "create_repo", "repo_id": repo_id})
        return "https://huggingface.co/" + repo_id
    def repo_info(self, repo_id, **kwargs):
        return type("Info", (), {"private": True})()
    def upload_folder(self, *, repo_id, **kwargs):
        record({"call": "upload_folder", "repo_id": repo_id})
        return "https://huggingface.co/" + repo_id

huggingface_hub.HfApi = RecordingHfApi
"""


def test_sft_hub_token_is_the_token_of_the_push(tmp_path, env, tiny_model_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "hub.jsonl"
    env = {**env, "PYTHONPATH": str(site), "TOKEN_STUB_LOG": str(log)}
    finished = tmp_path / "sft"  # a finished folder: the stage pushes it without training
    shutil.copytree(tiny_model_path, finished)
    token = "hf_" + "x" * 34
    process = run_script(
        "sft.py", "--config", "recipes/tiny/sft/config_full.yaml", "--model_name_or_path", str(tiny_model_path),
        "--output_dir", str(finished), "--dataset_license", "cc0-1.0", "--push_to_hub", "true",
        "--hub_model_id", "someone/sft", "--hub_token", token, env=env,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"call": "init", "token": hashlib.sha256(token.encode()).hexdigest()} in calls
    assert {"call": "upload_folder", "repo_id": "someone/sft"} in calls
    assert token not in process.stdout + process.stderr


def test_one_name_per_idea_across_the_scripts():
    from asclepius.cli import build_parser
    from asclepius.recipes import parse_recipe

    chat = build_parser().parse_args(["chat", "--model_name_or_path", "m", "--max_tokens", "12"])
    assert (chat.model, chat.max_new_tokens) == ("m", 12)  # generate's names work in chat too
    (corpus,) = parse_recipe("prepare_notes", ["--hub_private_repo", "true"])
    (push,) = parse_recipe("push", ["--hub_private_repo", "true"])
    assert corpus.private and push.private
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_dataset_id"):
        parse_recipe("prepare_notes", ["--push_to_hub", "true"])


def test_the_command_line_tools_fail_in_one_line_too():
    process = subprocess.run(
        [sys.executable, "-m", "asclepius.cli", "chat", "--model", "m", "--max_tokens", "many"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert process.returncode == 2
    assert error_line(process) == "error: --max_tokens: expected an integer, got 'many'"
