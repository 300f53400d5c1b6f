"""The Batch API backend against the test server: same results as sync, at half price, never paid twice."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asclepius.engine import Engine, EngineArguments, Request, run_requests
from asclepius.engine.batch import entry_from_line
from asclepius.engine.runner import BudgetExceeded
from asclepius.errors import InputError
from asclepius.testing.openai_server import OpenAIServer, default_responder, messages_hash

ROOT = Path(__file__).resolve().parents[1]


def ask(i: int) -> Request:
    return Request([{"role": "user", "content": f"batch question number {i}"}], metadata={"i": i})


def batch_engine(base_url: str, ledger: Path, **fields) -> Engine:
    defaults = dict(
        model="test-model",
        backend="batch",
        batch_poll_seconds=0.01,
        show_progress=False,
        request_timeout=10.0,
    )
    engine = Engine(
        EngineArguments(base_url=base_url, **{**defaults, **fields}), ledger, default_max_tokens=64
    )
    engine.backoff_base = 0.01
    return engine


def run(engine: Engine, n: int) -> list:
    results: list = []
    run_requests(engine, [ask(i) for i in range(n)], results.append)
    return results


def test_batch_results_equal_sync_results_and_are_billed_once(tmp_path, make_engine):
    with OpenAIServer() as server:
        sync = run(make_engine(server.base_url, ledger=tmp_path / "sync.sqlite", default_max_tokens=64), 30)
    # The same port, hence the same endpoint: keys (which include it) are compared below.
    with OpenAIServer(batch_requests_per_poll=7, port=server.port) as server:
        engine = batch_engine(server.base_url, tmp_path / "batch.sqlite")
        batch = run(engine, 30)
        assert not server.billing.double_billed() and len(server.billing) == 30
        assert all(record["batch"] for record in server.billing.records())
        assert server.batch.calls["batches.create"] == 1 and server.batch.calls["batches.retrieve"] >= 5
    # In request order, same keys, same answers: downstream cannot tell the backends apart.
    assert [r.request.metadata["i"] for r in batch] == list(range(30))
    assert sorted((r.key, r.content, r.ok, r.finish_reason) for r in batch) == sorted(
        (r.key, r.content, r.ok, r.finish_reason) for r in sync
    )
    assert engine.summary.batch_polls >= 5 and engine.summary.backend == "batch"
    with sqlite3.connect(tmp_path / "batch.sqlite") as db:
        assert {row[0] for row in db.execute("SELECT backend FROM results")} == {"batch"}
    with OpenAIServer(port=server.port) as server:  # everything is in the ledger: no API call at all
        again = run(batch_engine(server.base_url, tmp_path / "batch.sqlite"), 30)
        assert all(r.from_ledger for r in again) and sum(server.batch.calls.values()) == 0


def test_expired_batch_resubmits_only_the_unfinished_requests(tmp_path):
    with OpenAIServer(batch_expire_batches=1, batch_expire_fraction=0.3) as server:
        engine = batch_engine(server.base_url, tmp_path / "ledger.sqlite")
        results = run(engine, 20)
        first, second = sorted(server.batch.batches.values(), key=lambda b: b["id"])
    assert first["status"] == "expired" and first["request_counts"]["completed"] == 6
    assert len(second["_lines"]) == 14 and second["status"] == "completed"
    done_first = {line["custom_id"] for line in first["_outputs"]}
    assert not done_first & {line["custom_id"] for line in second["_lines"]}
    assert all(r.ok for r in results) and engine.summary.batch_resubmitted == 14
    assert len(server.billing) == 20 and not server.billing.double_billed()


@pytest.mark.timeout(120)  # without the bound this test would poll forever
def test_batches_that_never_finish_stop_after_stalled_expiries_and_sync_finishes_the_rest(tmp_path):
    # Every batch expires at 40%: 20 -> 12 -> 8 -> 5 -> 3 -> 2 open, then a 2-request remainder
    # expires with nothing answered, again and again. The run must stop, not poll forever.
    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer(batch_expire_batches=1000, batch_expire_fraction=0.4) as server:
        engine = batch_engine(server.base_url, ledger, batch_max_stalled_expiries=3)
        with pytest.raises(InputError, match=r"3 batches in a row expired .* 2 request\(s\) still open"):
            run(engine, 20)
        stalled = [b for b in server.batch.batches.values() if not b["_outputs"]]
        batch_billing = len(server.billing)
    assert len(stalled) == 3 and all(len(b["_lines"]) == 2 for b in stalled)
    assert batch_billing == 18  # everything answered was kept, nothing paid twice
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT COUNT(*) FROM results WHERE status = 'done'").fetchone()[0] == 18
    with OpenAIServer(port=server.port) as server:  # the one-line advice: finish the rest synchronously
        results = run(batch_engine(server.base_url, ledger, backend="sync"), 20)
        assert len(server.billing) == 2 and not server.billing.double_billed()
    assert all(r.ok for r in results) and sum(r.from_ledger for r in results) == 18


def poison_responder(body: dict) -> str:
    if body["messages"][-1]["content"].endswith("number 3"):
        raise RuntimeError("this one always fails")
    return default_responder(body)


def test_errored_rows_are_retried_then_recorded_as_failed(tmp_path):
    n = 60
    with OpenAIServer(batch_error_rate=0.05, responder=poison_responder, seed=3) as server:
        engine = batch_engine(server.base_url, tmp_path / "ledger.sqlite", max_attempts=3)
        results = run(engine, n)
        attempts = dict(server.attempts)
        errored = server.stats["batch 500"]
    by_index = {r.request.metadata["i"]: r for r in results}
    poison = by_index[3]
    assert not poison.ok and poison.error.startswith("max_attempts: http 500")
    assert attempts[messages_hash(ask(3).messages)] == 3  # bounded: tried 3 times, then recorded
    assert errored > 3, "the 5% random errors did not happen"
    assert all(by_index[i].ok for i in range(n) if i != 3)  # the random ones succeeded on a retry
    assert all(count <= 3 for count in attempts.values())
    assert not server.billing.double_billed()
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute(
            "SELECT status, transient FROM results WHERE key = ?", (poison.key,)
        ).fetchone() == (
            "failed",
            1,
        )


def test_a_file_over_the_size_limit_is_split(tmp_path):
    limit = 2500
    with OpenAIServer(batch_file_size_limit=limit) as server:
        engine = batch_engine(server.base_url, tmp_path / "ledger.sqlite")
        results = run(engine, 40)
        sizes = [f["bytes"] for f in server.batch.files.values() if f["purpose"] == "batch"]
        refused = server.batch.calls["files.create"] - len(sizes)
    assert all(r.ok for r in results) and len(server.billing) == 40 and not server.billing.double_billed()
    assert refused >= 1 and len(sizes) >= 2 and max(sizes) <= limit


def test_shards_respect_request_and_enqueued_token_limits(tmp_path):
    with OpenAIServer() as server:
        engine = batch_engine(server.base_url, tmp_path / "a.sqlite", batch_max_requests=7)
        run(engine, 40)
        assert server.batch.calls["batches.create"] == math.ceil(40 / 7)
    with OpenAIServer() as server:
        # ~10 prompt + 64 max_tokens per request: 3 requests per 250 tokens, one batch open at a time.
        engine = batch_engine(server.base_url, tmp_path / "b.sqlite", batch_max_enqueued_tokens=250)
        results = run(engine, 9)
        assert server.batch.calls["batches.create"] == 3 and all(r.ok for r in results)


def test_budget_cap_stops_within_one_window_and_a_higher_cap_resumes(tmp_path):
    prices = dict(input_price_per_million=2000.0, output_price_per_million=2000.0)
    ledger = tmp_path / "ledger.sqlite"
    worst = (10 + 64) * 2000.0 / 1e6 / 2  # one request at batch price, prompt estimate + max_tokens
    cap = 0.5
    with OpenAIServer() as server:
        engine = batch_engine(server.base_url, ledger, max_budget_usd=cap, batch_max_requests=5, **prices)
        with pytest.raises(BudgetExceeded, match="rerun the same command with a higher --max_budget_usd"):
            run(engine, 60)
        with sqlite3.connect(ledger) as db:
            spent = db.execute("SELECT SUM(cost_usd) FROM results").fetchone()[0]
        billed = sum(r["prompt_tokens"] + r["completion_tokens"] for r in server.billing.records())
        assert billed * 2000.0 / 1e6 / 2 == pytest.approx(spent)
        assert spent <= cap and cap - spent <= 2 * 5 * worst  # stopped within one in-flight window
        assert 0 < len(server.billing) < 60
        engine = batch_engine(server.base_url, ledger, max_budget_usd=100.0, batch_max_requests=5, **prices)
        results = run(engine, 60)
        assert all(r.ok for r in results) and len(server.billing) == 60 and not server.billing.double_billed()


def test_sync_budget_cap_and_dry_run_prices(tmp_path, make_engine, caplog):
    prices = dict(input_price_per_million=2000.0, output_price_per_million=2000.0)
    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer() as server:
        engine = make_engine(server.base_url, ledger=ledger, max_budget_usd=1.0, max_concurrency=4, **prices)
        with pytest.raises(BudgetExceeded):
            run(engine, 50)
        paid = len(server.billing)
        assert 0 < paid < 50
        dry = make_engine(server.base_url, ledger=ledger, dry_run=True, **prices)
        run(dry, 50)
        assert dry.summary.to_send == 50 - paid
        assert dry.summary.estimated_batch_cost == pytest.approx(dry.summary.estimated_cost / 2)
        assert "with --backend batch" in dry.summary.format()
        engine = make_engine(server.base_url, ledger=ledger, max_budget_usd=1000.0, **prices)
        assert all(r.ok for r in run(engine, 50))
        assert len(server.billing) == 50 and not server.billing.double_billed()
    with pytest.raises(InputError, match="no price known"):
        make_engine("http://127.0.0.1:1/v1", max_budget_usd=1.0)
    with pytest.raises(InputError, match="only applies with --backend batch"):
        make_engine("http://127.0.0.1:1/v1", batch_write_only=True)


def test_write_only_then_local_results_import(tmp_path):
    """The written JSONL is what `vllm run_batch` reads; its output file is imported as answers."""
    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer() as server:
        engine = batch_engine(server.base_url, ledger, batch_write_only=True)
        with pytest.raises(InputError, match="vllm run_batch"):
            run(engine, 12)
        assert sum(server.batch.calls.values()) == 0
    files = sorted((tmp_path / "batches").glob("*.jsonl"))
    assert files
    outputs = tmp_path / "results.jsonl"
    with outputs.open("w") as handle:  # what vllm run_batch writes: one response per input line
        for path in files:
            for text in path.read_text().splitlines():
                line = json.loads(text)
                assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
                body = line["body"]
                answer = default_responder(body)
                response = {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 7},
                }  # fmt: skip
                record = {
                    "id": "x",
                    "custom_id": line["custom_id"],
                    "response": {"status_code": 200, "body": response},
                }
                handle.write(json.dumps({**record, "error": None}) + "\n")
    with OpenAIServer(port=server.port) as server:  # the same endpoint as the written batch
        engine = batch_engine(server.base_url, ledger, batch_results=str(outputs))
        results = run(engine, 12)
        assert all(r.ok and r.from_ledger for r in results) and sum(server.batch.calls.values()) == 0
        assert results[0].content == default_responder({"messages": ask(0).messages})


def test_output_lines_are_read_like_synchronous_answers():
    ok = {"custom_id": "k", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}}}  # fmt: skip
    key, entry, retry = entry_from_line(ok)
    assert (key, entry.status, entry.content, entry.prompt_tokens, retry) == ("k", "done", "hi", 3, False)
    _, entry, retry = entry_from_line(
        {"custom_id": "k", "response": {"status_code": 400, "body": {"error": {"message": "bad"}}}}
    )
    assert entry.status == "failed" and entry.error == "http 400: bad" and not retry
    assert entry_from_line({"custom_id": "k", "response": {"status_code": 503, "body": {}}})[2]
    assert entry_from_line({"custom_id": "k", "error": {"code": "batch_expired"}})[1] is None


# --- kill -9 while uploading, creating, polling and downloading ------------------------------
DRIVER = """
import json, sys
from asclepius.engine import Engine, EngineArguments, Request, run_requests

