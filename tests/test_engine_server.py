"""The OpenAI-compatible test server: limits, headers, faults, responder, billing, subprocess mode."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from asclepius.engine import Request, run_requests
from asclepius.engine.pacing import parse_duration
from asclepius.testing.openai_server import BillingLog, OpenAIServer, messages_hash, serve_in_subprocess


def post(base_url: str, content: str, max_tokens: int = 16) -> tuple[int, dict, dict]:
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    )
    request = urllib.request.Request(
        f"{base_url}/chat/completions", body.encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_rate_limit_is_enforced_per_second_with_openai_headers():
    with OpenAIServer(requests_per_minute=120) as server:  # 2 per second, bucket of 2
        statuses = [post(server.base_url, f"q{i}")[0] for i in range(2)]
        status, headers, body = post(server.base_url, "q2")
        assert statuses == [200, 200] and status == 429
        assert body["error"]["code"] == "rate_limit_exceeded"
        headers = {k.lower(): v for k, v in headers.items()}
        wait = int(headers["retry-after-ms"]) / 1000
        assert 0 < wait <= 0.5 and int(headers["retry-after"]) >= 1
        assert (
            headers["x-ratelimit-limit-requests"] == "120"
            and headers["x-ratelimit-remaining-requests"] == "0"
        )
        assert 0 < parse_duration(headers["x-ratelimit-reset-requests"]) <= 1.0
        time.sleep(wait + 0.02)
        assert post(server.base_url, "q2")[0] == 200
        assert server.stats["200"] == 3 and server.stats["429"] == 1


def test_token_limit_charges_max_tokens_up_front():
    with OpenAIServer(tokens_per_minute=6000) as server:  # 100 tokens per second
        assert post(server.base_url, "hi", max_tokens=90)[0] == 200  # ~1 + 90 charged, unused given back
        status, headers, _ = post(server.base_url, "hi", max_tokens=5000)  # > capacity: needs a full bucket
        assert status == 429 and "x-ratelimit-reset-tokens" in {k.lower() for k in headers}


def test_usage_responder_and_billing_log(tmp_path):
    with OpenAIServer(responder=lambda body: "scripted " + body["messages"][-1]["content"]) as server:
        status, _, body = post(server.base_url, "hello there", max_tokens=100)
        assert status == 200 and body["choices"][0]["message"]["content"] == "scripted hello there"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
        status, _, body = post(server.base_url, "hello there", max_tokens=2)
        assert body["choices"][0]["finish_reason"] == "length"
        assert get(server.base_url.replace("/v1", "/health"))["status"] == "ok"
        assert get(f"{server.base_url}/models")["data"][0]["id"]
        billing = server.billing
        assert len(billing) == 2
        digest = messages_hash([{"role": "user", "content": "hello there"}])
        assert billing.counts()[digest] == 2 and billing.double_billed() == {digest: 2}
        billing.dump(tmp_path / "billing.json")
        assert [r["hash"] for r in BillingLog.load(tmp_path / "billing.json")] == [digest, digest]


def test_default_responder_is_deterministic_per_request():
    with OpenAIServer() as one, OpenAIServer() as two:
        assert post(one.base_url, "same")[2]["choices"] == post(two.base_url, "same")[2]["choices"]
        assert post(one.base_url, "same")[2]["choices"] != post(one.base_url, "other")[2]["choices"]


def test_faults_are_injected_and_not_billed():
    with OpenAIServer(rate_500=1.0) as server:
        assert post(server.base_url, "x")[0] == 500
    with OpenAIServer(rate_429=1.0, injected_retry_after_ms=250) as server:
        status, headers, _ = post(server.base_url, "x")
        assert status == 429 and {k.lower(): v for k, v in headers.items()}["retry-after-ms"] == "250"
    with OpenAIServer(rate_content_filter=1.0) as server:
        choice = post(server.base_url, "x")[2]["choices"][0]
        assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] is None
    with OpenAIServer(rate_malformed=1.0, seed=1) as server:
        for _ in range(4):
            request = urllib.request.Request(
                f"{server.base_url}/chat/completions",
                json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode(),
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                raw = response.read()
            try:
                assert "choices" not in json.loads(raw)
            except json.JSONDecodeError:
                pass
        assert server.stats["malformed"] == 4 and len(server.billing) == 0
    with OpenAIServer(reject=lambda body: True) as server:
        assert post(server.base_url, "x")[0] == 400 and len(server.billing) == 0


def test_hundreds_of_concurrent_connections_with_200ms_latency(make_engine):
    with OpenAIServer(latency=0.2) as server:
        engine = make_engine(server.base_url, max_concurrency=200)
        start = time.monotonic()
        results = []
        run_requests(
            engine, (Request([{"role": "user", "content": f"c{i}"}]) for i in range(250)), results.append
        )
        elapsed = time.monotonic() - start
        assert len(results) == 250 and all(r.ok for r in results)
        assert server.stats["200"] == 250
        assert elapsed < 20  # 250 requests: far above 600 per minute


def test_subprocess_mode_prints_port_and_dumps_billing(tmp_path):
    billing = tmp_path / "billing.json"
    with serve_in_subprocess(billing_log=billing, latency=0.01, rate_length=0.0) as base_url:
        assert get(base_url.replace("/v1", "/health"))["status"] == "ok"
        assert post(base_url, "from a test")[0] == 200
        live = get(base_url.replace("/v1", "/billing"))
        assert len(live["records"]) == 1 and live["stats"] == {"200": 1}
    records = BillingLog.load(billing)
    assert [r["hash"] for r in records] == [messages_hash([{"role": "user", "content": "from a test"}])]
