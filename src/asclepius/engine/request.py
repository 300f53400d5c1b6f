"""What goes in (Request) and comes out (Result) of the engine, and the content key.

The key is a hash of exactly what determines the answer (model, messages, sampling
parameters), so a rerun with the same inputs finds its answers in the ledger whatever
order the requests come in. Metadata is the caller's bookkeeping and is not hashed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    messages: list[dict[str, str]]
    # Passed through untouched to the Result; NOT part of the key.
    metadata: dict = field(default_factory=dict)
    max_tokens: int | None = None
    temperature: float | None = None
    # Stable logical key: a DONE ledger row with this resume_key (and the same model and
    # sampling parameters) is reused even when the messages differ (prompts built from a
    # pool that grows in completion order).
    resume_key: str | None = None
    # Sent as is (structured outputs). NOT part of the key: a caller that sets it must also change
    # the messages (the judge appends its JSON instruction), so a plain reply is never reused for it.
    response_format: dict | None = None
    # A raw prompt (messages empty): sent to /v1/completions byte for byte, no chat template applied.
    # Part of the key, so a raw answer is never served for a chat request or the reverse.
    prompt: str | None = None

    @classmethod
    def raw(cls, prompt: str, **fields: Any) -> Request:
        """A completions request: the model continues ``prompt`` exactly as given."""
        return cls(messages=[], prompt=prompt, **fields)


@dataclass
class Result:
    request: Request
    key: str  # request_key of what was sent; for a resume_key reuse, the key of the reused answer
    ok: bool  # answered: finish_reason stop (or length unless fail_on_length)
    content: str | None
    finish_reason: str | None
    usage: dict  # {"prompt_tokens": int, "completion_tokens": int}
    error: (
        str | None
    )  # why it failed for good: "content_filter", "length", "http 400: ...", "max_attempts: ..."
    attempts: int
    from_ledger: bool  # served without a call (ledger, or a duplicate of a request in this run)
    endpoint: str | None = None  # the (redacted) endpoint that produced the answer


def request_key(
    model: str, messages: list[dict[str, Any]], *, endpoint: str | None = None, **sampling: Any
) -> str:
    """sha256 of the canonical JSON of (endpoint, model, messages, sampling params); None values are dropped.

    ``endpoint`` (redacted, as :func:`endpoint_identity` gives it) keeps answers of one
    endpoint from being served as another's: the same model name on a local server and on
    a provider are different models, and a card must say where each row came from.
    """
    payload = {"model": model, "messages": messages, **{k: v for k, v in sampling.items() if v is not None}}
    if endpoint is not None:
        payload["endpoint"] = endpoint
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def endpoint_identity(redacted_url: str | None) -> str:
    """The endpoint as keys see it: the redacted URL without a trailing slash (the client adds one)."""
    return (redacted_url or "").rstrip("/")


def scoped_resume_key(resume_key: str, model: str, *, endpoint: str | None = None, **sampling: Any) -> str:
    """The caller's logical resume key scoped to the model and sampling parameters.

    A stored answer is reused under a resume key only when the same teacher at the same
    endpoint with the same sampling wrote it: rerunning with another model or temperature must send new
    requests, never relabel the old answers as the new teacher's.
    """
    return "resume:" + request_key(model, [{"resume_key": resume_key}], endpoint=endpoint, **sampling)


def estimate_request_tokens(request: Request) -> int:
    """The prompt estimate of a chat or a raw (completions) request."""
    if request.prompt is not None:
        return len(request.prompt) // 4 + 3
    return estimate_prompt_tokens(request.messages)


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """~4 characters per token plus a few per message for the chat format.

    Deliberately tokenizer-free: tiktoken downloads its vocabulary, and the pacer only
    needs an estimate that `usage` corrects after the call.
    """
    chars = sum(len(str(m.get("content") or "")) + len(str(m.get("role", ""))) for m in messages)
    return chars // 4 + 4 * len(messages) + 3