base_url, ledger, out, n = sys.argv[1:5]
args = EngineArguments(base_url=base_url, model="test-model", backend="batch", batch_poll_seconds=0.05,
                       batch_max_requests=10, show_progress=False)
engine = Engine(args, ledger, default_max_tokens=64)
with open(out, "w") as handle:
    def on_result(result):
        handle.write(json.dumps({"i": result.request.metadata["i"], "ok": result.ok, "content": result.content}) + "\\n")
    run_requests(engine, (Request([{"role": "user", "content": f"batch question number {i}"}], metadata={"i": i})
                          for i in range(int(n))), on_result)
"""


def driver(tmp_path: Path, base_url: str, name: str, n: int) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = tmp_path / f"{name}.jsonl"
    return subprocess.Popen(
        [sys.executable, str(script), base_url, str(tmp_path / "ledger.sqlite"), str(out), str(n)], env=env
    )


@pytest.mark.parametrize(
    "call, at",
    [("files.create", 2), ("batches.create", 2), ("batches.retrieve", 4), ("files.content", 1)],
    ids=["upload", "create", "polling", "download"],
)
def test_kill_9_then_rerun_bills_every_request_once(tmp_path, call, at):
    n = 35
    with OpenAIServer(batch_requests_per_poll=3, batch_latency=0.6) as server:
        process = driver(tmp_path, server.base_url, "killed", n)
        deadline = time.monotonic() + 60
        while server.batch.calls[call] < at:
            assert process.poll() is None, f"driver ended before {call} #{at}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        if call != "batches.retrieve":
            time.sleep(0.2)  # inside the server's latency: it acted, the client has not heard back
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        uploads, creates = server.batch.calls["files.create"], server.batch.calls["batches.create"]
        server.batch.latency = 0.0
        process = driver(tmp_path, server.base_url, "rerun", n)
        assert process.wait(timeout=120) == 0
        rows = [json.loads(line) for line in (tmp_path / "rerun.jsonl").read_text().splitlines()]
        assert sorted(row["i"] for row in rows) == list(range(n)) and all(row["ok"] for row in rows)
        assert len(server.billing) == n and not server.billing.double_billed()
        # The file or batch that reached the server before the kill is found again, not redone.
        assert server.batch.calls["files.create"] == math.ceil(n / 10)
        assert server.batch.calls["batches.create"] == math.ceil(n / 10)
        assert uploads >= 1 and creates <= math.ceil(n / 10)


def test_rounds_freeze_the_pool_per_round_and_replay_identically(tmp_path):
    """Question bootstrapping under batches: each round's prompts see the pool as the round began."""

    def bootstrap(engine: Engine) -> tuple[list[int], list]:
        pool: list[str] = []
        seen: list[int] = []
        results: list = []

        def requests():
            for i in range(7):
                seen.append(len(pool))
                examples = " | ".join(pool[-2:])
                yield Request(
                    [{"role": "user", "content": f"note {i}; examples: {examples}"}], metadata={"i": i}
                )

        def on_result(result) -> None:
            pool.append(result.content)
            results.append(result)

        run_requests(engine, requests(), on_result)
        return seen, results

    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer() as server:
        engine = batch_engine(server.base_url, ledger, batch_round_size=3)
        seen, results = bootstrap(engine)
        assert seen == [0, 0, 0, 3, 3, 3, 6]  # frozen within a round, grown between rounds
        assert engine.summary.batch_rounds == [3, 3, 1] and server.batch.calls["batches.create"] == 3
        assert engine.summary.card_facts()["batch_rounds"] == 3
        # A rerun builds the same prompts round by round, so every answer comes from the ledger.
        again_seen, again = bootstrap(batch_engine(server.base_url, ledger, batch_round_size=3))
        assert again_seen == seen and all(r.from_ledger for r in again)
        assert [r.key for r in again] == [r.key for r in results] and len(server.billing) == 7


