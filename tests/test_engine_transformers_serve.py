"""The engine against a real OpenAI-compatible server: `transformers serve` on the tiny model."""

from __future__ import annotations

import pytest

from asclepius.engine import Request, run_requests

pytest.importorskip("asclepius.tiny")


def test_engine_talks_to_transformers_serve(tiny_serve, make_engine, tmp_path):
    base_url, model_path = tiny_serve
    requests = [
        Request([{"role": "user", "content": f"Summarise case {i}."}], metadata={"i": i}) for i in range(4)
    ]
    engine = make_engine(base_url, model=model_path, max_tokens=16, max_concurrency=2, request_timeout=60.0)
    results = []
    summary = run_requests(engine, requests, results.append)
    assert sorted(r.request.metadata["i"] for r in results) == [0, 1, 2, 3]
    for result in results:
        assert result.ok and isinstance(result.content, str) and result.finish_reason in ("stop", "length")
        assert 0 < result.usage["completion_tokens"] <= 16 and result.usage["prompt_tokens"] > 0
    assert summary.sent == 4 and summary.calls == 4 and summary.completion_tokens > 0

    again = make_engine(base_url, model=model_path, max_tokens=16)
    rerun = []
    run_requests(again, requests, rerun.append)
    assert all(r.from_ledger for r in rerun) and again.summary.sent == 0
