"""The engine through the data scripts: batch = sync rows, teachers never mixed, the cap, dry runs."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from asclepius import prompts
from asclepius.testing import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "fever cough anemia sepsis renal hepatic cardiac dyspnea edema insulin warfarin stroke biopsy lesion "
    "tumor fracture"
).split()


def reply(body: dict) -> str:
    """Deterministic per (model, messages): another teacher writes other text."""
    system = body["messages"][0]["content"]
    rng = random.Random(hashlib.sha256(f"{body.get('model')}{body['messages']}".encode()).hexdigest())
    if system == prompts.NOTE_SYSTEM_PROMPT:
        return "DISCHARGE SUMMARY\n\nHospital course: " + " ".join(rng.choice(WORDS) for _ in range(40)) + "."
    if system == prompts.QUESTION_SYSTEM_PROMPT:
        return "What " + " ".join(rng.sample(WORDS, 6)) + "?"
    return "Answer: " + " ".join(rng.choice(WORDS) for _ in range(10))


class Scripts:
    def __init__(self, tmp: Path, server: OpenAIServer):
        self.tmp, self.server = tmp, server
        self.env = {
            **os.environ,
            "HF_HOME": str(tmp / "hf"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
        self.env.pop("OPENAI_API_KEY", None)
        # The chain's folders, named in a recipe as a user would: each stage takes its own keys.
        recipe = yaml.safe_load((ROOT / "recipes/tiny/data.yaml").read_text())
        recipe.update(notes_dir=str(tmp / "notes"), questions_dir=str(tmp / "questions"))
        self.recipe = tmp / "data.yaml"
        self.recipe.write_text(yaml.safe_dump(recipe))

    def run(self, stage: str, *extra: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable, str(ROOT / "scripts" / f"make_{stage}.py"),
            "--config", str(self.recipe),
            "--base_url", self.server.base_url,
            "--model", "teacher-a",
            "--limit", "6",
            "--show_progress", "false",
            "--batch_poll_seconds", "0.05",
            *extra,
        ]  # fmt: skip
        return subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)

    def ok(self, stage: str, *extra: str) -> subprocess.CompletedProcess:
        process = self.run(stage, *extra)
        assert process.returncode == 0, process.stderr[-3000:]
        return process


def rows(folder: Path) -> list[dict]:
    files = sorted((folder / "data").rglob("*.parquet"))
    assert files, f"no parquet under {folder}"
    return [row for path in files for row in pq.read_table(path).to_pylist()]


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stages")
    with OpenAIServer(responder=reply, batch_requests_per_poll=2) as server:
        scripts = Scripts(tmp, server)
        scripts.ok("notes")
        yield scripts


def test_batch_notes_equal_sync_notes(scripts):
    billed = len(scripts.server.billing)
    out = scripts.tmp / "notes-batch"
    process = scripts.ok("notes", "--backend", "batch", "--notes_dir", str(out))
    new = scripts.server.billing.records()[billed:]
    assert len(new) == 6 and all(record["batch"] for record in new)
    assert "created in 1 round(s)" in process.stderr
    sync_rows, batch_rows = rows(scripts.tmp / "notes"), rows(out)
    assert sorted(r["note"] for r in sync_rows) == sorted(r["note"] for r in batch_rows)
    assert (out / "README.md").exists()


def test_questions_rerun_with_another_teacher_sends_new_requests(scripts):
    server = scripts.server
    scripts.ok("questions", "--model", "teacher-a")
    first = rows(scripts.tmp / "questions")
    assert {r["teacher_model"] for r in first if "teacher_model" in r} == {"teacher-a"}
    start = len(server.billing)
    scripts.ok("questions", "--model", "teacher-b", "--overwrite", "true")
    new = server.billing.records()[start:]
    assert len(new) == 6 and {record["model"] for record in new} == {"teacher-b"}
    second = rows(scripts.tmp / "questions")
    assert {r["teacher_model"] for r in second if "teacher_model" in r} == {"teacher-b"}
    assert {r["question"] for r in second} != {r["question"] for r in first}
    start = len(server.billing)  # same teacher, other temperature: new requests too
    scripts.ok("questions", "--model", "teacher-b", "--temperature", "0.3", "--overwrite", "true")
    assert {record["temperature"] for record in server.billing.records()[start:]} == {0.3}
    assert len(server.billing) - start == 6
    start = len(server.billing)  # the same command again: everything from the ledger
    scripts.ok("questions", "--model", "teacher-b", "--temperature", "0.3", "--overwrite", "true")
    assert len(server.billing) == start


def test_questions_card_states_batch_rounds_and_the_frozen_pool(scripts):
    """Batch mode changes what the growing pool can show; the card must say so."""
    out = scripts.tmp / "questions-batch"
    scripts.ok("questions", "--backend", "batch", "--batch_round_size", "3", "--questions_dir", str(out))
    card = (out / "README.md").read_text()
    assert "batch_rounds: 2" in card and "frozen within a round" in card
    sync_card = scripts.tmp / "questions" / "README.md"
    if sync_card.exists():
        assert "batch_rounds" not in sync_card.read_text()


def test_budget_cap_exits_in_one_line_and_a_higher_cap_resumes(scripts):
    out = scripts.tmp / "notes-capped"
    prices = [
        "--input_price_per_million",
        "100",
        "--output_price_per_million",
        "100",
        "--max_tokens",
        "100",
    ]
    start = len(scripts.server.billing)
    process = scripts.run(
        "notes", "--notes_dir", str(out), "--max_budget_usd", "0.2", "--max_concurrency", "1", *prices
    )
    assert process.returncode == 2, process.stderr[-2000:]
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --max_budget_usd") and "higher --max_budget_usd" in last
    paid = len(scripts.server.billing) - start
    assert 0 < paid < 6 and not (out / "README.md").exists(), process.stderr[-1500:]
    scripts.ok("notes", "--notes_dir", str(out), "--max_budget_usd", "100", *prices)
    new = scripts.server.billing.records()[start:]
    assert len(new) == 6 and len({record["hash"] for record in new}) == 6  # each note paid once


def test_dry_run_creates_nothing_in_the_output_folder(scripts):
    out = scripts.tmp / "notes-dry"
    process = scripts.ok("notes", "--notes_dir", str(out), "--dry_run", "true", "--model", "gpt-4o-mini")
    assert not out.exists()
    assert (
        "synchronous" in process.stderr + process.stdout
        and "--backend batch" in process.stderr + process.stdout
    )


def test_every_llm_stage_takes_backend_batch():
    """Data stages through EngineArguments; generate and the judge through evaluation's --backend."""
    from asclepius.recipes import parse_recipe

    for stage in ("make_notes", "make_questions", "make_answers"):
        _, engine_args = parse_recipe(stage, ["--backend", "batch"])
        assert engine_args.batch
    args, engine_args = parse_recipe("generate", ["--backend", "batch"])
    assert args.engine_arguments(engine_args).batch
    args, engine_args = parse_recipe("judge", ["--backend", "batch"])
    assert args.judge_engine_arguments(engine_args).batch
    args, engine_args = parse_recipe("judge", ["--backend", "openai"])
    assert not args.judge_engine_arguments(engine_args).batch


