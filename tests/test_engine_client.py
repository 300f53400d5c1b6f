"""The client goes where the policy looked: no redirects, the checked proxy, the resolved endpoint.

Only 127.0.0.1 is ever contacted; other names go through a fake resolver that knows no
name (socket.getaddrinfo replaced), so nothing reaches DNS.
"""

from __future__ import annotations

import logging

import pytest
from test_stage_policy import dns, no_proxies  # noqa: F401 (fixtures)

from asclepius.engine import EngineArguments, Request, run_requests
from asclepius.engine.client import Secret, read_api_key
from asclepius.errors import InputError
from asclepius.testing.openai_server import OpenAIServer


def ask(text: str = "question") -> Request:
    return Request([{"role": "user", "content": text}])


def test_a_redirect_to_another_host_is_never_followed(make_engine, no_proxies):  # noqa: F811
    with (
        OpenAIServer() as elsewhere,
        OpenAIServer(redirect_to=elsewhere.base_url.removesuffix("/v1")) as server,
    ):
        engine = make_engine(server.base_url, max_attempts=3)
        results = []
        run_requests(engine, [ask()], results.append)
        assert server.stats["307"] == 1  # one attempt: a redirect is not worth retrying
        assert len(elsewhere.billing) == 0 and not elsewhere.stats  # the notes never reached it
    error = results[0].error
    assert not results[0].ok and error.startswith("http 307") and "not followed" in error


def test_the_client_uses_the_environment_proxy_the_policy_checked(make_engine, dns, monkeypatch):  # noqa: F811
    # model.lab resolves nowhere: the answer can only come through the proxy on 127.0.0.1.
    monkeypatch.setenv("ASCLEPIUS_TEST_KEY", "sk-test-proxied-0123456789")  # model.lab is not local
    with OpenAIServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        engine = make_engine("http://model.lab/v1", api_key_env="ASCLEPIUS_TEST_KEY")
        results = []
        run_requests(engine, [ask()], results.append)
        assert results[0].ok and len(proxy.billing) == 1
        monkeypatch.setenv("NO_PROXY", "model.lab")  # now direct, as the policy would see it too
        direct = make_engine(
            "http://model.lab/v1",
            ledger=proxy_free_ledger(engine),
            api_key_env="ASCLEPIUS_TEST_KEY",
            max_attempts=1,
        )
        run_requests(direct, [ask("another")], results.append)
        assert not results[1].ok and results[1].error.startswith("max_attempts: connection error")
        assert len(proxy.billing) == 1


def proxy_free_ledger(engine):
    return engine.ledger_path.with_name("direct.sqlite")


def test_placeholder_key_is_decided_on_the_endpoint_the_client_will_call(monkeypatch, no_proxies):  # noqa: F811
    monkeypatch.delenv("ASCLEPIUS_MISSING_KEY", raising=False)
    args = EngineArguments(api_key_env="ASCLEPIUS_MISSING_KEY")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert read_api_key(args).placeholder  # a local server named by the environment needs no key
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.com/v1")
    with pytest.raises(InputError, match=r"\$ASCLEPIUS_MISSING_KEY: not set"):
        read_api_key(args)
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(InputError, match="api.openai.com"):
        read_api_key(args)


@pytest.mark.parametrize("pasted", ["sk-proj-abcdefghijklmnop", "abc123", "0123456789abcdef0123456789abcdef"])
def test_a_key_given_as_the_variable_name_is_never_echoed(monkeypatch, pasted):
    monkeypatch.delenv(pasted, raising=False)
    with pytest.raises(InputError) as error:
        read_api_key(EngineArguments(base_url="https://api.example.com/v1", api_key_env=pasted))
    message = str(error.value)
    assert pasted not in message and "--api_key_env" in message and "\n" not in message


def test_the_key_is_scrubbed_whatever_its_length():
    short = Secret("abc123")
    assert short.scrub("no route /v1/?k=abc123chat/completions; got abc123") == "no route /v1/?*** got ***"
    assert "abc123" not in repr(short) and "abc123" not in str(short)
    placeholder = Secret("EMPTY", placeholder=True)  # nothing to hide: messages stay readable
    assert placeholder.scrub("EMPTY response") == "EMPTY response"


def test_the_summary_names_the_endpoint_of_every_answer_served(make_engine, tmp_path, no_proxies):  # noqa: F811
    ledger = tmp_path / "ledger.sqlite"
    with OpenAIServer() as server:
        engine = make_engine(server.base_url, ledger=ledger)
        run_requests(engine, [ask()], lambda result: None)
        assert engine.summary.endpoints == [server.base_url]
        again = make_engine(server.base_url + "/", ledger=ledger)  # the same endpoint, spelled with a slash
        served = []
        run_requests(again, [ask()], served.append)
        assert served[0].from_ledger and again.summary.card_facts()["endpoints"] == [server.base_url]


def test_the_http_stacks_own_request_lines_are_redacted(make_engine, caplog, monkeypatch, no_proxies):  # noqa: F811
    caplog.set_level(logging.DEBUG)  # httpx2 logs each request's URL at INFO, query string and all
    for name in ("httpx2", "openai"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.DEBUG)
    with OpenAIServer() as server:
        engine = make_engine(f"{server.base_url}?api-key=zz9zz9", max_attempts=1)
        results = []
        run_requests(engine, [ask()], results.append)
    assert results[0].error.startswith("http 404")  # the echo came back, and was redacted
    assert "HTTP Request: POST" in caplog.text and "zz9zz9" not in caplog.text + results[0].error
