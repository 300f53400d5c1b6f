"""Offline when the Hub cannot be reached: a pre-filled Hugging Face cache is used without a flag.

The make targets leave ``HF_HUB_OFFLINE`` to the user (only demo, test and bench force it),
so a model named by its Hub id downloads when there is a network. Without one,
``huggingface_hub`` would already fall back to its cache for each file, but only after
retrying every file the cache lacks (``adapter_config.json``, ``processor_config.json``...)
for about 20 seconds each, and it prints a warning per retry. One quick probe of the
endpoint before the model loads decides instead: unreachable, and the whole process (and
the servers it starts) turns offline with one log line.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

TRUE_VALUES = ("1", "true", "yes", "on")
# Seconds to wait for the endpoint: enough for a slow link, short enough not to be noticed.
PROBE_TIMEOUT = 5.0
# A missing local file, not a Hub id: its own stage says "no such file".
DATA_FILE_SUFFIXES = {".csv", ".json", ".jsonl", ".parquet", ".txt", ".arrow"}


def offline_mode() -> bool:
    """True when offline mode is on, set by the user or by :func:`go_offline`."""
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any((flag or "").lower() in TRUE_VALUES for flag in flags)


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@functools.cache
def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the Hub endpoint (``HF_ENDPOINT``, proxies included) answers at all (asked once a process).

    Any HTTP answer below 500 counts (a 401 or 404 still means the network works);
    a refused or timed-out connection, a proxy failure or a server error does not.
    """
    import httpx2
    from huggingface_hub.utils import get_session

    try:
        response = get_session().head(hub_endpoint(), timeout=timeout, follow_redirects=False)
    except httpx2.TransportError:
        return False
    return response.status_code < 500


def go_offline(reason: str) -> None:
    """Offline mode for this process and its children, as if ``HF_HUB_OFFLINE=1`` had been set.

    ``huggingface_hub`` and ``datasets`` read the variable once, at import, so their
    module-level flags are set too (``transformers`` asks ``huggingface_hub`` at each call).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
    logger.warning("%s: working offline from the Hugging Face cache (as with HF_HUB_OFFLINE=1)", reason)


def offline_unless_hub_reachable() -> bool:
    """Turn offline mode on when the Hub is unreachable; return whether it is now on.

    Called before loading anything named by a Hub id; costs one request when online,
    nothing when offline mode is already on.
    """
    if offline_mode():
        return True
    if hub_reachable():
        return False
    go_offline(f"the Hugging Face Hub ({hub_endpoint()}) cannot be reached")
    return True


def looks_like_hub_id(name: str | None) -> bool:
    """``org/name`` (or a legacy one-part id) that is not a path on this machine."""
    if not name or Path(name).exists() or name.startswith((".", "/", "~")):
        return False
    parts = name.split("/")
    return len(parts) <= 2 and parts[0] != "outputs" and Path(name).suffix.lower() not in DATA_FILE_SUFFIXES


def offline_unless_hub_reachable_for(*names: str | None) -> bool:
    """:func:`offline_unless_hub_reachable` when any of ``names`` (models, datasets) is a Hub id."""
    if any(looks_like_hub_id(name) for name in names):
        return offline_unless_hub_reachable()
    return offline_mode()
