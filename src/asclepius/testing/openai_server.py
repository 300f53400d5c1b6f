"""A small real HTTP server speaking the OpenAI chat-completions wire protocol, for tests.

It enforces requests- and tokens-per-minute limits the way providers do (a bucket of one
second's capacity, refilled continuously, 429 with retry-after-ms / retry-after /
x-ratelimit-* headers), injects faults at configurable rates (429, 500, hangs, malformed
bodies, content_filter, length), answers through a pluggable `responder(request_json) ->
str` and keeps a billing log of every completed answer, so tests can assert that nothing
was paid for twice.

In a test (background thread):

    with OpenAIServer(requests_per_minute=600, latency=0.2, rate_500=0.05) as server:
        args = EngineArguments(base_url=server.base_url, ...)
        ...
        assert not server.billing.double_billed()

As a subprocess (prints its port on the first line of stdout):

    python -m asclepius.testing.openai_server --port 0 --requests-per-minute 600 --latency 0.2 \
        --billing-log billing.json

Endpoints: POST /v1/chat/completions (non-streaming; any path ending in /chat/completions,
so Azure-style deployment URLs work too), POST /v1/completions (a raw ``prompt``, answered in
``choices[0].text``; the responder also sees the prompt as one user message, and billing
records say which endpoint), GET /v1/models, GET /health, GET /billing
(this server only: the billing log, status counts and Batch API call counts as JSON), and
the Batch API: POST/GET /v1/files, GET /v1/files/{id}[/content], POST/GET /v1/batches,
GET /v1/batches/{id}, POST /v1/batches/{id}/cancel (see BatchService).
"""

from __future__ import annotations

import argparse
import contextlib
import email.policy
import hashlib
import importlib
import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

Responder = Callable[[dict], str]

_WORDS = (
    "patient presents with stable vitals and no acute distress follow up in two weeks "
    "review labs continue current medication monitor symptoms advise rest hydration"
).split()


def messages_hash(messages: list[dict]) -> str:
    """What the billing log records per request: sha256 of the canonical JSON of the messages."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def count_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def request_content(body: dict) -> list[dict] | None:
    """What a request asks: its chat messages, or a raw completion's prompt as [{"prompt": ...}]."""
    if "prompt" in body and "messages" not in body:
        prompt = body["prompt"]
        return [{"prompt": prompt}] if isinstance(prompt, str) and prompt else None
    messages = body.get("messages")
    return messages if isinstance(messages, list) and messages else None


def responder_view(body: dict) -> dict:
    """The body a responder sees: a raw prompt also as one user message, so chat responders answer it.

    The wire protocol is unchanged (the answer is a text completion); billing records say
    which endpoint was called.
    """
    if "prompt" in body and "messages" not in body:
        return {**body, "messages": [{"role": "user", "content": str(body["prompt"])}]}
    return body


def default_responder(body: dict) -> str:
    """Deterministic per request (same messages or prompt -> same text), different across requests."""
    digest = messages_hash(request_content(body) or [])
    rng = random.Random(digest)
    return f"[{digest[:12]}] " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 25)))


def format_duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* style: "20ms", "1s", "6m0s"."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


class Bucket:
    """Token bucket holding one second of a per-minute limit, refilled continuously."""

    def __init__(self, per_minute: float):
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level, self.updated = self.capacity, time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, cost: float, now: float) -> float:
        """Seconds until `cost` fits (0 = now). A cost above capacity fits a full bucket."""
        self._refill(now)
        need = min(cost, self.capacity) - self.level
        return max(0.0, need / self.rate)

    def take(self, cost: float) -> None:
        self.level -= cost  # may go negative: a big request is paid off by later refills

    def give_back(self, cost: float) -> None:
        self.level = min(self.capacity, self.level + cost)

    def headers(self, kind: str, now: float) -> dict[str, str]:
        self._refill(now)
        return {
            f"x-ratelimit-limit-{kind}": f"{self.limit:g}",
            f"x-ratelimit-remaining-{kind}": str(max(0, int(self.level))),
            f"x-ratelimit-reset-{kind}": format_duration((self.capacity - self.level) / self.rate),
        }


