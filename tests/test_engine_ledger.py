"""Ledger and streaming: resume, duplicates, resume_key, laziness, dry run, summary."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from asclepius.engine import Request, run_requests
from asclepius.testing.openai_server import OpenAIServer, messages_hash


def ask(i: int, text: str = "question", **fields) -> Request:
    return Request([{"role": "user", "content": f"{text} {i}"}], metadata={"i": i}, **fields)


def collect(engine, requests, **kwargs) -> list:
    results: list = []
    run_requests(engine, requests, results.append, **kwargs)
    return results


def test_ledger_is_wal_sqlite_in_a_created_folder_and_resumes(make_engine, tmp_path):
    ledger = tmp_path / "out" / ".asclepius" / "ledger.sqlite"
    with OpenAIServer() as server:
        first = collect(make_engine(server.base_url, ledger=ledger), [ask(i) for i in range(10)])
        assert ledger.exists() and all(not r.from_ledger for r in first)
        with contextlib.closing(sqlite3.connect(ledger)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            rows = db.execute("SELECT status, content, attempts FROM results").fetchall()
        assert len(rows) == 10 and {r[0] for r in rows} == {"done"}
        engine = make_engine(server.base_url, ledger=ledger)
        second = collect(engine, [ask(i) for i in range(15)])  # 10 old, 5 new
        assert sum(r.from_ledger for r in second) == 10 and engine.summary.sent == 5
        assert len(server.billing) == 15 and not server.billing.double_billed()
        old = {r.key: r.content for r in first}
        assert all(old[r.key] == r.content for r in second if r.from_ledger)


def test_sampling_params_are_part_of_the_key(make_engine):
    with OpenAIServer() as server:
        base = collect(make_engine(server.base_url), [ask(0)])[0]
        hotter = collect(make_engine(server.base_url, temperature=0.3), [ask(0)])[0]
        longer = collect(make_engine(server.base_url), [ask(0, max_tokens=99)])[0]
        assert len({base.key, hotter.key, longer.key}) == 3 and len(server.billing) == 3
        assert server.billing.records()[1]["temperature"] == 0.3
        assert server.billing.records()[2]["max_tokens"] == 99


def test_duplicates_in_one_run_are_sent_once(make_engine):
    requests = [ask(0), ask(1), ask(0), ask(0), ask(2), ask(1)]
    with OpenAIServer(latency=0.05) as server:
        engine = make_engine(server.base_url, max_concurrency=8)
        results = collect(engine, requests)
        assert len(results) == 6 and all(r.ok for r in results)
        assert len(server.billing) == 3 and engine.summary.sent == 3 and engine.summary.from_ledger == 3
        by_key: dict = {}
        for r in results:
            by_key.setdefault(r.key, set()).add(r.content)
        assert all(len(contents) == 1 for contents in by_key.values())


def test_resume_key_reuses_a_done_answer_even_when_the_prompt_changed(make_engine):
    with OpenAIServer() as server:
        first = collect(
            make_engine(server.base_url), [ask(i, "pool v1", resume_key=f"q{i}") for i in range(4)]
        )
        engine = make_engine(server.base_url)
        # Same logical requests, prompts rebuilt from a pool that grew in another order; plus one new.
        second = collect(engine, [ask(i, "pool v2", resume_key=f"q{i}") for i in range(5)])
        assert engine.summary.sent == 1 and len(server.billing) == 5
        old = {r.request.resume_key: r for r in first}
        for r in second:
            if r.request.resume_key in old:
                assert r.from_ledger and r.content == old[r.request.resume_key].content
                assert r.key == old[r.request.resume_key].key  # the key of the answer reused
                assert "pool v2" in r.request.messages[0]["content"]  # the caller's request, untouched
            else:
                assert not r.from_ledger


def test_requests_are_pulled_lazily_and_see_consumed_results(make_engine):
    """A generator may build the next prompt from results consumed so far (question bootstrapping)."""
    pulled, consumed, pool = [0], [0], []

    def generate():
        for i in range(40):
            assert pulled[0] - consumed[0] <= 4  # never more than max_concurrency ahead
            pulled[0] += 1
            yield ask(i, f"pool size {len(pool)}")

    def on_result(result):
        consumed[0] += 1
        pool.append(result.content)

    with OpenAIServer(latency=0.01, latency_jitter=0.02) as server:
        summary = run_requests(
            make_engine(server.base_url, max_concurrency=4), generate(), on_result, total=40
        )
    assert consumed[0] == 40 and summary.ok == 40
    sizes = []
    for i in range(40):
        for size in range(40):
            if server.attempts[messages_hash([{"role": "user", "content": f"pool size {size} {i}"}])]:
                sizes.append(size)
    assert len(sizes) == 40 and sizes[-1] >= 36  # late prompts saw (almost) all earlier answers


def test_async_iterable_input_and_stream_api(make_engine):
    async def requests():
        for i in range(5):
            await asyncio.sleep(0)
            yield ask(i)

    async def main(engine):
        try:
            return [result async for result in engine.stream(requests(), total=5)]
        finally:
            await engine.aclose()

    with OpenAIServer() as server:
        results = asyncio.run(main(make_engine(server.base_url)))
    assert sorted(r.request.metadata["i"] for r in results) == list(range(5))


def test_stopping_early_keeps_what_was_answered(make_engine, tmp_path):
    async def main(engine):
        taken = []
        try:
            async with contextlib.aclosing(engine.stream(ask(i) for i in range(50))) as results:
                async for result in results:
                    taken.append(result)
                    if len(taken) == 5:
                        break
        finally:
            await engine.aclose()
        return taken

    with OpenAIServer(latency=0.02) as server:
        taken = asyncio.run(main(make_engine(server.base_url, max_concurrency=4)))
        assert len(taken) == 5 and len(server.billing) < 20  # stopped pulling, not a full run
        engine = make_engine(server.base_url)
        rest = collect(engine, [ask(i) for i in range(50)])
        assert {r.key for r in taken} <= {r.key for r in rest if r.from_ledger}
        assert len(rest) == 50 and len(server.billing) <= 50 + 4


def test_dry_run_sends_nothing_and_estimates(make_engine, tmp_path, caplog):
    with OpenAIServer() as server:
        ledger = tmp_path / "dry" / "ledger.sqlite"
        engine = make_engine(
            server.base_url,
            ledger=ledger,
            dry_run=True,
            input_price_per_million=1.0,
            output_price_per_million=2.0,
        )
        with caplog.at_level("INFO", logger="asclepius.engine"):
            results = collect(engine, [ask(i, "x" * 400) for i in range(10)])
        assert results == [] and sum(server.stats.values()) == 0 and not ledger.exists()
        s = engine.summary
        assert s.requested == 10 and s.to_send == 10 and s.sent == 0
        assert 1000 <= s.estimated_prompt_tokens <= 1200 and s.estimated_completion_tokens == 10 * 256
        assert (
            abs(s.estimated_cost - (s.estimated_prompt_tokens + 2 * s.estimated_completion_tokens) / 1e6)
            < 1e-12
        )
        assert "dry run" in caplog.text
        collect(make_engine(server.base_url, ledger=ledger), [ask(0, "x" * 400)])
        engine = make_engine(server.base_url, ledger=ledger, dry_run=True)
        collect(engine, [ask(i, "x" * 400) for i in range(10)])
        assert engine.summary.from_ledger == 1 and engine.summary.to_send == 9


def test_summary_counts_tokens_cost_and_is_logged(make_engine, caplog):
    with OpenAIServer(rate_content_filter=0.0) as server:
        engine = make_engine(server.base_url, input_price_per_million=3.0, output_price_per_million=15.0)
        with caplog.at_level("INFO", logger="asclepius.engine"):
            collect(engine, [ask(i) for i in range(6)], total=6)
    s = engine.summary
    billed = server.billing.records()
    assert s.ok == 6 and s.prompt_tokens == sum(r["prompt_tokens"] for r in billed)
    assert s.completion_tokens == sum(r["completion_tokens"] for r in billed)
    assert abs(s.estimated_cost - (3 * s.prompt_tokens + 15 * s.completion_tokens) / 1e6) < 1e-12
    text = s.format()
    assert "ok: 6" in text and "est. cost: $" in text and text in caplog.text
