"""The data chain end to end against the OpenAI test server: scripts run as subprocesses.

case reports (demo CSV) -> make_notes -> make_questions -> make_answers, with a responder
that scripts sensible replies (and a few bad ones on purpose: a truncated note, a
question copied from the examples, answers that are questions or talk about the model,
an answer with made-up numbers). Then: the final folder is a drop-in for the published
dataset, cards and plots exist, reruns send nothing, bad input fails in one line.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, load_dataset

from asclepius import prompts
from asclepius.data.stage import load_stage_input
from asclepius.errors import InputError
from asclepius.stage.files import is_finished, read_card_metadata, work_dir
from asclepius.tasks import TASKS
from asclepius.testing import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "case_reports.csv"
PUBLISHED_COLUMNS = ["patient_id", "note", "question", "answer", "task"]


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def long_report_marker() -> str:
    """The opening of demo case report 3: its note is scripted too long (finish_reason length)."""
    with DEMO.open(newline="", encoding="utf-8") as handle:
        return next(row["patient"] for row in csv.DictReader(handle) if row["patient_id"] == "3")[:80]


OPENINGS = [
    "Which",
    "How did",
    "Explain why",
    "List the",
    "When were",
    "Summarize how",
    "Name all",
    "Describe",
]
CLOSINGS = [
    "during the admission",
    "at discharge",
    "in plain words",
    "in the hospital course",
    "",
    "for the team",
]


def scripted_reply(body: dict, marker: str) -> str:
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system == prompts.NOTE_SYSTEM_PROMPT:
        report = between(user, "[Case Report Begin]", "[Case Report End]")
        if report.startswith(marker):
            return "Hospital course: " + "the patient was monitored closely. " * 200
        sentences = re.split(r"(?<=\.)\s+", report)
        return (
            "DISCHARGE SUMMARY\n\nReason for admission: " + sentences[0] + "\n\nHospital course: "
            + " ".join(sentences[1:4]) + "\n\nDischarge plan: follow up with PCP."
        )  # fmt: skip
    if system == prompts.QUESTION_SYSTEM_PROMPT:
        note = between(user, "[Discharge Summary Begin]", "[Discharge Summary End]")
        h = digest(note)
        if h % 6 == 0:  # copy the first example: a near-duplicate of the pool
            return re.search(r"^- (.+)$", user, re.MULTILINE).group(1)
        words = sorted(set(re.findall(r"[a-z]{7,}", note.lower())))
        picks = [words[(h >> shift) % len(words)] for shift in (0, 5, 10)]
        question = f"{OPENINGS[h % 8]} {picks[0]}, {picks[1]} and {picks[2]} {CLOSINGS[(h >> 3) % 6]}".strip()
        return f'Sure! Here is a new instruction:\n1. "{question}?"'
    if system == prompts.ANSWER_SYSTEM_PROMPT:
        note = between(user, "[Discharge Summary Begin]", "[Discharge Summary End]")
        question = between(user, "[Instruction Begin]", "[Instruction End]")
        h = digest(question)
        if h % 9 == 1:
            return "As an AI language model, I cannot read clinical notes."
        if h % 9 == 2:
            return "Do you mean the first admission or the second one?"
        if h % 9 == 3:
            return "The patient received 999 mg on 2999-01-01 and stayed 37 days."
        return "According to the note: " + re.split(r"(?<=\.)\s+", note)[0]
    raise AssertionError(f"unexpected prompt: {system[:60]}")


def script_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HOME=str(tmp / "hf"),
        HF_DATASETS_CACHE=str(tmp / "hf" / "datasets"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        WANDB_DIR=str(tmp / "wandb"),
        TRACKIO_DIR=str(tmp / "trackio"),
        TOKENIZERS_PARALLELISM="false",
    )
    env.pop("OPENAI_API_KEY", None)
    return env


def run_script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_line(process: subprocess.CompletedProcess) -> str:
    """The stage's stderr, asserted to be exactly one 'error: ...' line."""
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


