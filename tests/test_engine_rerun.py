"""What a rerun reuses and what it sends again; what a run records and what a dry run touches."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from asclepius.engine import Engine, EngineArguments, Request, run_requests
from asclepius.errors import InputError
from asclepius.testing.openai_server import OpenAIServer

CREDENTIAL = "pa55w0rd-in-the-url"


def ask(i: int, *, resume: bool = False) -> Request:
    return Request(
        [{"role": "user", "content": f"note {i}: pool example {'A' if resume else 'B'}"}],
        metadata={"i": i},
        resume_key=f"question:{i}" if resume else None,
    )


def run(engine: Engine, requests: list[Request]) -> list:
    results: list = []
    run_requests(engine, requests, results.append)
    return results


def test_resume_keys_never_reuse_another_teachers_or_temperatures_answers(make_engine, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    requests = [ask(i, resume=True) for i in range(5)]
    with OpenAIServer() as server:
        run(make_engine(server.base_url, ledger=ledger, model="teacher-a"), requests)
        # Other messages, same resume key and teacher: reused (the pool moved, the note did not).
        moved = [Request([{"role": "user", "content": f"note {i}: other pool"}], resume_key=f"question:{i}") for i in range(5)]  # fmt: skip
        reused = run(make_engine(server.base_url, ledger=ledger, model="teacher-a"), moved)
        assert all(r.from_ledger for r in reused) and len(server.billing) == 5
        other = run(make_engine(server.base_url, ledger=ledger, model="teacher-b"), requests)
        assert not any(r.from_ledger for r in other)
        assert [r["model"] for r in server.billing.records()[5:]] == ["teacher-b"] * 5
        warmer = run(
            make_engine(server.base_url, ledger=ledger, model="teacher-b", temperature=0.2), requests
        )
        assert not any(r.from_ledger for r in warmer) and len(server.billing) == 15


@pytest.mark.parametrize("status", [401, 404])
def test_fixable_errors_are_sent_again_by_a_plain_rerun(make_engine, tmp_path, monkeypatch, status):
    ledger = tmp_path / "ledger.sqlite"
    monkeypatch.setenv("ASCLEPIUS_TEST_KEY", "the-right-key-123456")
    wrong_key = status == 401
    with OpenAIServer(api_key="the-right-key-123456", models=set() if status == 404 else None) as server:
        env = "WRONG_KEY_VARIABLE" if wrong_key else "ASCLEPIUS_TEST_KEY"
        monkeypatch.setenv("WRONG_KEY_VARIABLE", "a-stale-key-abcdefgh")
        failed = run(make_engine(server.base_url, ledger=ledger, api_key_env=env), [ask(i) for i in range(4)])
        assert all(
            r.error.startswith(f"http {status}") and r.attempts == 1 for r in failed
        )  # no retry in a run
        server.models = None  # the user fixed the key, or the deployment now exists
        again = run(make_engine(server.base_url, ledger=ledger, api_key_env="ASCLEPIUS_TEST_KEY"), [ask(i) for i in range(4)])  # fmt: skip
        assert all(r.ok and not r.from_ledger for r in again) and len(server.billing) == 4


def test_a_400_stays_final(make_engine, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer(reject=lambda body: True) as server:
        run(make_engine(server.base_url, ledger=ledger), [ask(0)])
        assert run(make_engine(server.base_url, ledger=ledger), [ask(0)])[0].from_ledger


def test_no_credential_in_reprs_errors_logs_or_ledger(make_engine, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
    remote = f"https://user:{CREDENTIAL}@llm.example.org/v1"
    with pytest.raises(InputError) as missing_key:
        Engine(EngineArguments(base_url=remote, api_key_env="NO_SUCH_KEY_VARIABLE"), tmp_path / "x.sqlite")

    def leaky(body: dict) -> str:
        raise RuntimeError(
            f"upstream http://admin:{CREDENTIAL}@10.0.0.1:9000/v1?api-key={CREDENTIAL} refused"
        )

    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer(responder=leaky) as server:
        url = server.base_url.replace("http://", f"http://user:{CREDENTIAL}@")
        engine = make_engine(url, ledger=ledger, max_attempts=2)
        results = run(engine, [ask(0)])
    assert results[0].error.startswith("max_attempts: http 500") and "***" in results[0].error
    texts = [
        str(missing_key.value),
        repr(engine),
        engine.endpoint,
        results[0].error,
        caplog.text,
        engine.summary.format(),
    ]
    texts += [" ".join(map(str, row)) for row in sqlite3.connect(ledger).execute("SELECT * FROM results")]
    assert not [text for text in texts if CREDENTIAL in text]


def test_dry_run_creates_and_changes_no_file(make_engine, tmp_path):
    folder = tmp_path / "stage" / ".asclepius"
    with OpenAIServer() as server:
        dry = make_engine(server.base_url, ledger=folder / "ledger.sqlite", dry_run=True)
        run(dry, [ask(i) for i in range(3)])
        assert not (tmp_path / "stage").exists() and dry.summary.to_send == 3
        # A killed run leaves a write-ahead log; a dry run counts it without touching anything.
        writer = make_engine(server.base_url, ledger=folder / "ledger.sqlite")
        run(writer, [ask(i) for i in range(2)])
        # A writer that commits into the -wal and is never checkpointed, like a killed run.
        keep_open = sqlite3.connect(folder / "ledger.sqlite")
        keep_open.execute("PRAGMA wal_autocheckpoint=0")
        with keep_open:
            keep_open.execute(
                "INSERT INTO results (key, status, content, created_at, updated_at) VALUES (?, 'done', 'x', 0, 0)",
                (writer.key(ask(2)),),
            )
        assert (folder / "ledger.sqlite-wal").exists()
        before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}
        dry = make_engine(server.base_url, ledger=folder / "ledger.sqlite", dry_run=True)
        run(dry, [ask(i) for i in range(3)])
        after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}
        keep_open.close()
        assert before == after and dry.summary.from_ledger == 3 and dry.summary.to_send == 0
        assert sum(server.stats.values()) == 2


def test_a_ledger_from_before_batches_and_prices_is_upgraded_in_place(make_engine, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer() as server:
        first = run(make_engine(server.base_url, ledger=ledger), [ask(i) for i in range(3)])
    with sqlite3.connect(ledger) as db:  # as an older release wrote it
        db.execute("ALTER TABLE results DROP COLUMN backend")
        db.execute("ALTER TABLE results DROP COLUMN cost_usd")
        db.execute("DROP TABLE batch_members")
        db.execute("DROP TABLE batch_shards")
    dry = make_engine(server.base_url, ledger=ledger, dry_run=True)  # contacts nothing
    run(dry, [ask(i) for i in range(4)])
    assert dry.summary.from_ledger == 3 and dry.summary.to_send == 1
    with OpenAIServer(port=server.port) as server:  # the same endpoint: the ledger's answers are its own
        again = run(make_engine(server.base_url, ledger=ledger, backend="batch", batch_poll_seconds=0.01), [ask(i) for i in range(4)])  # fmt: skip
        assert sorted(r.content for r in again[:3]) == sorted(r.content for r in first)
        assert all(r.from_ledger for r in again[:3]) and len(server.billing) == 1
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT COUNT(*) FROM results WHERE backend = 'batch'").fetchone() == (1,)
