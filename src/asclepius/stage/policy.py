"""What restricted (or unknown) data may do: never a public push, only allowed endpoints.

Both checks run before any work (before the first training step, generation or paid
call) and fail as one-line ``InputError``s (exit 2). The push is checked twice: once
from the flags, and once against the repository's *real* visibility after it is
created, because ``create_repo(private=True, exist_ok=True)`` leaves an existing public
repository public.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from asclepius.errors import InputError
from asclepius.redaction import redact_url
from asclepius.stage.provenance import Provenance

ALLOWED_ENDPOINTS_FLAG = "--allowed_endpoints"
ALLOWED_ENDPOINTS_HELP = (
    "Hosts (e.g. your-resource.openai.azure.com) that may receive restricted or unknown-provenance notes, "
    "besides loopback and private addresses. The PhysioNet credentialed data use agreement forbids sharing "
    "MIMIC notes with third parties, including online APIs: name a host only where zero data retention, no "
    "training on the data and no human review are verified (see shared/REFERENCE.md)."
)
_LOCAL_NAMES = {"localhost", "localhost.localdomain"}


def endpoint_host(url: str | None) -> str:
    try:
        return (urlsplit(url or "").hostname or "").lower()
    except ValueError:
        return ""


def is_private_host(host: str) -> bool:
    """Loopback, link-local or private (RFC 1918 / ULA) addresses, and localhost names.

    A name other than localhost is not resolved: DNS can say anything, so such hosts
    must be named on the allow-list.
    """
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def endpoint_allowed(url: str | None, allowed_hosts: Iterable[str] = ()) -> bool:
    host = endpoint_host(url)
    if not host:
        return False
    allowed = {endpoint_host(item) or item.strip().lower() for item in allowed_hosts or ()}
    return is_private_host(host) or host in allowed


def check_endpoint(
    provenance: Provenance, url: str | None, allowed_hosts: Iterable[str] = (), *, what: str = "notes"
) -> None:
    """Refuse to send restricted or unknown notes to an endpoint that is not allowed."""
    if not provenance.restricted or endpoint_allowed(url, allowed_hosts):
        return
    raise InputError(
        provenance.source or None,
        f"{provenance.status} {what} ({provenance.reason}) may not be sent to {redact_url(url) or 'no endpoint'}: "
        f"only loopback/private addresses and hosts named with {ALLOWED_ENDPOINTS_FLAG} may receive them "
        "(PhysioNet data use agreement); declare a public source's licence if it is not restricted",
    )


def check_push(provenance: Provenance, *, push: bool, private: bool, folder: str | None = None) -> None:
    """Refuse a public push of restricted or unknown data, before any work."""
    if not push or private or not provenance.restricted:
        return
    raise InputError(
        folder or provenance.source or None,
        f"the data is {provenance.status} ({provenance.reason}): restricted or unknown data can never be "
        "pushed to a public repository (PhysioNet credentialed licence); add --private (data) or "
        "--hub_private_repo (models), or declare a public source's licence",
        field="push_to_hub",
    )


def check_visibility(api, repo_id: str, *, repo_type: str) -> None:
    """After ``create_repo``: refuse when the repository is in fact public."""
    info = api.repo_info(repo_id, repo_type=repo_type)
    if not getattr(info, "private", False):
        raise InputError(
            repo_id,
            "this repository is public on the Hub; restricted data is pushed to private repositories only "
            "(make it private, or choose another --hub_*_id)",
            field="push_to_hub",
        )
