"""Where a request really goes: the host as the HTTP client parses it, the proxy the client
takes from the environment, and the addresses a name resolves to.

The policy (:mod:`asclepius.stage.policy`) decides on these answers and the client
(:mod:`asclepius.engine.client`) is built from the same ones, so the path that was checked
is the path that is used: the URL is parsed by ``httpx2`` (the parser the ``openai`` client
sends with, which differs from ``urllib`` on odd URLs), and proxies are looked up with
``httpx2``'s own reading of ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``. A name
allowed because it resolved to local addresses is pinned: the client connects only to an
address that passed the same check at connection time (no DNS rebinding in between).
"""

from __future__ import annotations

import ipaddress
import socket

import anyio
import httpcore2
import httpx2

# The client's own environment reading (private in httpx2, but the point is to resolve
# proxies exactly as the client would; a test compares this with the client's choice).
from httpx2._utils import URLPattern, get_environment_proxies

LOCALHOST = "localhost"
# Addresses that stay on this machine or its local network. An explicit list rather than
# ipaddress's is_private: Python counts 2001::/23 (Teredo and other tunnels to public IPv4
# hosts) and the documentation ranges as private, and those are routed on the Internet.
_LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # link-local: never routed
        "::1/128",
        "fc00::/7",  # unique local addresses
        "fe80::/10",  # link-local
    )
)
_LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Names a check of this process found local only (loopback and private networks are both local):
# the client's LocalPinnedBackend re-checks them at every connection, whatever DNS answers later.
CHECKED_LOCAL_NAMES: set[str] = set()


def url_host(url: str | None) -> str:
    """The host the HTTP client will connect to for ``url`` (lower case, IPv6 without brackets); "" if none."""
    try:
        return httpx2.URL(url or "").host.lower()
    except (httpx2.InvalidURL, TypeError, ValueError):
        return ""


def url_port(url: str | None) -> int | None:
    try:
        parsed = httpx2.URL(url or "")
    except (httpx2.InvalidURL, TypeError, ValueError):
        return None
    return parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


def _within(text: str, networks) -> bool:
    address = _address(text)
    return address is not None and (address.is_unspecified or any(address in net for net in networks))


def is_local_address(text: str) -> bool:
    """Loopback, RFC 1918, link-local, ULA, or unspecified (0.0.0.0 and :: connect to this machine)."""
    return _within(text, _LOCAL_NETWORKS)


def resolve(host: str, port: int | None = None) -> list[str]:
    """Every address ``host`` resolves to now (as the client's connect would resolve it); [] if none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    return sorted({info[4][0] for info in infos})


def _resolves_within(host: str, port: int | None, networks) -> bool:
    host = host.strip("[]").lower()
    if not host:
        return False
    if host == LOCALHOST:
        return True
    if _address(host) is not None:
        return _within(host, networks)
    addresses = resolve(host, port)
    inside = bool(addresses) and all(_within(address, networks) for address in addresses)
    if inside:  # from now on, this process connects to the name only at addresses checked local
        CHECKED_LOCAL_NAMES.add(host)
    return inside


def is_private_host(host: str, port: int | None = None) -> bool:
    """``localhost``, a local address, or a name that resolves, now, to local addresses only.

    An unresolvable name is not private (fail closed). A name is resolved at check time;
    the client's :class:`LocalPinnedBackend` checks it again at every connection and connects
    to the address it checked.
    """
    return _resolves_within(host, port, _LOCAL_NETWORKS)


def is_loopback_host(host: str, port: int | None = None) -> bool:
    """``localhost``, a loopback/unspecified address, or a name resolving to those only: this machine."""
    return _resolves_within(host, port, _LOOPBACK_NETWORKS)


def environment_proxy(url: str | None) -> str | None:
    """The proxy URL the HTTP client would take from the environment for ``url`` (None: direct).

    The same table and the same order as ``httpx2``: ``NO_PROXY`` entries, then the most
    specific scheme pattern (``https://``, ``http://``, ``all://``).
    """
    try:
        target = httpx2.URL(url or "")
    except (httpx2.InvalidURL, TypeError, ValueError):
        return None
    patterns = {URLPattern(key): proxy for key, proxy in get_environment_proxies().items()}
    for pattern, proxy in sorted(patterns.items()):
        if pattern.matches(target):
            return proxy
    return None


class LocalPinnedBackend(httpcore2.AsyncNetworkBackend):
    """The client's network layer: a name some check of this process let through because it
    resolved to local addresses only (:data:`CHECKED_LOCAL_NAMES`) is resolved again at every
    connection, every answer must still be local, and the socket connects to one of those
    checked addresses itself (Host header and TLS server name unchanged).

    Without it a name checked as local could answer a public address a moment later, when the
    client resolves it again to connect (DNS rebinding), and the notes would leave the network.
    Other hosts (address literals, ``localhost``, names never checked local) connect as usual.
    Fail closed: a name also given in ``--allowed_endpoints`` is pinned once a check found it local.
    """

    def __init__(self, pinned_names: set[str] = CHECKED_LOCAL_NAMES):
        self.pinned_names = pinned_names  # the live set: a check after the client is built counts too
        self._backend = httpcore2.AnyIOBackend()  # what the pool uses under asyncio

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options=None,
    ):
        if host.strip("[]").lower() not in self.pinned_names:
            return await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        addresses = await anyio.to_thread.run_sync(resolve, host, port)
        if not addresses or not all(is_local_address(address) for address in addresses):
            raise httpcore2.ConnectError(
                f"{host} no longer resolves to local addresses only ({', '.join(addresses) or 'no answer'}): "
                "not connecting (it was allowed as a local name)"
            )
        for address in addresses[:-1]:  # the first that accepts, as a connect by name would
            try:
                return await self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore2.ConnectError:
                continue
        return await self._backend.connect_tcp(addresses[-1], port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)
