"""The one place URLs and free text are cleaned of credentials before they are recorded.

Users paste endpoints such as ``https://user:pass@host/v1`` or ``...?api-key=...``, and
servers echo what they were sent (a wrong path's 404 quotes the URL, query string and
all; a 401 quotes the key). Cards, provenance carried downstream, ``generation.json``,
``results.json``, logs, the ledger and error messages record URLs only through
:func:`redact_url` (or :func:`redact_text` for a message that may contain one), so a
credential never lands in a file or on the Hub. :func:`find_secrets_in_parquet` is the
last check before an upload: the error columns of every parquet file.

Which query parameters carry secrets cannot be known (``?code=``, ``?jwt=``, ``?k=``,
signed URLs...), so the whole query string of a URL is dropped, never filtered.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow.parquet as pq

REDACTED = "***"
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# A query string outside a full URL ("no route /v1/?api-key=abc123chat/completions"): from the
# "?" to the end of the word, when the word goes on with a name=value pair.
_QUERY_IN_TEXT = re.compile(r"(?<=[^\s'\"<>?])\?(?=[^\s'\"<>]*=)[^\s'\"<>]*")
# Bearer tokens and OpenAI/HF-style keys that may appear in a message outside a URL.
_TOKEN_IN_TEXT = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|Bearer\s+[A-Za-z0-9._~+/=-]{4,})")
# name=value / "name": "value" for names that only ever carry credentials, and a provider's
# "Incorrect API key provided: <key>".
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(\b(?:api[-_]?key|x-api-key|access[-_]?token|auth[-_]?token|password|passwd|secret|jwt|"
    r"authorization)[\"']?\s*[:=]\s*[\"']?|\bkey provided:\s*)([^\s\"'&,;<>(){}\[\]]+)"
)
# Key values this process holds (the engine registers its API key when it reads it). A
# process-wide set on purpose: every writer (logs, cards, errors, the ledger, a push's scan)
# passes through this module, and none of them should need the key handed to it.
_KNOWN_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact ``value`` wherever text is redacted in this process, whatever its length."""
    if value:
        _KNOWN_SECRETS.add(value)


def _without_known_secrets(text: str) -> str:
    for value in sorted(_KNOWN_SECRETS, key=len, reverse=True):  # longest first: no partial leftovers
        text = text.replace(value, REDACTED)
    return text


def redact_url(url: str | None) -> str | None:
    """``url`` without user info and without its query string (``?***`` marks that one was there)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    redacted = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    if parts.query or url.rstrip("#").endswith("?"):
        redacted += f"?{REDACTED}"
    return _without_known_secrets(redacted)


def redact_text(text: str) -> str:
    """Every URL in ``text`` redacted, query strings dropped, key-shaped tokens and known keys replaced."""
    text = _without_known_secrets(text)
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)) or "", text)
    text = _QUERY_IN_TEXT.sub(f"?{REDACTED}", text)
    text = _TOKEN_IN_TEXT.sub(REDACTED, text)  # first: "Authorization: Bearer x" goes whole
    return _SECRET_ASSIGNMENT.sub(lambda match: match.group(1) + REDACTED, text)


def redact(value: Any) -> Any:
    """``value`` (str, list, dict, nested) with every string passed through :func:`redact_text`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item) for item in value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's final message through :func:`redact_text`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage()), None
        return True


# The HTTP stack's own loggers: httpx2 logs every request's URL at INFO, query string included.
HTTP_LOGGERS = ("httpx2", "httpx", "openai", "openai._base_client", "httpcore2.http11")


def redact_logs(names: tuple[str, ...] = HTTP_LOGGERS) -> None:
    """Attach a :class:`RedactingFilter` to each named logger (once), whatever level it is later set to."""
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(existing, RedactingFilter) for existing in target.filters):
            target.addFilter(RedactingFilter())


def holds_secret(text: str | None) -> bool:
    """Would :func:`redact_text` change ``text``? (a known key, a key-shaped token, a query, user info)."""
    return bool(text) and redact_text(text) != text


def find_secrets_in_parquet(folder: str | os.PathLike, files: list[str] | None = None) -> list[str]:
    """``file:column:row`` of every error value in the folder's parquet files that holds a secret.

    Error columns carry server messages, the likeliest place for an echoed key; they are
    redacted when recorded, and this is the check before an upload that nothing slipped
    through (an older ledger, another tool's file). ``files``: the folder-relative paths an
    upload would send (default: every ``*.parquet`` below the folder).
    """
    folder = Path(folder)
    paths = [folder / name for name in files] if files is not None else sorted(folder.rglob("*.parquet"))
    found = []
    for path in paths:
        if path.suffix != ".parquet" or not path.is_file():
            continue
        parquet = pq.ParquetFile(path)
        columns = [name for name in parquet.schema_arrow.names if "error" in name.lower()]
        if not columns:
            continue
        table = parquet.read(columns=columns)
        for column in columns:
            for row, value in enumerate(table.column(column).to_pylist()):
                if isinstance(value, str) and holds_secret(value):
                    found.append(f"{path.relative_to(folder)}:{column}:{row}")
    return found
