"""The API key is read from the named variable once and shows up nowhere else."""

from __future__ import annotations

import logging

import pytest

from asclepius.engine import Engine, EngineArguments, Request, run_requests
from asclepius.errors import InputError
from asclepius.testing.openai_server import OpenAIServer

SECRET = "sk-test-R3c0gn1s4bleS3cr3t-0123456789abcdef"


def ask(i: int, text: str = "question") -> Request:
    return Request([{"role": "user", "content": f"{text} {i}"}])


def test_secret_never_reaches_logs_ledger_or_output(make_engine, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv("ASCLEPIUS_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # every logger, openai's and httpx's included
    ledger = tmp_path / "ledger.sqlite"
    reject = lambda body: "rejected" in body["messages"][0]["content"]  # noqa: E731
    with OpenAIServer(
        api_key=SECRET, reject=reject, rate_429=0.2, rate_500=0.1, injected_retry_after_ms=10
    ) as server:
        engine = make_engine(
            server.base_url, ledger=ledger, api_key_env="ASCLEPIUS_TEST_KEY", show_progress=True
        )
        results = []
        summary = run_requests(engine, [ask(i) for i in range(20)] + [ask(0, "rejected")], results.append)
        assert sum(r.ok for r in results) == 20  # the key really was sent: the server checks it
    with OpenAIServer(api_key="a-different-key") as server:  # 401s echo the key they got
        engine_401 = make_engine(server.base_url, ledger=ledger, api_key_env="ASCLEPIUS_TEST_KEY")
        results_401 = []
        run_requests(engine_401, [ask(99)], results_401.append)
        assert results_401[0].error.startswith("http 401") and "***" in results_401[0].error
    captured = capsys.readouterr()
    texts = [
        caplog.text,
        captured.out,
        captured.err,
        repr(engine),
        repr(engine.args),
        repr(engine._api_key),
        summary.format(),
        repr(results),
        repr(results_401),
    ]
    for text in texts:
        assert SECRET not in text
    assert "done=" in captured.err  # the progress bar did write to stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_missing_key_is_a_one_line_error_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("ASCLEPIUS_MISSING_KEY", raising=False)
    remote = EngineArguments(base_url="https://api.example.com/v1", api_key_env="ASCLEPIUS_MISSING_KEY")
    with pytest.raises(InputError, match=r"\$ASCLEPIUS_MISSING_KEY: not set") as error:
        Engine(remote, tmp_path / "ledger.sqlite")
    assert "\n" not in str(error.value)
    Engine(
        EngineArguments(api_key_env="ASCLEPIUS_MISSING_KEY", dry_run=True), tmp_path / "l.sqlite"
    )  # no key needed


def test_local_server_needs_no_key(monkeypatch, make_engine):
    monkeypatch.delenv("ASCLEPIUS_MISSING_KEY", raising=False)
    with OpenAIServer() as server:
        engine = make_engine(server.base_url, api_key_env="ASCLEPIUS_MISSING_KEY")
        results = []
        run_requests(engine, [ask(0)], results.append)
        assert results[0].ok


def test_azure_client_when_api_version_is_set(monkeypatch, make_engine):
    monkeypatch.setenv("ASCLEPIUS_TEST_KEY", SECRET)
    with OpenAIServer(api_key=SECRET) as server:  # Azure sends the key as an api-key header
        engine = make_engine(
            server.base_url.removesuffix("/v1"),
            api_key_env="ASCLEPIUS_TEST_KEY",
            azure_api_version="2024-06-01",
        )
        results = []
        run_requests(engine, [ask(0)], results.append)
        assert results[0].ok and len(server.billing) == 1
