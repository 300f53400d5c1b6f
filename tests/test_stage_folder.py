"""The stage folder through the scripts: one run per folder, a dead run's lock taken over,
``--overwrite`` checked before it deletes, a dry run that writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_data_pipeline import DEMO, ROOT, error_line, run_script, script_env

from asclepius.errors import InputError
from asclepius.stage import StageFolder
from asclepius.testing import OpenAIServer


def notes_flags(server: OpenAIServer, output, *extra: str) -> list[str]:
    return ["--config", "recipes/tiny/data.yaml", "--base_url", server.base_url, "--model", "teacher-test",
            "--input", str(DEMO), "--output_dir", str(output), "--limit", "3", "--max_concurrency", "1",
            "--show_progress", "false", *extra]  # fmt: skip


def wait_for(path, process) -> None:
    while not path.exists():
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)


def test_a_second_open_names_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    folder = StageFolder.open(tmp_path / "out")
    with pytest.raises(InputError, match=f"in use by pid {os.getpid()}"):
        StageFolder.open(tmp_path / "out")
    folder.lock.release()
    lock = tmp_path / "out" / ".asclepius" / "lock.json"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    holder = {"pid": int(dead.stdout), "host": os.uname().nodename, "started": "then"}
    lock.parent.mkdir(parents=True)  # the release left no empty folder behind
    lock.write_text(json.dumps(holder), encoding="utf-8")
    StageFolder.open(tmp_path / "out").lock.release()  # taken over: that pid is gone
    assert not lock.exists()


def test_a_lock_being_written_right_now_is_not_taken_for_a_stale_one(tmp_path):
    """An empty lock file a few ms old is a run that is starting, not a dead one."""
    lock = tmp_path / "out" / ".asclepius" / "lock.json"
    lock.parent.mkdir(parents=True)
    lock.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="another run is starting"):
        StageFolder.open(tmp_path / "out")
    old = time.time() - 60
    os.utime(lock, (old, old))  # an empty lock left long ago by a crash: taken over
    StageFolder.open(tmp_path / "out").lock.release()


def test_two_runs_on_one_folder_the_second_exits_at_once_and_a_killed_runs_lock_is_taken_over(tmp_path):
    env = script_env(tmp_path)
    output = tmp_path / "notes"
    with OpenAIServer(latency=1.5) as server:
        first = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "make_notes.py"),
                                  *notes_flags(server, output)], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            wait_for(output / ".asclepius" / "lock.json", first)
            second = run_script("make_notes.py", *notes_flags(server, output), env=env)
            assert second.returncode == 2
            assert f"in use by pid {first.pid}" in error_line(second)
            first.send_signal(signal.SIGKILL)  # a killed run cannot release its lock
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
        assert (output / ".asclepius" / "lock.json").exists()
        third = run_script("make_notes.py", *notes_flags(server, output), env=env)
        assert third.returncode == 0, third.stderr[-2000:]
        assert "taking over the lock" in third.stderr
        assert not server.billing.double_billed()
    assert (output / "README.md").exists() and not (output / ".asclepius" / "lock.json").exists()


def test_overwrite_checks_key_and_endpoint_before_it_deletes(tmp_path):
    env = script_env(tmp_path)
    output = tmp_path / "notes"
    with OpenAIServer() as server:
        assert run_script("make_notes.py", *notes_flags(server, output), env=env).returncode == 0
    card = (output / "README.md").read_text()
    # A remote endpoint with no key: the rerun cannot start, so the finished folder must stay.
    refused = run_script(
        "make_notes.py",
        *notes_flags(server, output, "--overwrite", "true", "--base_url", "https://api.example.com/v1"),
        env=env,
    )
    assert refused.returncode == 2 and "OPENAI_API_KEY" in error_line(refused)
    assert (output / "README.md").read_text() == card and list((output / "data").rglob("*.parquet"))
    # MIMIC notes (NOTEEVENTS columns, whatever the recipe declares) to a remote endpoint: refused, intact.
    raw = tmp_path / "NOTEEVENTS.csv"
    raw.write_text(
        "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CATEGORY,TEXT\n1,2,3,2150-01-01,Discharge summary,x\n"
    )
    refused = run_script(
        "make_notes.py",
        *notes_flags(
            server,
            output,
            "--overwrite",
            "true",
            "--base_url",
            "https://api.example.com/v1",
            "--input",
            str(raw),
            "--text_column",
            "TEXT",
            "--id_column",
            "SUBJECT_ID",
        ),  # fmt: skip
        env={**env, "OPENAI_API_KEY": "sk-test"},
    )
    assert (
        refused.returncode == 2
        and "restricted" in error_line(refused)
        and "--allowed_endpoints" in refused.stderr
    )
    assert (output / "README.md").read_text() == card


def test_a_dry_run_writes_nothing_into_the_output_folder(tmp_path):
    output = tmp_path / "notes"
    with OpenAIServer() as server:
        process = run_script(
            "make_notes.py", *notes_flags(server, output, "--dry_run", "true"), env=script_env(tmp_path)
        )
        assert process.returncode == 0, process.stderr[-2000:]
        assert len(server.billing) == 0
    assert not output.exists() or not any(output.rglob("*")), sorted(output.rglob("*"))