def judge_and_answer(body: dict) -> str:
    """Answers for generate; for the judge, 4 for cand-a's answers and 2 for the others."""
    import re

    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    answers = re.findall(r"\[Answer ([A-Z]) Begin\]\n(.*?)\n\[Answer \1 End\]", user, re.S)
    if not answers:
        return f"{body['model']} says: " + reply(body)
    return " ".join("4" if text.startswith("cand-a") else "2" for _, text in answers) + "\nreasons"


def test_judge_batch_report_equals_sync_report(tmp_path):
    import json

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("OPENAI_API_KEY", None)

    def script(name: str, *flags: str) -> None:
        command = [sys.executable, str(ROOT / "scripts" / name), "--config", "recipes/tiny/eval.yaml",
                   "--show_progress", "false", "--batch_poll_seconds", "0.05", *flags]  # fmt: skip
        process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, process.stderr[-3000:]

    with OpenAIServer(responder=judge_and_answer) as server:
        folders = []
        for model in ("cand-a", "cand-b"):
            folders.append(str(tmp_path / model))
            # cand-b answers through the Batch API: its requests must be billed as batch requests.
            backend = "openai" if model == "cand-a" else "batch"
            start = len(server.billing)
            script("generate.py", "--backend", backend, "--base_url", server.base_url, "--model", model,
                   "--max_samples", "4", "--output_dir", folders[-1])  # fmt: skip
            records = server.billing.records()[start:]
            assert records and all(bool(r.get("batch")) == (backend == "batch") for r in records)
        reports = {}
        for backend in ("openai", "batch"):
            start = len(server.billing)
            script("judge.py", "--backend", backend, "--inputs", *folders, "--judge_base_url", server.base_url,
                   "--judge_model", "judge", "--output_dir", str(tmp_path / backend), "--train_dataset", "",
                   "--include_reference", "false", "--bootstrap_samples", "50")  # fmt: skip
            records = server.billing.records()[start:]
            assert records and all(bool(r.get("batch")) == (backend == "batch") for r in records)
            reports[backend] = json.loads((tmp_path / backend / "results.json").read_text())["models"]
    assert reports["batch"] == reports["openai"]
    assert reports["batch"]["cand-a"]["mean_score"] == 4.0


