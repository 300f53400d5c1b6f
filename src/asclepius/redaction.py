"""The one place URLs and free text are cleaned of credentials before they are recorded.

Users paste endpoints such as ``https://user:pass@host/v1`` or ``...?api-key=...``. Cards,
provenance carried downstream, ``generation.json``, ``results.json``, logs and error
messages record URLs only through :func:`redact_url` (or :func:`redact_text` for a
message that may contain one), so a credential never lands in a file or on the Hub.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
# Query parameters that carry credentials in the wild (OpenAI proxies, Azure SAS, signed URLs).
_SECRET_QUERY_KEYS = re.compile(
    r"(key|token|secret|password|passwd|pwd|auth|signature|sig|credential|session)", re.IGNORECASE
)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# Bearer tokens and OpenAI/HF-style keys that may appear in a message outside a URL.
_TOKEN_IN_TEXT = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|Bearer\s+[A-Za-z0-9._~+/=-]{8,})")


def redact_url(url: str | None) -> str | None:
    """``url`` without user info and with secret-looking query values replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(key, REDACTED if _SECRET_QUERY_KEYS.search(key) else value) for key, value in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str) -> str:
    """Every URL in ``text`` redacted, and key-shaped tokens replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)) or "", text)
    return _TOKEN_IN_TEXT.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """``value`` (str, list, dict, nested) with every string passed through :func:`redact_text`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item) for item in value)
    return value
