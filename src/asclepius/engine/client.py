"""The edge to the API: the key, the one `openai` client, and one classified call.

`complete` makes exactly one HTTP attempt and turns every way it can go wrong into a
`CallError` that says whether trying again could help. The retry loop lives in the
runner, so every attempt is paced and counted; the openai client's own retries are off.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import httpx2
import openai

from asclepius.engine.config import EngineArguments
from asclepius.engine.pacing import retry_delay_from_headers
from asclepius.engine.request import estimate_prompt_tokens
from asclepius.errors import InputError
from asclepius.network import LocalPinnedBackend, environment_proxy, is_loopback_host, url_host, url_port
from asclepius.redaction import REDACTED, redact_text, redact_url, register_secret

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

    __slots__ = ("_value", "placeholder")

    def __init__(self, value: str, *, placeholder: bool = False):
        self._value = value
        self.placeholder = placeholder  # "EMPTY" for a local server: nothing to hide

    def get(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """Remove the key, and any credential in a URL, from text about to be logged or recorded.

        Servers echo keys in errors (a wrong path's 404 quotes the URL, query string and all)
        and connection errors quote the URL they tried. The key's own value goes whatever its
        length: a six-character key is as secret as a long one.
        """
        if self._value and not self.placeholder:
            text = text.replace(self._value, REDACTED)
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
    """A server on this machine (``localhost``, or a name or address on loopback): it needs no real key."""
    return is_loopback_host(url_host(base_url), url_port(base_url))


# What an environment variable's name looks like (OPENAI_API_KEY, AZURE_OPENAI_API_KEY). Anything
# else given to --api_key_env may be the key itself, pasted by mistake: never echoed.
_VARIABLE_NAME = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+")


def read_api_key(args: EngineArguments) -> Secret:
    """Read the key once, at the edge. A local server gets a placeholder when none is set.

    Local is decided on the endpoint the client will really call (``OPENAI_BASE_URL``
    included), not on ``--base_url`` alone. A run that only writes batch files or imports
    local batch results gets the placeholder too: it needs no provider (a request that
    still has to be sent then fails as a 401, which a rerun with the key retries).
    """
    name = args.api_key_env or ""
    key = os.environ.get(name) if name else None
    if key:
        register_secret(key)  # every log line, card, ledger row and error of this process hides it
        return Secret(key)
    if is_local(resolve_base_url(args)) or args.batch_write_only or args.batch_results:
        return Secret("EMPTY", placeholder=True)
    where = redact_url(resolve_base_url(args))
    if not _VARIABLE_NAME.fullmatch(name):
        raise InputError(
            "--api_key_env",
            f"names no environment variable that is set (the value given is not shown: it does not look like a "
            f"variable name such as OPENAI_API_KEY, and may be a key); pass the NAME of the variable that holds "
            f"the API key for {where}, never the key itself",
        )
    raise InputError(
        f"${name}",
        f"not set; it must hold the API key for {where} (choose the variable with --api_key_env)",
    )


def build_http_client(args: EngineArguments) -> httpx2.AsyncClient:
    """The HTTP client on the path the policy checked: no redirects, the checked proxy, nothing else.

    ``follow_redirects=False``: a 3xx is an error, never a second hop to a host nobody
    checked (the openai client follows redirects by default). The proxy is the one
    :func:`asclepius.network.environment_proxy` resolves for the endpoint (what
    ``check_endpoint`` checked), passed explicitly on a transport of our own, so the
    environment is not read a second time; ``trust_env`` on the transport only keeps the
    environment's CA bundle (``SSL_CERT_FILE``) for corporate TLS.
    """
    transport = httpx2.AsyncHTTPTransport(
        proxy=environment_proxy(resolve_base_url(args)),
        limits=openai.DEFAULT_CONNECTION_LIMITS,
        trust_env=True,
    )
    # A name the policy let through as local is re-checked at each connection, and the socket goes to
    # the address checked (no second DNS answer in between). httpx2 builds its pool without a backend
    # argument, so it is set on the pool it built.
    transport._pool._network_backend = LocalPinnedBackend()
    return openai.DefaultAsyncHttpxClient(transport=transport, follow_redirects=False, trust_env=False)


def build_client(args: EngineArguments, api_key: Secret) -> openai.AsyncOpenAI:
    """One client, hence one connection pool, per engine. max_retries=0: retries are ours."""
    common = dict(
        api_key=api_key.get(),
        max_retries=0,
        timeout=args.request_timeout,
        http_client=build_http_client(args),
    )
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
    # The answer's x-ratelimit-* headers (the pacer learns the server's token bucket from them).
    rate_limit_headers: dict[str, str] = field(default_factory=dict)


class CallError(Exception):
    def __init__(
        self, reason: str, *, retryable: bool, rate_limited: bool = False, retry_after: float | None = None
    ):
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable
        self.rate_limited, self.retry_after = rate_limited, retry_after
        self.rate_limit_headers: dict[str, str] = {}


def _status_error(error: openai.APIStatusError) -> CallError:
    status = error.status_code
    if 300 <= status < 400:
        # Never followed (see build_http_client): the policy checked this endpoint, not the next one.
        location = redact_url(error.response.headers.get("location")) or "no location"
        return CallError(
            f"http {status}: redirect to {location} not followed (only the endpoint that was checked is called; "
            "give the final URL as --base_url)",
            retryable=False,
        )
    message = " ".join(str(getattr(error, "message", "") or error).split())[:300]
    retryable = status in _RETRYABLE_4XX or status >= 500
    # Overloaded servers (503) also send retry-after; honour it like a 429's.
    retry_after = retry_delay_from_headers(error.response.headers) if retryable else None
    failure = CallError(
        f"http {status}: {message}", retryable=retryable, rate_limited=status == 429, retry_after=retry_after
    )
    failure.rate_limit_headers = _rate_limit_headers(error.response.headers)
    return failure


def _rate_limit_headers(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}


async def complete(
    client: openai.AsyncOpenAI,
    model: str,
    messages: list[dict],
    temperature: float,
    max_tokens: int,
    response_format: dict | None = None,
    *,
    prompt: str | None = None,
) -> Answer:
    """One completion attempt; raises CallError on anything but a usable body.

    Chat (``messages``, the server applies the model's chat template), or with ``prompt``
    a raw completion (``/v1/completions``): the model continues those bytes as given.
    """
    extra = {"response_format": response_format} if response_format else {}
    try:
        if prompt is not None:
            raw = await client.completions.with_raw_response.create(
                model=model, prompt=prompt, temperature=temperature, max_tokens=max_tokens
            )
        else:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=messages, temperature=temperature, max_tokens=max_tokens, **extra
            )
        completion = raw.parse()
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
    part = "text" if prompt is not None else "message"
    if not choices or getattr(choices[0], part, None) is None:
        raise CallError("malformed response: no choices", retryable=True)
    choice = choices[0]
    content = (choice.text if prompt is not None else choice.message.content) or ""
    usage = getattr(completion, "usage", None)
    # Some OpenAI-compatible servers omit usage; estimate so pacing and counts stay sane.
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    return Answer(
        content=content,
        finish_reason=choice.finish_reason,
        prompt_tokens=int(
            prompt_tokens
            if prompt_tokens is not None
            else (len(prompt) // 4 + 3 if prompt is not None else estimate_prompt_tokens(messages))
        ),
        completion_tokens=int(completion_tokens if completion_tokens is not None else len(content) // 4),
        rate_limit_headers=_rate_limit_headers(raw.headers),
    )
