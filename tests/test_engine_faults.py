"""Retries and permanent failures against a misbehaving server (real HTTP, no mocks)."""

from __future__ import annotations

from asclepius.engine import Request, run_requests
from asclepius.testing.openai_server import OpenAIServer, messages_hash


def ask(i: int, text: str = "question") -> Request:
    return Request([{"role": "user", "content": f"{text} {i}"}], metadata={"i": i})


def collect(engine, requests) -> list:
    results: list = []
    run_requests(engine, requests, results.append)
    return results


def test_fault_mix_ends_every_request_once_and_rerun_sends_nothing(make_engine, tmp_path):
    faults = dict(rate_429=0.10, rate_500=0.05, rate_hang=0.02, rate_malformed=0.01)
    with OpenAIServer(**faults, hang_seconds=2.0, injected_retry_after_ms=50, seed=7) as server:
        engine = make_engine(server.base_url, max_concurrency=32, request_timeout=0.75, max_attempts=8)
        results = collect(engine, (ask(i) for i in range(300)))
        assert sorted(r.request.metadata["i"] for r in results) == list(range(300))  # each exactly once
        assert len({r.key for r in results}) == 300
        assert all(r.ok or r.error for r in results)
        assert sum(r.ok for r in results) >= 298  # 8 attempts: losing one is a ~1e-6 event
        for outcome in ("429", "500", "hang", "malformed"):
            assert server.stats[outcome] > 0, outcome
        summary = engine.summary
        assert summary.retried > 0 and summary.rate_limited == server.stats["429"]
        assert summary.sent == 300 and summary.calls == sum(server.attempts.values())
        assert not server.billing.double_billed()  # an answer that arrived was never paid for again
        posts = sum(server.attempts.values())

        rerun = make_engine(server.base_url, max_concurrency=32)
        again = collect(rerun, (ask(i) for i in range(300)))
        assert sum(server.attempts.values()) == posts and rerun.summary.sent == 0
        assert all(r.from_ledger for r in again)
        assert {(r.key, r.content, r.ok) for r in again} == {(r.key, r.content, r.ok) for r in results}


def test_400_is_not_retried_and_not_resent_unless_asked(make_engine, tmp_path):
    bad = lambda body: "BAD" in body["messages"][0]["content"]  # noqa: E731
    requests = [ask(i, "BAD" if i % 4 == 0 else "fine") for i in range(12)]
    with OpenAIServer(reject=bad) as server:
        results = collect(make_engine(server.base_url), requests)
        failed = [r for r in results if not r.ok]
        assert len(failed) == 3 and all(r.error.startswith("http 400") and r.attempts == 1 for r in failed)
        for r in failed:
            assert server.attempts[messages_hash(r.request.messages)] == 1
        engine = make_engine(server.base_url)
        again = collect(engine, requests)  # the default: a permanent failure is reported, not resent
        assert engine.summary.sent == 0 and all(r.from_ledger for r in again)
        assert sorted(r.error for r in again if not r.ok) == sorted(r.error for r in failed)
        assert engine.summary.failed_by_reason == {"http 400": 3}
        engine = make_engine(server.base_url, retry_failed=True)
        collect(engine, requests)
        assert engine.summary.sent == 3
        for r in failed:
            assert server.attempts[messages_hash(r.request.messages)] == 2


def test_exhausted_attempts_are_recorded_and_resent_on_rerun(make_engine):
    with OpenAIServer(rate_500=1.0) as server:
        (result,) = collect(make_engine(server.base_url, max_attempts=3), [ask(0)])
        assert not result.ok and result.attempts == 3 and result.error.startswith("max_attempts: http 500")
    with OpenAIServer() as server:  # the outage is over: a transient failure is worth resending
        (result,) = collect(make_engine(server.base_url), [ask(0)])
        assert result.ok and not result.from_ledger and len(server.billing) == 1


def test_content_filter_and_length(make_engine, tmp_path):
    with OpenAIServer(rate_content_filter=1.0) as server:
        (result,) = collect(make_engine(server.base_url), [ask(0)])
        assert not result.ok and result.error == "content_filter" and result.attempts == 1
    with OpenAIServer(rate_length=1.0) as server:
        ledger = tmp_path / "length.sqlite"
        (result,) = collect(make_engine(server.base_url, ledger=ledger), [ask(1)])
        assert result.ok and result.finish_reason == "length" and result.content
        # The ledger keeps the answer; the flag decides on reading, without a resend.
        engine = make_engine(server.base_url, ledger=ledger, fail_on_length=True)
        (strict,) = collect(engine, [ask(1)])
        assert not strict.ok and strict.error == "length" and strict.from_ledger and len(server.billing) == 1


def test_server_rate_limit_is_respected_without_a_storm_of_429s(make_engine):
    with OpenAIServer(requests_per_minute=1200, latency=0.05) as server:  # 20 per second
        engine = make_engine(server.base_url, max_requests_per_minute=1200, max_concurrency=16)
        results = collect(engine, (ask(i) for i in range(60)))
        assert all(r.ok for r in results) and server.stats["429"] <= 3  # not a storm, whatever the load
        assert engine.summary.elapsed >= 2.0  # paced: 60 requests at 20/s minus the burst
