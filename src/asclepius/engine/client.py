"""The edge to the API: the key, the one `openai` client, and one classified call.

`complete` makes exactly one HTTP attempt and turns every way it can go wrong into a
`CallError` that says whether trying again could help. The retry loop lives in the
runner, so every attempt is paced and counted; the openai client's own retries are off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from urllib.parse import urlparse

import openai

from asclepius.engine.config import EngineArguments
from asclepius.engine.pacing import retry_delay_from_headers
from asclepius.engine.request import estimate_prompt_tokens
from asclepius.errors import InputError
from asclepius.redaction import redact_text, redact_url

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
# 408 timeout, 409 conflict (OpenAI uses it for transient lock contention), 429 rate limit.
_RETRYABLE_4XX = {408, 409, 429}
# Wrong key, no access, wrong model or deployment name: not worth a retry within the run,
# but a rerun after the user fixes the flag must try again, so they are never final.
FIXABLE_STATUSES = (401, 403, 404)


def fixable_by_rerun(error: str | None) -> bool:
    """A recorded failure that a rerun (with a fixed key or model name) should send again."""
    return bool(error) and any(error.startswith(f"http {status}") for status in FIXABLE_STATUSES)


class Secret:
    """Holds the API key so that no repr, str or log line can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """Remove the key, and any credential in a URL, from text about to be logged or recorded.

        Servers echo keys in errors and connection errors quote the URL they tried.
        """
        text = text.replace(self._value, "***") if len(self._value) >= 8 else text
        return redact_text(text)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


def resolve_base_url(args: EngineArguments) -> str:
    """The URL the client will really call, resolved as the openai client resolves it.

    ``--base_url`` first; without it the openai client reads ``OPENAI_BASE_URL`` (or, for
    Azure, ``AZURE_OPENAI_ENDPOINT``) and falls back to api.openai.com. Governance checks
    this value, never the flag alone, so an environment variable cannot route notes elsewhere.
    """
    if args.base_url:
        return args.base_url
    if args.azure_api_version:
        return os.environ.get("AZURE_OPENAI_ENDPOINT") or ""
    return os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL


def is_local(base_url: str | None) -> bool:
    host = urlparse(base_url).hostname if base_url else None
    return bool(host) and (host in _LOCAL_HOSTS or host.endswith(".localhost"))


def read_api_key(args: EngineArguments) -> Secret:
    """Read the key once, at the edge. A local server gets a placeholder when none is set.

    So does a run that only writes batch files or imports local batch results: it needs
    no provider (a request that still has to be sent then fails as a 401, which a rerun
    with the key retries).
    """
    key = os.environ.get(args.api_key_env)
    if key:
        return Secret(key)
    if is_local(args.base_url) or args.batch_write_only or args.batch_results:
        return Secret("EMPTY")
    where = redact_url(resolve_base_url(args))
    raise InputError(
        f"${args.api_key_env}",
        f"not set; it must hold the API key for {where} (choose the variable with --api_key_env)",
    )


def build_client(args: EngineArguments, api_key: Secret) -> openai.AsyncOpenAI:
    """One client, hence one connection pool, per engine. max_retries=0: retries are ours."""
    common = dict(api_key=api_key.get(), max_retries=0, timeout=args.request_timeout)
    if args.azure_api_version:
        if not args.base_url:
            raise InputError("--base_url", "is required with --azure_api_version (it is the Azure endpoint)")
        return openai.AsyncAzureOpenAI(
            azure_endpoint=args.base_url, api_version=args.azure_api_version, **common
        )
    return openai.AsyncOpenAI(base_url=args.base_url, **common)


@dataclass
class Answer:
    content: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


class CallError(Exception):
    def __init__(
        self, reason: str, *, retryable: bool, rate_limited: bool = False, retry_after: float | None = None
    ):
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable
        self.rate_limited, self.retry_after = rate_limited, retry_after


def _status_error(error: openai.APIStatusError) -> CallError:
    status = error.status_code
    message = " ".join(str(getattr(error, "message", "") or error).split())[:300]
    retryable = status in _RETRYABLE_4XX or status >= 500
    # Overloaded servers (503) also send retry-after; honour it like a 429's.
    retry_after = retry_delay_from_headers(error.response.headers) if retryable else None
    return CallError(
        f"http {status}: {message}", retryable=retryable, rate_limited=status == 429, retry_after=retry_after
    )


async def complete(
    client: openai.AsyncOpenAI,
    model: str,
    messages: list[dict],
    temperature: float,
    max_tokens: int,
    response_format: dict | None = None,
) -> Answer:
    """One chat completion attempt; raises CallError on anything but a usable body."""
    extra = {"response_format": response_format} if response_format else {}
    try:
        completion = await client.chat.completions.create(
            model=model, messages=messages, temperature=temperature, max_tokens=max_tokens, **extra
        )
    except openai.APIStatusError as error:
        raise _status_error(error) from None
    except openai.APITimeoutError:
        raise CallError("timeout", retryable=True) from None
    except openai.APIConnectionError as error:
        raise CallError(f"connection error: {error}", retryable=True) from None
    except (json.JSONDecodeError, openai.APIResponseValidationError, ValueError) as error:
        # A truncated or garbled 200 body: the server may well answer properly next time.
        raise CallError(f"malformed response: {type(error).__name__}", retryable=True) from None
    choices = getattr(completion, "choices", None)  # a non-JSON body comes back as a plain str
    if not choices or getattr(choices[0], "message", None) is None:
        raise CallError("malformed response: no choices", retryable=True)
    choice = choices[0]
    content = choice.message.content or ""
    usage = getattr(completion, "usage", None)
    # Some OpenAI-compatible servers omit usage; estimate so pacing and counts stay sane.
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    return Answer(
        content=content,
        finish_reason=choice.finish_reason,
        prompt_tokens=int(prompt_tokens if prompt_tokens is not None else estimate_prompt_tokens(messages)),
        completion_tokens=int(completion_tokens if completion_tokens is not None else len(content) // 4),
    )