def test_a_batch_cancelled_from_outside_resubmits_only_what_did_not_run(tmp_path):
    import threading

    with OpenAIServer(batch_requests_per_poll=4) as server:

        def cancel_first_batch() -> None:  # the user cancels it in the provider's dashboard
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                running = [b for b in server.batch.batches.values() if b["request_counts"]["completed"] >= 4]
                if running:
                    server.batch.cancel(running[0]["id"])
                    return
                time.sleep(0.002)

        canceller = threading.Thread(target=cancel_first_batch)
        canceller.start()
        engine = batch_engine(server.base_url, tmp_path / "ledger.sqlite", batch_poll_seconds=0.05)
        results = run(engine, 20)
        canceller.join()
        first = min(server.batch.batches.values(), key=lambda b: b["id"])
    assert first["status"] == "cancelled"
    ran = first["request_counts"]["completed"]
    assert 4 <= ran < 20 and engine.summary.batch_resubmitted == 20 - ran
    assert all(r.ok for r in results) and len(server.billing) == 20 and not server.billing.double_billed()


def test_written_files_partly_answered_elsewhere_are_not_submitted_as_they_are(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer() as server:
        with pytest.raises(InputError):
            run(batch_engine(server.base_url, ledger, batch_write_only=True), 10)
        run(batch_engine(server.base_url, ledger, backend="sync"), 4)  # 4 of the 10 answered meanwhile
        results = run(batch_engine(server.base_url, ledger), 10)
        assert all(r.ok for r in results) and len(server.billing) == 10 and not server.billing.double_billed()
        assert [len(b["_lines"]) for b in server.batch.batches.values()] == [6]


def test_judge_replies_in_json_schema_go_through_batches(tmp_path):
    """Structured-output requests carry their response_format into the batch file, like sync calls."""
    schema = {"type": "json_schema", "json_schema": {"name": "scores", "schema": {"type": "object"}}}
    seen: list = []

    def responder(body: dict) -> str:
        seen.append(body.get("response_format"))
        return '{"A": 4}'

    with OpenAIServer(responder=responder) as server:
        request = Request([{"role": "user", "content": "score this"}], response_format=schema)
        results: list = []
        run_requests(batch_engine(server.base_url, tmp_path / "ledger.sqlite"), [request], results.append)
    assert seen == [schema] and results[0].content == '{"A": 4}'


def test_raw_prompts_go_to_the_completions_endpoint_in_batches_as_in_sync_calls(tmp_path, make_engine):
    """A raw (completions) request: the same answer and key through the Batch API as synchronously."""
    requests = [Request.raw(f"### Instruction:\nraw prompt number {i}\n\n### Response:\n") for i in range(6)]
    with OpenAIServer() as server:
        sync: list = []
        run_requests(make_engine(server.base_url, ledger=tmp_path / "sync.sqlite", default_max_tokens=64),
                     requests, sync.append)  # fmt: skip
        batch: list = []
        run_requests(batch_engine(server.base_url, tmp_path / "batch.sqlite"), requests, batch.append)
        records = server.billing.records()
        assert {r["endpoint"] for r in records} == {"completions"} and len(records) == 12
        assert server.batch.calls["batches.create"] == 1
    # Synchronous results arrive in completion order, batch results in request order.
    assert sorted((r.key, r.content) for r in batch) == sorted((r.key, r.content) for r in sync)
    assert all(r.ok and r.content for r in batch)
    # A chat request with the same text is another request: another key, another answer.
    chat = Request([{"role": "user", "content": requests[0].prompt}])
    assert make_engine("http://127.0.0.1:9/v1").key(chat) != make_engine("http://127.0.0.1:9/v1").key(
        requests[0]
    )
