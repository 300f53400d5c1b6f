"""What restricted (or unknown) data may do: never a public push, only allowed endpoints.

Both checks run before any work (before the first training step, generation or paid
call) and fail as one-line ``InputError``s (exit 2). The push is checked twice: once
from the flags, and once against the repository's *real* visibility after it is
created, because ``create_repo(private=True, exist_ok=True)`` leaves an existing public
repository public.
"""

from __future__ import annotations

from collections.abc import Iterable

from asclepius.errors import InputError
from asclepius.network import environment_proxy, is_private_host, url_host, url_port
from asclepius.redaction import redact_url
from asclepius.stage.provenance import Provenance

ALLOWED_ENDPOINTS_FLAG = "--allowed_endpoints"
ALLOWED_ENDPOINTS_HELP = (
    "Hosts (e.g. your-resource.openai.azure.com) that may receive restricted or unknown-provenance notes "
    "(as endpoint or as the environment's proxy), besides localhost and names resolving to loopback/private "
    "addresses only. The PhysioNet credentialed data use agreement forbids sharing "
    "MIMIC notes with third parties, including online APIs: name a host only where zero data retention, no "
    "training on the data and no human review are verified (README.md, 'Licences and data use')."
)


def _allowed_names(allowed_hosts: Iterable[str]) -> set[str]:
    return {url_host(item) or item.strip().lower() for item in allowed_hosts or () if item and item.strip()}


def _host_allowed(url: str, allowed: set[str]) -> bool:
    host = url_host(url)
    return bool(host) and (host in allowed or is_private_host(host, url_port(url)))


def refused_hops(url: str | None, allowed_hosts: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The hops of the path to ``url`` that may not carry restricted notes: (what, redacted URL).

    The path is the endpoint, plus the proxy the client takes from the environment for it
    (``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` minus ``NO_PROXY``): a proxy sees the
    notes (plain HTTP) or at least where they go, so it must be allowed too. A hop is
    allowed when its host is named in ``allowed_hosts``, is ``localhost``, or resolves now
    to loopback/private addresses only.
    """
    allowed = _allowed_names(allowed_hosts)
    if not url or not url_host(url):
        return [("endpoint", redact_url(url) or "no endpoint")]
    hops = [("endpoint", url)]
    proxy = environment_proxy(url)
    if proxy:
        hops.append(("proxy", proxy))
    return [(what, redact_url(hop) or "") for what, hop in hops if not _host_allowed(hop, allowed)]


def endpoint_allowed(url: str | None, allowed_hosts: Iterable[str] = ()) -> bool:
    """May restricted notes go to ``url`` (and through the environment's proxy for it)?"""
    return not refused_hops(url, allowed_hosts)


def check_endpoint(
    provenance: Provenance, url: str | None, allowed_hosts: Iterable[str] = (), *, what: str = "notes"
) -> None:
    """Refuse to send restricted or unknown notes to an endpoint (or through a proxy) that is not allowed."""
    if not provenance.restricted:
        return
    refused = refused_hops(url, allowed_hosts)
    if not refused:
        return
    hop, where = refused[0]
    through = (
        f"through the proxy {where} that the environment sets for {redact_url(url)} "
        "(HTTP_PROXY/HTTPS_PROXY/ALL_PROXY; exempt the endpoint with NO_PROXY or name the proxy with "
        f"{ALLOWED_ENDPOINTS_FLAG})"
        if hop == "proxy"
        else f"to {where}"
    )
    raise InputError(
        provenance.source or None,
        f"{provenance.status} {what} ({provenance.reason}) may not be sent {through}: only localhost, hosts "
        f"resolving to loopback/private addresses only, and hosts named with {ALLOWED_ENDPOINTS_FLAG} may "
        "receive them (PhysioNet data use agreement); declare a public source's licence if it is not restricted",
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