class Chain:
    def __init__(self, tmp: Path, server: OpenAIServer):
        self.tmp, self.server, self.env = tmp, server, script_env(tmp)
        self.notes, self.questions, self.instructions = tmp / "notes", tmp / "questions", tmp / "instructions"

    def flags(self, stage: str, *extra: str) -> list[str]:
        # Each stage takes the folders it reads and writes, no other (an unused flag is an error).
        folders = {
            "notes": ("notes",),
            "questions": ("notes", "questions"),
            "answers": ("questions", "instructions"),
        }
        paths = {"notes": self.notes, "questions": self.questions, "instructions": self.instructions}
        return [
            "--config", "recipes/tiny/data.yaml",
            "--base_url", self.server.base_url,
            "--model", "teacher-test",
            "--max_tokens", "1000",
            "--keep_truncated", "false",
            *[flag for name in folders[stage] for flag in (f"--{name}_dir", str(paths[name]))],
            "--show_progress", "false",
            *extra,
        ]  # fmt: skip

    def run(self, stage: str, *extra: str) -> subprocess.CompletedProcess:
        process = run_script(f"make_{stage}.py", *self.flags(stage, *extra), env=self.env)
        assert process.returncode == 0, process.stderr[-3000:]
        return process


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    marker = long_report_marker()
    with OpenAIServer(responder=lambda body: scripted_reply(body, marker)) as server:
        chain = Chain(tmp, server)
        for stage in ("notes", "questions", "answers"):
            chain.run(stage)
        yield chain


def test_final_folder_is_a_drop_in_for_the_published_dataset(chain):
    dataset = load_dataset(str(chain.instructions), cache_dir=str(chain.tmp / "load"))
    assert set(dataset) == {"train", "test"}
    for split in dataset.values():
        assert split.column_names == PUBLISHED_COLUMNS
        assert split.features["patient_id"].dtype == "int64"
    rows = [row for split in dataset.values() for row in split]
    assert {row["task"] for row in rows} == set(TASKS)
    assert not set(dataset["train"]["patient_id"]) & set(dataset["test"]["patient_id"])
    assert len(dataset["test"]) > 0
    assert not any(row["answer"].rstrip().endswith("?") for row in rows)
    assert not any("language model" in row["answer"].lower() for row in rows)


def test_notes_carry_ids_and_provenance_and_flag_truncation(chain):
    notes = load_dataset(str(chain.notes), cache_dir=str(chain.tmp / "load"))["train"]
    annotated = load_dataset(str(chain.notes), "annotated", cache_dir=str(chain.tmp / "load"))["train"]
    assert notes.column_names[:4] == ["patient_id", "patient_uid", "case_report", "note"]
    assert {"teacher_model", "prompt_hash", "finish_reason", "prompt_tokens", "completion_tokens"} <= set(
        notes.column_names
    )
    assert len(annotated) == 33 and len(notes) == 32
    truncated = annotated.filter(lambda row: row["drop_reason"] is not None)
    assert truncated["patient_id"] == [3] and truncated["drop_reason"] == ["truncated"]
    assert annotated["patient_id"] == sorted(annotated["patient_id"])  # input order, not completion order
    assert set(notes["teacher_model"]) == {"teacher-test"}
    assert set(notes["prompt_hash"]) == {prompts.NOTE_PROMPT_HASH}


def test_questions_are_clean_and_near_duplicates_dropped(chain):
    annotated = load_dataset(str(chain.questions), "annotated", cache_dir=str(chain.tmp / "load"))["train"]
    kept = load_dataset(str(chain.questions), cache_dir=str(chain.tmp / "load"))["train"]
    assert kept.column_names == ["patient_id", "note", "task", "question"]
    assert "near_duplicate" in annotated["drop_reason"]
    assert all(not q.startswith(("Sure", "1.", '"')) and q.endswith("?") for q in kept["question"])
    assert len(kept) == annotated["drop_reason"].count(None)