def test_make_notes_batch_survives_expiry_errors_oversized_files_and_kill_9(tmp_path):
    """Expiry (30% done), 5% errored rows, a file-size limit and a SIGKILL while polling, through the script."""
    import signal
    import time

    options = dict(
        responder=reply,
        batch_expire_batches=1,
        batch_expire_fraction=0.3,
        batch_error_rate=0.05,
        batch_file_size_limit=12_000,
        batch_requests_per_poll=2,
        seed=5,
    )
    with OpenAIServer(**options) as server:
        scripts = Scripts(tmp_path, server)
        flags = ["--backend", "batch", "--limit", "12", "--batch_poll_seconds", "0.2"]
        command = [sys.executable, str(ROOT / "scripts" / "make_notes.py"), "--config", "recipes/tiny/data.yaml",
                   "--base_url", server.base_url, "--model", "teacher-a", "--notes_dir", str(tmp_path / "notes"),
                   "--show_progress", "false", *flags]  # fmt: skip
        process = subprocess.Popen(command, cwd=ROOT, env=scripts.env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while server.batch.calls["batches.retrieve"] < 3:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "finished before the kill"
        creates = server.batch.calls["batches.create"]
        result = scripts.ok("notes", *flags)
        uploads = [f for f in server.batch.files.values() if f["purpose"] == "batch"]
        statuses = [b["status"] for b in server.batch.batches.values()]
    assert "expired" in statuses and max(f["bytes"] for f in uploads) <= 12_000
    assert server.stats["batch 500"] >= 1 or "resubmitted" in result.stderr
    assert (
        len({r["hash"] for r in server.billing.records()}) == len(server.billing) >= 12
    )  # each note paid once
    notes = rows(tmp_path / "notes")
    assert len({r["patient_id"] for r in notes}) == 12
    assert creates >= 1 and (tmp_path / "notes" / "README.md").exists()


@pytest.mark.parametrize(
    "call, at", [("files.create", 2), ("files.content", 1)], ids=["during-upload", "during-download"]
)
def test_make_notes_batch_killed_while_uploading_or_downloading_bills_each_note_once(tmp_path, call, at):
    """kill -9 through the script at the two moments polling does not cover: a file or a result in transit."""
    import math
    import signal
    import time

    with OpenAIServer(responder=reply, batch_requests_per_poll=3, batch_latency=0.6) as server:
        scripts = Scripts(tmp_path, server)
        flags = ["--backend", "batch", "--limit", "12", "--batch_max_requests", "4"]
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "make_notes.py"), "--config", "recipes/tiny/data.yaml",
             "--base_url", server.base_url, "--model", "teacher-a", "--notes_dir", str(tmp_path / "notes"),
             "--show_progress", "false", "--batch_poll_seconds", "0.05", *flags],
            cwd=ROOT, env=scripts.env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while server.batch.calls[call] < at:
            assert process.poll() is None and time.monotonic() < deadline, f"ended before {call} #{at}"
            time.sleep(0.005)
        time.sleep(0.2)  # inside the server's latency: it acted, the script has not heard back
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "finished before the kill"
        server.batch.latency = 0.0
        scripts.ok("notes", *flags)
        assert server.batch.calls["files.create"] == math.ceil(12 / 4)  # no file uploaded twice
        assert server.batch.calls["batches.create"] == math.ceil(12 / 4)
    assert len(server.billing) == 12 and not server.billing.double_billed()
    assert len({r["patient_id"] for r in rows(tmp_path / "notes")}) == 12
