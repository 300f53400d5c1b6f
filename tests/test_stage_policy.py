"""Where restricted notes may go: the endpoint and the proxy the client will really use.

Names are resolved through a fake resolver (socket.getaddrinfo replaced): no test sends a
DNS query or connects to anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from pathlib import Path

import httpx2
import pytest

from asclepius.errors import InputError
from asclepius.network import environment_proxy, is_local_address, is_private_host, url_host
from asclepius.stage import Provenance, check_endpoint, endpoint_allowed
from asclepius.stage.policy import refused_hops

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
RESTRICTED = Provenance(status="restricted", reason="MIMIC-III NOTEEVENTS columns", source="notes")


def fake_getaddrinfo(table: dict[str, str | list | None], real=socket.getaddrinfo):
    """getaddrinfo that answers ``table`` (name -> address, None = no such name) and never asks DNS.

    A name mapped to a pair answers the first to lookups made by ``asclepius.network`` (the
    policy's checks) and the second to every other caller (a socket library connecting by
    name): a DNS server rebinding the name between the check and the connection.

    Address literals and localhost go to the real resolver (no network involved); any other
    name not in the table does not exist.
    """

    def getaddrinfo(host, port, *args, **kwargs):
        name = (host.decode() if isinstance(host, bytes) else str(host or "")).lower()
        if name in table:
            answer = table[name]
            if isinstance(answer, list):  # [to the project's checks, to everyone else]: a rebinding name
                checking = sys._getframe(1).f_globals.get("__name__") == "asclepius.network"
                answer = answer[0] if checking else answer[1]
            if answer is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(answer, port, *args, **kwargs)
        if name == "localhost" or is_literal(name):
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return getaddrinfo


def is_literal(name: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name.split("%")[0])
    except OSError:
        return False
    return True


_SITECUSTOMIZE = textwrap.dedent(
    """
    # Written by tests/test_stage_policy.py: a fake resolver for scripts run as subprocesses.
    import json, os, socket
    from test_stage_policy import fake_getaddrinfo
    socket.getaddrinfo = fake_getaddrinfo(json.loads(os.environ["ASCLEPIUS_TEST_DNS"]))
    """
)


def fake_dns_env(env: dict[str, str], tmp_path: Path, table: dict[str, str | None]) -> dict[str, str]:
    """``env`` for a script subprocess whose resolver answers ``table`` (and never asks DNS)."""
    folder = tmp_path / "fake-dns"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    tests = str(Path(__file__).parent)
    path = [str(folder), tests, env.get("PYTHONPATH", "")]
    return {**env, "PYTHONPATH": ":".join(p for p in path if p), "ASCLEPIUS_TEST_DNS": json.dumps(table)}


@pytest.fixture
def no_proxies(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def dns(monkeypatch, no_proxies):
    """Install a fake resolver; returns the table to fill."""
    table: dict[str, str | None] = {}
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table))
    return table


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1", "::1", "fd12::1",
     "fe80::1", "::ffff:10.0.0.1", "0.0.0.0"],
)  # fmt: skip
def test_local_addresses(address):
    assert is_local_address(address) and is_private_host(address)


@pytest.mark.parametrize(
    "address",
    [
        "2001:4860::1",  # Google, globally routed
        "2001::1",  # Teredo: a tunnel to a public IPv4 host (Python calls 2001::/23 private)
        "2001:db8::1",  # documentation range: not on this network either
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "2002:808:808::1",  # 6to4 of 8.8.8.8
        "::ffff:8.8.8.8",
        "8.8.8.8",
        "100.64.0.1",  # carrier-grade NAT: the provider's network, not ours
        "172.32.0.1",
    ],
)
def test_routed_addresses_are_not_private(address):
    assert not is_local_address(address) and not is_private_host(address)
    assert not endpoint_allowed(f"http://[{address}]:8000/v1" if ":" in address else f"http://{address}/v1")


def test_a_name_is_private_only_if_it_resolves_to_private_addresses_only(dns):
    dns.update({"gpu.lab": "10.0.0.5", "api.example": "203.0.113.7", "evil.localhost": "203.0.113.7"})
    assert endpoint_allowed("http://gpu.lab:8000/v1")
    assert endpoint_allowed("http://localhost:8000/v1")
    assert not endpoint_allowed("https://api.example/v1")
    assert not endpoint_allowed("http://evil.localhost/v1")  # only the exact name localhost is trusted
    assert not endpoint_allowed("http://nowhere.lab/v1")  # unresolvable: fail closed
    assert endpoint_allowed("https://api.example/v1", ["api.example"])  # named on the allow-list
    assert endpoint_allowed("https://api.example/v1", ["https://API.example/"])


def test_a_name_with_one_public_address_is_refused(dns, monkeypatch):
    addresses = {"mixed.lab": ["10.0.0.5", "203.0.113.7"]}

    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0)) for a in addresses[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert not is_private_host("mixed.lab")
    addresses["mixed.lab"] = ["10.0.0.5", "10.0.0.6"]
    assert is_private_host("mixed.lab")


def test_the_host_is_the_one_the_client_parses(dns):
    # urllib and httpx2 agree here, but the check must use the client's parser whatever the URL.
    url = "http://127.0.0.1\\@evil.example/v1"
    assert url_host(url) == httpx2.URL(url).host == "evil.example"
    assert not endpoint_allowed(url)


def test_environment_proxy_is_checked_like_the_endpoint(dns, monkeypatch):
    dns.update({"proxy.corp": "203.0.113.9", "proxy.lab": "10.0.0.9", "model.lab": "10.0.0.5"})
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@proxy.corp:3128")
    assert environment_proxy("http://127.0.0.1:8000/v1") == "http://user:pw@proxy.corp:3128"
    assert not endpoint_allowed("http://127.0.0.1:8000/v1")  # the proxy would carry the notes
    assert endpoint_allowed("https://model.lab/v1")  # HTTP_PROXY is for http:// only
    assert endpoint_allowed("http://127.0.0.1:8000/v1", ["proxy.corp"])  # the proxy named on the list
    with pytest.raises(InputError) as refused:
        check_endpoint(RESTRICTED, "http://127.0.0.1:8000/v1")
    message = str(refused.value)
    assert "proxy" in message and "proxy.corp" in message and "NO_PROXY" in message and "pw" not in message
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert environment_proxy("http://127.0.0.1:8000/v1") is None and endpoint_allowed(
        "http://127.0.0.1:8000/v1"
    )
    assert refused_hops("http://localhost:8000/v1") == []


@pytest.mark.parametrize("variable", ["https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"])
def test_https_and_all_proxies_in_either_case(dns, monkeypatch, variable):
    dns.update({"model.lab": "10.0.0.5"})
    monkeypatch.setenv(variable, "proxy.invalid:8080")  # no scheme: the client reads it as http://
    assert environment_proxy("https://model.lab/v1") == "http://proxy.invalid:8080"
    assert refused_hops("https://model.lab/v1") == [("proxy", "http://proxy.invalid:8080")]


@pytest.mark.parametrize(
    "environment, url",
    [
        ({"HTTP_PROXY": "http://p1:1"}, "http://a.lab/v1"),
        ({"HTTPS_PROXY": "http://p1:1", "ALL_PROXY": "http://p2:2"}, "http://a.lab/v1"),
        ({"HTTPS_PROXY": "http://p1:1", "ALL_PROXY": "http://p2:2"}, "https://a.lab/v1"),
        ({"https_proxy": "http://p1:1", "NO_PROXY": ".lab"}, "https://a.lab/v1"),
        ({"ALL_PROXY": "http://p2:2", "no_proxy": "a.lab"}, "https://a.lab/v1"),
        ({"ALL_PROXY": "http://p2:2", "NO_PROXY": "10.0.0.0/8"}, "http://10.1.1.1/v1"),
        ({"ALL_PROXY": "http://p2:2", "NO_PROXY": "*"}, "http://a.lab/v1"),
    ],
)
def test_proxy_is_resolved_as_the_client_resolves_it(no_proxies, monkeypatch, environment, url):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = httpx2.AsyncClient(trust_env=True)  # the client's own choice, transport by transport
    transport = client._transport_for_url(httpx2.URL(url))
    proxy_url = getattr(transport._pool, "_proxy_url", None)
    expected = (
        None
        if proxy_url is None
        else f"{proxy_url.scheme.decode()}://{proxy_url.host.decode()}:{proxy_url.port}"
    )
    assert environment_proxy(url) == expected