def test_cards_hold_metadata_counts_and_quality_plots(chain):
    for folder in (chain.notes, chain.questions, chain.instructions):
        metadata = read_card_metadata(folder)
        assert metadata["license"] == "cc0-1.0"  # declared in the tiny recipe
        assert {"synthetic", "clinical"} <= set(metadata["tags"])
        assert metadata["language"] == ["en"] and metadata["size_categories"] == ["n<1K"]
        assert metadata["task_categories"] and metadata["mimic_derived"] is False
        configs = ["default", "annotated"] + (["prompt_completion"] if folder == chain.instructions else [])
        assert [c["config_name"] for c in metadata["configs"]] == configs
        assert (folder / "quality" / "lengths.png").read_bytes()[:4] == b"\x89PNG"
        card = (folder / "README.md").read_text()
        assert "teacher-test" in card and "2309.00237" in card and "zhao2023pmcpatients" in card
    card = (chain.instructions / "README.md").read_text()
    for reason in ("self_reference", "answer_is_question"):
        assert f"`{reason}`" in card
    assert prompts.ANSWER_PROMPT_HASH in card and prompts.QUESTION_PROMPT_HASH in card
    assert prompts.NOTE_PROMPT_HASH in card  # the upstream stages travel in the card
    assert (chain.instructions / "quality" / "tasks.png").exists()
    annotated = load_dataset(str(chain.instructions), "annotated", cache_dir=str(chain.tmp / "load"))
    flagged = [row for split in annotated.values() for row in split if row["ungrounded_values"]]
    assert flagged and all("999 mg" in row["ungrounded_values"] for row in flagged)


def test_reruns_send_nothing(chain):
    billed = len(chain.server.billing)
    # A finished stage says so and exits 0.
    finished = chain.run("notes")
    assert "already finished" in finished.stdout
    # --overwrite rebuilds questions from the ledger, although pool-dependent prompts differ.
    before = load_dataset(str(chain.questions), "annotated", cache_dir=str(chain.tmp / "a"))["train"]
    chain.run("questions", "--overwrite", "true")
    after = load_dataset(str(chain.questions), "annotated", cache_dir=str(chain.tmp / "b"))["train"]
    assert after["raw_question"] == before["raw_question"]
    # An unfinished stage (no card) resumes from its ledger.
    (chain.instructions / "README.md").unlink()
    chain.run("answers")
    assert is_finished(chain.instructions)
    assert len(chain.server.billing) == billed
    assert not chain.server.billing.double_billed()


def test_dry_run_sends_and_writes_nothing(chain, tmp_path):
    billed = len(chain.server.billing)
    output = tmp_path / "dry-notes"
    process = chain.run("notes", "--dry_run", "true", "--output_dir", str(output), "--limit", "5")
    assert "dry run" in process.stderr and "5 to send" in process.stderr
    assert len(chain.server.billing) == billed
    assert not is_finished(output) and not (output / "data").exists()


def test_missing_text_column_fails_in_one_line(chain, tmp_path):
    bad = tmp_path / "PMC-Patients.csv"
    bad.write_text("patient_id,patient_uid,title\n1,1-1,A case\n", encoding="utf-8")
    output = tmp_path / "notes"
    process = run_script(
        "make_notes.py",
        *chain.flags("notes", "--input", str(bad), "--output_dir", str(output)),
        env=chain.env,
    )
    assert process.returncode == 2
    assert (
        error_line(process)
        == f"error: {bad}: field 'patient': missing column; found ['patient_id', 'patient_uid', 'title'] (choose another with --text_column)"
    )
    assert not (output / "README.md").exists()