class BillingLog:
    """Thread-safe record of every completed (200, full body written) answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def counts(self) -> Counter:
        """messages hash -> times billed."""
        return Counter(r["hash"] for r in self.records())

    def double_billed(self) -> dict[str, int]:
        return {h: n for h, n in self.counts().items() if n > 1}

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.records()))

    @staticmethod
    def load(path: str | Path) -> list[dict[str, Any]]:
        return json.loads(Path(path).read_text())


class BatchService:
    """The Batch API of the test server: files, batches, and their lifecycle.

    A batch advances each time it is retrieved, like a real one over time: validating ->
    in_progress (``requests_per_poll`` lines answered per retrieval, all when None) ->
    finalizing -> completed, with output and error files. The first ``expire_batches``
    batches expire once ``expire_fraction`` of their lines are answered (the rest land
    in the error file as ``batch_expired``); each line errors (500) with probability
    ``error_rate``; uploads over ``file_size_limit`` bytes are refused with 413. Every
    answered line is billed in the server's billing log, like a synchronous answer.
    """

    def __init__(
        self,
        app: OpenAIServer,
        *,
        file_size_limit: int | None = None,
        requests_per_poll: int | None = None,
        expire_batches: int = 0,
        expire_fraction: float = 0.3,
        error_rate: float = 0.0,
        latency: float = 0.0,
    ):
        self.app = app
        # Seconds an upload, a batch creation or a download takes AFTER the server acted
        # (crash tests kill the client in that window: the server has it, the client not).
        self.latency = latency
        self.file_size_limit, self.requests_per_poll = file_size_limit, requests_per_poll
        self.expire_batches, self.expire_fraction, self.error_rate = (
            expire_batches,
            expire_fraction,
            error_rate,
        )
        self.files: dict[str, dict] = {}  # id -> file object (+ "_content" bytes)
        self.batches: dict[str, dict] = {}  # id -> batch object (+ private "_" fields)
        self.calls: Counter = Counter()  # "files.create", "batches.retrieve", ... -> count
        self._lock = threading.RLock()
        self._expired = 0

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{len(self.files) + len(self.batches) + 1:06d}{self.app._rng.randrange(1 << 32):08x}"

    def add_file(self, name: str, content: bytes, purpose: str) -> tuple[int, dict]:
        with self._lock:
            self.calls["files.create"] += 1
            if self.file_size_limit is not None and len(content) > self.file_size_limit:
                message = (
                    f"File is too large: {len(content)} bytes, the limit is {self.file_size_limit} bytes."
                )
                return 413, _error(message, "file_too_large")
            return 200, self.public(self.files[self._store_file(name, content, purpose)])

    def _store_file(self, name: str, content: bytes, purpose: str) -> str:
        file_id = self._new_id("file")
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
            "_content": content,
        }
        return file_id

    def _output_file(self, lines: list[dict], name: str) -> str | None:
        if not lines:
            return None
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return self._store_file(name, content, "batch_output")

    @staticmethod
    def public(record: dict) -> dict:
        return {key: value for key, value in record.items() if not key.startswith("_")}

    def create(self, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.calls["batches.create"] += 1
            file = self.files.get(body.get("input_file_id") or "")
            if file is None:
                return 404, _error(f"No such file: {body.get('input_file_id')}", "not_found")
            lines, errors = [], []
            for number, raw in enumerate(file["_content"].decode().splitlines(), 1):
                try:
                    line = json.loads(raw)
                    assert line["url"] == body.get("endpoint") and isinstance(line["body"], dict)
                    lines.append(line)
                except (ValueError, KeyError, TypeError, AssertionError):
                    errors.append({"code": "invalid_request", "message": "bad line", "line": number})
            batch_id = self._new_id("batch")
            expire = self._expired < self.expire_batches
            self._expired += expire
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body.get("endpoint"),
                "input_file_id": file["id"],
                "completion_window": body.get("completion_window", "24h"),
                "status": "failed" if errors else "validating",
                "errors": {"object": "list", "data": errors} if errors else None,
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "metadata": body.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "_lines": lines,
                "_next": 0,
                "_outputs": [],
                "_errors": [],
                "_expire": expire,
            }
            return 200, self.public(self.batches[batch_id])

    def _answer(self, line: dict) -> dict:
        """One line of the output or error file (billed when answered)."""
        app, body = self.app, line["body"]
        request_id = f"req_{self.app._rng.randrange(1 << 48):012x}"
        messages = request_content(body)
        digest = messages_hash(messages) if messages is not None else ""
        with app._lock:
            app.attempts[digest] += 1
            roll = app._rng.random()
        status, payload, bill = 500, _error("Injected server error.", "server_error"), None
        if messages is None:
            status, payload = 400, _error("'messages' must be a non-empty list.", "invalid_request_error")
        elif app.reject is not None and app.reject(body):
            status, payload = (
                400,
                _error("This request was rejected by the test server.", "invalid_request_error"),
            )
        elif roll >= self.error_rate:
            prompt_tokens = sum(
                count_tokens(str(m.get("content") or m.get("prompt") or "")) for m in messages
            )
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
            try:
                payload, bill = app.complete(body, digest, prompt_tokens, max_tokens, None)
                status = 200
            except Exception as error:
                payload = _error(f"responder failed: {error}", "server_error")
        if bill is not None:
            app.billing.add({**bill, "batch": True})
        app._count(f"batch {status}")
        return {
            "id": f"batch_req_{request_id}",
            "custom_id": line.get("custom_id"),
            "response": {"status_code": status, "request_id": request_id, "body": payload},
            "error": None,
        }

    def _expire(self, batch: dict) -> None:
        for rest in batch["_lines"][batch["_next"] :]:
            batch["_errors"].append(
                {
                    "id": f"batch_req_expired_{batch['_next']}",
                    "custom_id": rest.get("custom_id"),
                    "response": None,
                    "error": {"code": "batch_expired", "message": "This request expired."},
                }
            )
        self._finish(batch, "expired")

    def _finish(self, batch: dict, status: str) -> None:
        batch["status"] = status
        batch["output_file_id"] = self._output_file(batch["_outputs"], f"{batch['id']}_output.jsonl")
        batch["error_file_id"] = self._output_file(batch["_errors"], f"{batch['id']}_error.jsonl")

    def retrieve(self, batch_id: str, *, count: bool = True) -> tuple[int, dict]:
        with self._lock:
            if count:
                self.calls["batches.retrieve"] += 1
            batch = self.batches.get(batch_id)
            if batch is None:
                return 404, _error(f"No such batch: {batch_id}", "not_found")
            status = batch["status"]
            if status == "validating":
                batch["status"] = "in_progress"
            elif status == "in_progress":
                lines, counts = batch["_lines"], batch["request_counts"]
                step = self.requests_per_poll or len(lines)
                for line in lines[batch["_next"] : batch["_next"] + step]:
                    # An expiring batch stops once int(fraction * lines) are answered; a small
                    # remainder (int(...) == 0) expires with nothing done, as a stalled provider does.
                    if batch["_expire"] and batch["_next"] >= int(self.expire_fraction * len(lines)):
                        self._expire(batch)
                        break
                    out = self._answer(line)
                    ok = out["response"]["status_code"] == 200
                    (batch["_outputs"] if ok else batch["_errors"]).append(out)
                    counts["completed" if ok else "failed"] += 1
                    batch["_next"] += 1
                    if batch["_expire"] and batch["_next"] >= int(self.expire_fraction * len(lines)):
                        self._expire(batch)
                        break
                else:
                    if batch["_next"] >= len(lines):
                        batch["status"] = "finalizing"
            elif status == "finalizing":
                self._finish(batch, "completed")
            elif status == "cancelling":
                self._finish(batch, "cancelled")
            return 200, self.public(batch)

    def cancel(self, batch_id: str) -> tuple[int, dict]:
        with self._lock:
            self.calls["batches.cancel"] += 1
            batch = self.batches.get(batch_id)
            if batch is None:
                return 404, _error(f"No such batch: {batch_id}", "not_found")
            if batch["status"] in ("validating", "in_progress", "finalizing"):
                batch["status"] = "cancelling"
            return 200, self.public(batch)

    def listing(self, items: list[dict], query: dict[str, list[str]]) -> dict:
        """One page, newest first, as the API pages (limit, after)."""
        items = sorted(items, key=lambda item: item["id"], reverse=True)
        after = (query.get("after") or [None])[0]
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        limit = int((query.get("limit") or [20])[0])
        page = [self.public(item) for item in items[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }


class OpenAIServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        rate_429: float = 0.0,
        rate_500: float = 0.0,
        rate_hang: float = 0.0,
        rate_malformed: float = 0.0,
        rate_content_filter: float = 0.0,
        rate_length: float = 0.0,
        hang_seconds: float = 30.0,
        injected_retry_after_ms: int = 100,
        reject: Callable[[dict], bool] | None = None,
        responder: Responder | None = None,
        api_key: str | None = None,
        models: set[str] | None = None,
        seed: int = 0,
        batch_file_size_limit: int | None = None,
        batch_requests_per_poll: int | None = None,
        batch_expire_batches: int = 0,
        batch_expire_fraction: float = 0.3,
        batch_error_rate: float = 0.0,
        batch_latency: float = 0.0,
        redirect_to: str | None = None,
        token_factor: float = 1.0,
        refund_unused_tokens: bool = True,
    ):
        """Limits are per minute, enforced per second; rates are probabilities per request.

        token_factor scales the server's own token count (characters / 4 by default): a hosted
        API counts with its own tokenizer, so a client's estimate is off by some unknown factor.

        reject(body) -> True answers 400 (never retryable); responder(body) -> assistant
        text (an exception in it answers 500); api_key set -> other bearer tokens get 401;
        redirect_to (a base URL) -> every chat completion is answered 307 to that URL plus
        the request's path, as a hijacked or misconfigured endpoint would.
        """
        self.requests = Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = Bucket(tokens_per_minute) if tokens_per_minute else None
        self.latency, self.latency_jitter = latency, latency_jitter
        self.token_factor, self.refund_unused_tokens = token_factor, refund_unused_tokens
        self.faults = {
            "429": rate_429,
            "500": rate_500,
            "hang": rate_hang,
            "malformed": rate_malformed,
            "content_filter": rate_content_filter,
            "length": rate_length,
        }
        self.hang_seconds = hang_seconds
        self.injected_retry_after_ms = injected_retry_after_ms
        self.reject, self.responder = reject, responder or default_responder
        self.api_key = api_key
        self.models = models
        self.redirect_to = redirect_to
        self.billing = BillingLog()
        self.stats: Counter = Counter()  # outcome -> count ("200", "429", "hang", ...)
        self.attempts: Counter = Counter()  # messages hash -> POSTs received
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._httpd = ThreadingHTTPServer((host, port), _Handler, bind_and_activate=False)
        self._httpd.daemon_threads = True  # hung handlers must not keep the process alive
        self._httpd.block_on_close = False
        self._httpd.request_queue_size = 1024  # hundreds of clients connect at once
        self._httpd.allow_reuse_address = True
        self._httpd.server_bind()
        self._httpd.server_activate()
        self._httpd.app = self
        self._thread: threading.Thread | None = None
        self.batch = BatchService(
            self,
            file_size_limit=batch_file_size_limit,
            requests_per_poll=batch_requests_per_poll,
            expire_batches=batch_expire_batches,
            expire_fraction=batch_expire_fraction,
            error_rate=batch_error_rate,
            latency=batch_latency,
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        # A short poll interval: stop() (hence every `with` block in tests) returns quickly.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="openai-test-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.stats[outcome] += 1

    def _fault(self) -> str | None:
        with self._lock:
            roll = self._rng.random()
        for name, rate in self.faults.items():
            if roll < rate:
                return name
            roll -= rate
        return None

    def count_tokens(self, text: str) -> int:
        """This server's own token count (see token_factor)."""
        return max(1, round(count_tokens(text) * self.token_factor))

    def _admit(self, cost_tokens: int) -> tuple[float, dict[str, str]]:
        """Charge the limits, or return how long to wait; plus the x-ratelimit-* headers."""
        with self._lock:
            now = time.monotonic()
            buckets = [
                (b, c, k)
                for b, c, k in ((self.requests, 1, "requests"), (self.tokens, cost_tokens, "tokens"))
                if b
            ]
            wait = max((b.wait(c, now) for b, c, _ in buckets), default=0.0)
            if wait == 0:
                for bucket, cost, _ in buckets:
                    bucket.take(cost)
            headers: dict[str, str] = {}
            for bucket, _, kind in buckets:
                headers.update(bucket.headers(kind, now))
            return wait, headers

    def complete(
        self, body: dict, digest: str, prompt_tokens: int, max_tokens: int, fault: str | None
    ) -> tuple[dict, dict]:
        """The answer's body and its billing record (the responder may raise)."""
        text = self.responder(responder_view(body))
        finish_reason = "stop"
        if fault == "length" or self.count_tokens(text) > max_tokens:
            text, finish_reason = text[: min(len(text) // 2, max_tokens * 4)], "length"
        if fault == "content_filter":
            text, finish_reason = None, "content_filter"
        completion_tokens = self.count_tokens(text) if text else 0
        if self.tokens is not None and self.refund_unused_tokens:
            with self._lock:  # charged prompt + max_tokens up front; return what was not generated
                self.tokens.give_back(max(0, max_tokens - completion_tokens))
        payload = _completion_payload(body, digest, text, finish_reason, prompt_tokens, completion_tokens)
        bill = {
            "hash": digest,
            "endpoint": "completions" if "prompt" in body else "chat.completions",
            "model": payload["model"],
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "max_tokens": max_tokens,
            "temperature": body.get("temperature"),
            "time": time.time(),
        }
        return payload, bill

    def handle_chat(self, body: dict, authorization: str | None) -> tuple[int, dict[str, str], Any, str]:
        """Decide the reply: (status, headers, payload or raw bytes, outcome). May sleep."""
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            # Echoes what it got, as some providers do: clients must scrub it from errors.
            token = (authorization or "").removeprefix("Bearer ")
            return 401, {}, _error(f"Incorrect API key provided: {token}.", "invalid_api_key"), "401"
        if self.models is not None and body.get("model") not in self.models:
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            return 404, {}, _error(message, "model_not_found"), "404"
        messages = request_content(body)
        if messages is None:
            what = (
                "'prompt' must be a non-empty string"
                if "prompt" in body
                else "'messages' must be a non-empty list"
            )
            return 400, {}, _error(f"{what}.", "invalid_request_error"), "400"
        digest = messages_hash(messages)
        with self._lock:
            self.attempts[digest] += 1
        if self.reject is not None and self.reject(body):
            return (
                400,
                {},
                _error("This request was rejected by the test server.", "invalid_request_error"),
                "400",
            )
        prompt_tokens = sum(
            self.count_tokens(str(m.get("content") or m.get("prompt") or "")) for m in messages
        )
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
        wait, headers = self._admit(prompt_tokens + max_tokens)
        if wait > 0:
            headers |= {
                "retry-after-ms": str(math.ceil(wait * 1000)),
                "retry-after": str(max(1, math.ceil(wait))),
            }
            return 429, headers, _error("Rate limit reached, try again later.", "rate_limit_exceeded"), "429"
        fault = self._fault()
        if fault == "429":
            headers |= {"retry-after-ms": str(self.injected_retry_after_ms), "retry-after": "1"}
            return 429, headers, _error("Injected rate limit.", "rate_limit_exceeded"), "429"
        if fault == "hang":
            self._count("hang")  # now, not when the sleep ends: tests look while it hangs
            time.sleep(self.hang_seconds)
            return 0, {}, None, ""
        time.sleep(self.latency + (self._rng.random() * self.latency_jitter if self.latency_jitter else 0.0))
        if fault == "500":
            return 500, {}, _error("Injected server error.", "server_error"), "500"
        try:
            payload, bill = self.complete(body, digest, prompt_tokens, max_tokens, fault)
        except Exception as error:  # a scripted responder can fail on purpose
            return 500, {}, _error(f"responder failed: {error}", "server_error"), "500"
        if fault == "malformed":
            raw = json.dumps(payload).encode()
            # Alternately a body cut mid-JSON and a well-formed body without choices.
            broken = raw[: len(raw) // 2] if self._rng.random() < 0.5 else b'{"object": "chat.completion"}'
            return 200, headers, broken, "malformed"
        return 200, headers, (payload, bill), "200"


def _completion_payload(
    body: dict, digest: str, text: str | None, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict:
    """A chat completion, or for a raw ``prompt`` a text completion (``choices[0].text``)."""
    raw = "prompt" in body and "messages" not in body
    choice = {"text": text} if raw else {"message": {"role": "assistant", "content": text}}
    return {
        "id": f"{'cmpl' if raw else 'chatcmpl'}-{digest[:24]}",
        "object": "text_completion" if raw else "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": [{"index": 0, **choice, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error(message: str, code: str) -> dict:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections like the real API
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        pass

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> bool:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout, killed)
            self.close_connection = True
            return False

    def do_GET(self) -> None:
        app: OpenAIServer = self.server.app
        if self.path in ("/health", "/v1/health"):
            self._send(200, {}, b'{"status": "ok"}')
        elif self.path in ("/v1/models", "/models"):
            self._send(
                200,
                {},
                json.dumps({"object": "list", "data": [{"id": "test-model", "object": "model"}]}).encode(),
            )
        elif self.path == "/billing":
            with app._lock:
                stats = dict(app.stats)
            calls = dict(app.batch.calls)
            self._send(
                200,
                {},
                json.dumps({"records": app.billing.records(), "stats": stats, "batch_calls": calls}).encode(),
            )
        elif self.path.startswith("/v1/files") or self.path.startswith("/v1/batches"):
            self._batch_get(app.batch)
        else:
            self._send(404, {}, json.dumps(_error(f"no route {self.path}", "not_found")).encode())

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, {}, json.dumps(payload).encode())

    def _batch_get(self, batch: BatchService) -> None:
        path, _, query_text = self.path.partition("?")
        query = parse_qs(query_text)
        parts = path.strip("/").split("/")  # v1, files|batches, [id], [content]
        content = None
        with batch._lock:
            if parts == ["v1", "files"]:
                batch.calls["files.list"] += 1
                purpose = (query.get("purpose") or [None])[0]
                files = [f for f in batch.files.values() if purpose in (None, f["purpose"])]
                return self._json(200, batch.listing(files, query))
            if parts == ["v1", "batches"]:
                batch.calls["batches.list"] += 1
                return self._json(200, batch.listing(list(batch.batches.values()), query))
            if len(parts) == 3 and parts[1] == "batches":
                return self._json(*batch.retrieve(parts[2]))
            file = batch.files.get(parts[2]) if len(parts) >= 3 and parts[1] == "files" else None
            if file is not None and not parts[3:]:
                return self._json(200, batch.public(file))
            if file is not None and parts[3:] == ["content"]:
                batch.calls["files.content"] += 1
                content = file["_content"]
        if content is None:
            return self._json(404, _error(f"no route {self.path}", "not_found"))
        time.sleep(batch.latency)
        self._send(200, {}, content)

    def _batch_post(self, batch: BatchService, raw: bytes) -> None:
        path = self.path.split("?", 1)[0].strip("/").split("/")
        if path == ["v1", "files"]:
            form = _multipart(self.headers.get("Content-Type", ""), raw)
            name, content = form.get("file", ("upload.jsonl", b""))
            purpose = form.get("purpose", (None, b""))[1].decode()
            reply = batch.add_file(name or "upload.jsonl", content, purpose)
            time.sleep(batch.latency)
            return self._json(*reply)
        if path == ["v1", "batches"]:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._json(400, _error("body is not JSON", "invalid_request_error"))
            reply = batch.create(body)
            time.sleep(batch.latency)
            return self._json(*reply)
        if len(path) == 4 and path[1] == "batches" and path[3] == "cancel":
            return self._json(*batch.cancel(path[2]))
        self._json(404, _error(f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:
        app: OpenAIServer = self.server.app
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/v1/files") or self.path.startswith("/v1/batches"):
            self._batch_post(app.batch, raw)
            return
        # Any prefix: Azure clients post to /openai/deployments/<name>/chat/completions?api-version=...
        # /completions (raw prompts, no chat template) is answered by the same code.
        if not self.path.split("?", 1)[0].endswith("/completions"):
            self._send(404, {}, json.dumps(_error(f"no route {self.path}", "not_found")).encode())
            return
        if app.redirect_to is not None:
            app._count("307")
            location = app.redirect_to.rstrip("/") + self.path
            self._send(307, {"Location": location}, json.dumps(_error("moved", "redirect")).encode())
            return
        try:
            body = json.loads(raw)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            app._count("400")
            self._send(
                400, {}, json.dumps(_error("body is not a JSON object", "invalid_request_error")).encode()
            )
            return
        azure_key = self.headers.get("api-key")
        authorization = self.headers.get("Authorization") or (f"Bearer {azure_key}" if azure_key else None)
        status, headers, payload, outcome = app.handle_chat(body, authorization)
        if outcome:
            app._count(outcome)
        if status == 0:  # a hang: the client has long given up; drop the connection
            self.close_connection = True
            return
        bill = None
        if isinstance(payload, tuple):
            payload, bill = payload
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if self._send(status, headers, data) and bill is not None:
            app.billing.add(bill)


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


@contextlib.contextmanager
def serve_in_subprocess(billing_log: str | Path | None = None, **options: Any) -> Iterator[str]:
    """Run the server as `python -m asclepius.testing.openai_server`; yields its base_url.

    Options are the constructor's keyword arguments (responder as "module:function").
    On exit it is stopped with SIGTERM, which writes `billing_log` if given.
    """
    command = [sys.executable, "-m", "asclepius.testing.openai_server", "--port", "0"]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    if billing_log is not None:
        command += ["--billing-log", str(billing_log)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _load_callable(spec: str) -> Callable:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible test server (prints its port).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--requests-per-minute", type=float, default=None)
    parser.add_argument("--tokens-per-minute", type=float, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--latency-jitter", type=float, default=0.0)
    for fault in ("429", "500", "hang", "malformed", "content-filter", "length"):
        parser.add_argument(f"--rate-{fault}", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--injected-retry-after-ms", type=int, default=100)
    parser.add_argument("--responder", default=None, help="module:function taking the request JSON")
    parser.add_argument("--reject", default=None, help="module:function; True answers 400")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-file-size-limit", type=int, default=None)
    parser.add_argument("--batch-requests-per-poll", type=int, default=None)
    parser.add_argument("--batch-expire-batches", type=int, default=0)
    parser.add_argument("--batch-expire-fraction", type=float, default=0.3)
    parser.add_argument("--batch-error-rate", type=float, default=0.0)
    parser.add_argument("--batch-latency", type=float, default=0.0)
    parser.add_argument("--token-factor", type=float, default=1.0)
    parser.add_argument("--refund-unused-tokens", type=int, default=1, help="0: max_tokens stays charged")
    parser.add_argument("--billing-log", default=None, help="write the billing log here (JSON) on exit")
    parser.add_argument("--redirect-to", default=None, help="answer chat completions 307 to this URL")
    args = parser.parse_args(argv)
    server = OpenAIServer(
        args.host,
        args.port,
        requests_per_minute=args.requests_per_minute,
        tokens_per_minute=args.tokens_per_minute,
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_hang=args.rate_hang,
        rate_malformed=args.rate_malformed,
        rate_content_filter=args.rate_content_filter,
        rate_length=args.rate_length,
        hang_seconds=args.hang_seconds,
        injected_retry_after_ms=args.injected_retry_after_ms,
        reject=_load_callable(args.reject) if args.reject else None,
        responder=_load_callable(args.responder) if args.responder else None,
        api_key=args.api_key,
        seed=args.seed,
        batch_file_size_limit=args.batch_file_size_limit,
        batch_requests_per_poll=args.batch_requests_per_poll,
        batch_expire_batches=args.batch_expire_batches,
        batch_expire_fraction=args.batch_expire_fraction,
        batch_error_rate=args.batch_error_rate,
        batch_latency=args.batch_latency,
        redirect_to=args.redirect_to,
        token_factor=args.token_factor,
        refund_unused_tokens=bool(args.refund_unused_tokens),
    )

    def finish(signum: int, frame: Any) -> None:
        if args.billing_log:
            server.billing.dump(args.billing_log)
        sys.stdout.flush()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    print(server.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
