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


CONTENDER = """
import sys, time
from pathlib import Path
from asclepius.errors import InputError
from asclepius.stage import StageFolder
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
try:
    folder = StageFolder.open(sys.argv[1])
except InputError as error:
    print("refused", error, flush=True)
    sys.exit(0)
print("won", flush=True)
sys.stdin.read()  # hold the lock until the test has heard from every contender
"""


def contenders(folder, go, count: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(folder), str(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(count)
    ]


def test_a_second_open_names_the_holder_and_a_dead_holders_record_does_not_hold_the_folder(tmp_path):
    folder = StageFolder.open(tmp_path / "out")
    with pytest.raises(InputError, match=f"in use by pid {os.getpid()}"):
        StageFolder.open(tmp_path / "out")
    folder.lock.release()
    lock = tmp_path / "out" / ".asclepius" / "lock.json"
    assert not lock.exists()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock.parent.mkdir(parents=True)  # the release left no empty folder behind
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}), encoding="utf-8")
    StageFolder.open(tmp_path / "out").lock.release()  # a record is no lock: only the OS's lock is
    lock.parent.mkdir(parents=True)
    lock.write_text("", encoding="utf-8")  # an empty record (a run killed while starting)
    StageFolder.open(tmp_path / "out").lock.release()


@pytest.mark.parametrize("stale_record", [False, True])
def test_processes_racing_for_one_folder_exactly_one_wins(tmp_path, stale_record):
    """The old lock let two contenders both replace a stale holder's record; the OS lock cannot."""
    folder, go = tmp_path / "out", tmp_path / "go"
    if stale_record:
        (folder / ".asclepius").mkdir(parents=True)
        (folder / ".asclepius" / "lock.json").write_text(
            json.dumps({"pid": 999999999, "host": os.uname().nodename})
        )
    processes = contenders(folder, go, 4)
    go.touch()
    outcomes = [process.stdout.readline().split()[0] for process in processes]  # each has tried once
    for process in processes:
        process.communicate("")
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"], outcomes


def test_a_sigkilled_holders_lock_is_released_by_the_os(tmp_path):
    folder, go = tmp_path / "out", tmp_path / "go"
    go.touch()
    (holder,) = contenders(folder, go, 1)
    assert holder.stdout.readline().strip() == "won"
    with pytest.raises(InputError, match=f"in use by pid {holder.pid}"):
        StageFolder.open(folder)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    assert (folder / ".asclepius" / "lock.json").exists()  # the record stays; the lock does not
    taken = StageFolder.open(folder)
    assert json.loads((folder / ".asclepius" / "lock.json").read_text())["pid"] == os.getpid()
    taken.lock.release()


def test_only_the_launchers_rank_0_takes_the_lock(tmp_path, monkeypatch):
    """Under accelerate/torchrun, RANK numbers the processes even when the Trainer sees no process group."""
    main = StageFolder.open(tmp_path / "out")
    monkeypatch.setenv("RANK", "1")
    replica = StageFolder.open(tmp_path / "out")  # no "in use by" for a replica of the same run
    assert not replica.lock.held
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(InputError, match="in use by"):
        StageFolder.open(tmp_path / "out")
    main.lock.release()


def test_a_launch_the_trainer_does_not_see_is_refused_naming_use_cpu(monkeypatch):
    from asclepius.training.stage import check_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="--use_cpu true"):
        check_launch(type("Args", (), {"world_size": 1})())
    check_launch(type("Args", (), {"world_size": 2})())  # the process group is seen: fine
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_launch(type("Args", (), {"world_size": 1})())


def test_two_runs_on_one_folder_the_second_exits_at_once_and_a_killed_runs_lock_is_taken_over(tmp_path):
    env = script_env(tmp_path)
    output = tmp_path / "notes"
    # Replies wait 60 s: the first run is still waiting on its first note when it is killed.
    with OpenAIServer(latency=60) as server:
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
        server.latency = 0.0
        third = run_script("make_notes.py", *notes_flags(server, output), env=env)
        assert third.returncode == 0, third.stderr[-2000:]
        assert "taking over the lock of a run that is gone" in third.stderr
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