def test_unknown_task_label_fails_in_one_line(chain, tmp_path):
    questions = tmp_path / "questions.parquet"
    Dataset.from_dict(
        {
            "patient_id": [1, 2],
            "note": ["Note one.", "Note two."],
            "question": ["Q1?", "Q2?"],
            "task": ["Summarization", "Diagnosis"],
        }
    ).to_parquet(str(questions))
    output = tmp_path / "answers"
    process = run_script(
        "make_answers.py",
        *chain.flags("answers", "--input", str(questions), "--output_dir", str(output)),
        env=chain.env,
    )
    assert process.returncode == 2
    line = error_line(process)
    assert line.startswith(f"error: {questions}: row 2: field 'task': unknown task label 'Diagnosis'")
    assert not (output / "README.md").exists()


def test_notes_folder_without_note_column_is_refused(tmp_path):
    folder = tmp_path / "notes"
    (folder / "data").mkdir(parents=True)
    Dataset.from_dict({"patient_id": [1], "text": ["x"]}).to_parquet(str(folder / "data" / "train.parquet"))
    with pytest.raises(InputError, match="field 'note': missing column"):
        load_stage_input(str(folder), ["patient_id", "note"])


def test_unfinished_input_folder_is_refused(chain, tmp_path):
    folder = tmp_path / "half-written"
    work_dir(folder)
    (folder / "data").mkdir()
    with pytest.raises(InputError, match="unfinished"):
        load_stage_input(str(folder), ["note"])


def test_empty_splits_are_left_out_and_an_empty_default_config_stops_the_stage(tmp_path):
    from asclepius.data.stage import DatasetStage

    stage = DatasetStage(tmp_path / "out")
    rows = Dataset.from_dict({"patient_id": [1, 2], "note": ["a", "b"]})
    written, entries = stage.write_configs({"default": {"train": rows, "test": rows.select([])}})
    assert list(written["default"]) == ["train"]
    assert entries[0]["data_files"] == [{"split": "train", "path": "data/default/train-*.parquet"}]

    empty = DatasetStage(tmp_path / "empty")
    with pytest.raises(
        InputError, match=r"no usable rows: every row was dropped \(empty: 2\); .* data/annotated/"
    ):
        empty.write_configs(
            {"default": {"train": rows.select([])}, "annotated": {"train": rows}}, drops={"empty": 2}
        )
    assert (tmp_path / "empty" / "data" / "annotated").is_dir() and not is_finished(tmp_path / "empty")


def test_trl_alone_trains_on_the_prompt_completion_config(chain, tiny_model_path):
    """TRL's own CLI, nothing of ours: `trl sft --dataset_config prompt_completion` for 2 steps on the tiny model."""
    pairs = load_dataset(str(chain.instructions), "prompt_completion", cache_dir=str(chain.tmp / "load"))
    rows = load_dataset(str(chain.instructions), cache_dir=str(chain.tmp / "load"))
    assert set(pairs) == set(rows) and pairs["train"].column_names == ["prompt", "completion"]
    first = rows["train"][0]
    assert pairs["train"][0] == {
        "prompt": prompts.render_training_prompt(
            first["note"], first["question"]
        ),  # the card's prompt_format
        "completion": first["answer"],
    }
    assert "--dataset_config prompt_completion" in (chain.instructions / "README.md").read_text()
    trl = Path(sys.executable).with_name("trl")
    output = chain.tmp / "trl-sft"
    process = subprocess.run(
        [str(trl), "sft", "--model_name_or_path", str(tiny_model_path), "--dataset_name", str(chain.instructions),
         "--dataset_config", "prompt_completion", "--output_dir", str(output), "--max_steps", "2",
         "--per_device_train_batch_size", "2", "--max_length", "1024", "--use_cpu", "true", "--bf16", "false",
         "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1", "--dataloader_num_workers", "0"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    assert (output / "model.safetensors").exists()
    assert "'train_loss'" in process.stdout + process.stderr  # TRL logged the 2 steps it trained
