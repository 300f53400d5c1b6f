"""Red team, network and secrets: every route tried through the scripts, as an attacker or a careless user.

Restricted notes (a raw MIMIC NOTEEVENTS table) must reach no host the policy did not
check: not through a redirect, not through a proxy from the environment, not through a
name that resolves to a public address. Secrets must be recorded nowhere: not a short
key echoed by a server, not a query string, not a key pasted as a variable name. Only
127.0.0.1 is contacted; other names go through a fake resolver that never asks DNS.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_data_pipeline import DEMO, error_line, run_script, script_env
from test_stage_policy import fake_dns_env

from asclepius.errors import InputError
from asclepius.redaction import find_secrets_in_parquet
from asclepius.stage import push_folder, read_card_metadata
from asclepius.testing import OpenAIServer

NOTEEVENTS = (
    "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CATEGORY,DESCRIPTION,TEXT\n"
    '1,10,100,2150-01-01,Discharge summary,Report,"Admitted with chest pain. Discharged home on aspirin."\n'
    '2,11,101,2150-02-01,Discharge summary,Report,"Admitted with pneumonia. Treated with antibiotics."\n'
)
SHORT_KEY = "abc123"  # six characters: too short for any key pattern, still a secret


@pytest.fixture
def env(tmp_path):
    env = script_env(tmp_path)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "OPENAI_BASE_URL"):
        env.pop(name, None)
        env.pop(name.lower(), None)
    return env


@pytest.fixture
def noteevents(tmp_path) -> Path:
    path = tmp_path / "NOTEEVENTS.csv"
    path.write_text(NOTEEVENTS, encoding="utf-8")
    return path


def make_notes(base_url: str, source: Path, output: Path, *extra: str, env: dict):
    columns = (
        ["--text_column", "TEXT", "--id_column", "SUBJECT_ID"] if source.name == "NOTEEVENTS.csv" else []
    )
    return run_script("make_notes.py", "--config", "recipes/tiny/data.yaml", "--base_url", base_url,
                      "--model", "teacher-test", "--show_progress", "false", "--max_attempts", "1",
                      "--input", str(source), *columns, "--output_dir", str(output), *extra, env=env)  # fmt: skip


def final_error(process) -> str:
    """The last stderr line, an 'error: ...' (a run that failed after work has logged before it)."""
    line = process.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), process.stderr
    return line


def everything_written(process, folder: Path) -> bytes:
    data = (process.stdout + process.stderr).encode()
    for path in folder.rglob("*") if folder.exists() else ():
        if path.is_file():
            data += path.read_bytes()
    return data


def test_a_redirect_to_another_host_is_never_followed_with_restricted_notes(tmp_path, env, noteevents):
    output = tmp_path / "notes"
    with (
        OpenAIServer() as elsewhere,
        OpenAIServer(redirect_to=elsewhere.base_url.removesuffix("/v1")) as server,
    ):
        made = make_notes(server.base_url, noteevents, output, env=env)
        assert server.stats["307"] == 2  # each note tried once, answered with a redirect
        assert not elsewhere.stats and len(elsewhere.billing) == 0  # nothing reached the other port
    assert made.returncode == 2 and "no usable rows" in final_error(made)
    ledger = output / ".asclepius" / "ledger.sqlite"
    with sqlite3.connect(ledger) as db:
        errors = [row[0] for row in db.execute("SELECT error FROM results")]
    assert len(errors) == 2 and all("redirect" in e and "not followed" in e for e in errors)


def test_a_proxy_from_the_environment_off_the_allow_list_is_refused_before_any_request(
    tmp_path, env, noteevents
):
    # Lower case wins over upper case for the client, and ALL_PROXY counts too (unit tests cover each).
    output = tmp_path / "notes"
    proxied = fake_dns_env(
        {**env, "http_proxy": "http://user:pw@proxy.corp:3128"}, tmp_path, {"proxy.corp": "203.0.113.9"}
    )
    with OpenAIServer() as server:
        refused = make_notes(server.base_url, noteevents, output, env=proxied)
        assert len(server.billing) == 0 and not server.stats
    line = error_line(refused)
    assert refused.returncode == 2 and "proxy" in line and "proxy.corp" in line and "NO_PROXY" in line
    assert "pw@" not in line and not output.exists()


def test_an_https_proxy_is_checked_for_an_allowed_https_endpoint_and_no_proxy_exempts(
    tmp_path, env, noteevents
):
    table = {"notes.lab": "203.0.113.5", "proxy.corp": "203.0.113.9"}
    proxied = fake_dns_env({**env, "HTTPS_PROXY": "proxy.corp:3128"}, tmp_path, table)
    refused = make_notes("https://notes.lab/v1", noteevents, tmp_path / "a", "--allowed_endpoints", "notes.lab",
                         env={**proxied, "OPENAI_API_KEY": "sk-test-unused-0123456789"})  # fmt: skip
    assert refused.returncode == 2 and "proxy.corp" in error_line(refused)
    # NO_PROXY exempts 127.0.0.1 as the client would: the notes then go straight to the server.
    exempted = {
        **fake_dns_env({**env, "HTTP_PROXY": "proxy.corp:3128"}, tmp_path, table),
        "NO_PROXY": "127.0.0.1",
    }
    with OpenAIServer() as server:
        made = make_notes(server.base_url, noteevents, tmp_path / "b", env=exempted)
        assert made.returncode == 0, made.stderr[-2000:]
        assert len(server.billing) == 2


def test_names_are_allowed_only_when_they_resolve_to_local_addresses(tmp_path, env, noteevents):
    table = {"notes.lab": "127.0.0.1", "public.lab": "203.0.113.7", "mixed.localhost": "203.0.113.8"}
    resolving = fake_dns_env(env, tmp_path, table)
    with OpenAIServer() as server:
        for host in ("public.lab", "[2001:4860::1]"):  # a public name; a globally routed IPv6 address
            url = f"http://{host}:{server.port}/v1"
            refused = make_notes(url, noteevents, tmp_path / "refused", env=resolving)
            assert refused.returncode == 2 and "--allowed_endpoints" in error_line(refused), host
        assert len(server.billing) == 0 and not (tmp_path / "refused").exists()
        # A name that resolves to loopback is local: the notes reach the server through it.
        made = make_notes(f"http://notes.lab:{server.port}/v1", noteevents, tmp_path / "notes", env=resolving)
        assert made.returncode == 0, made.stderr[-2000:]
        assert len(server.billing) == 2


def test_a_name_rebound_to_a_public_address_after_the_check_is_never_connected_to(tmp_path, env, noteevents):
    # DNS rebinding: the name answers 127.0.0.1 to the policy's check, then 203.0.113.9 (public)
    # to whoever resolves it to connect. The client connects to the address it checked.
    table = {"rebind.lab": ["127.0.0.1", "203.0.113.9"], "gone.lab": [None, "127.0.0.1"]}
    resolving = fake_dns_env(env, tmp_path, table)
    with OpenAIServer() as server:
        made = make_notes(f"http://rebind.lab:{server.port}/v1", noteevents, tmp_path / "notes",
                          "--request_timeout", "5", env=resolving)  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
        assert len(server.billing) == 2  # reached through 127.0.0.1, the checked address
        # A name that no longer resolves for the project's own check is refused before any request.
        refused = make_notes(
            f"http://gone.lab:{server.port}/v1", noteevents, tmp_path / "gone", env=resolving
        )
        assert refused.returncode == 2 and "--allowed_endpoints" in error_line(refused)
        assert len(server.billing) == 2


async def _connect_once(backend, host: str, port: int):
    stream = await backend.connect_tcp(host, port, timeout=5)
    await stream.aclose()


def test_the_pinned_backend_refuses_a_name_that_turned_public_at_connect_time(monkeypatch):
    import asyncio
    import socket

    import httpcore2
    from test_stage_policy import fake_getaddrinfo

    from asclepius.network import CHECKED_LOCAL_NAMES, LocalPinnedBackend
    from asclepius.stage import endpoint_allowed

    table = {"lab.internal": "127.0.0.1", "api.example": "203.0.113.10"}
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table))
    urls = [
        "http://lab.internal:8000/v1",
        "https://api.example/v1",
        "http://localhost:1/v1",
        "http://10.0.0.1/v1",
    ]
    assert [endpoint_allowed(url) for url in urls] == [True, False, True, True]  # the policy's check
    names = {"lab.internal", "api.example", "localhost", "10.0.0.1"}
    # public names, localhost and addresses are not pinned
    assert names & CHECKED_LOCAL_NAMES == {"lab.internal"}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        backend = LocalPinnedBackend()  # built after the check, as the engine's client is
        asyncio.run(_connect_once(backend, "lab.internal", port))  # still local: connects
        table["lab.internal"] = "203.0.113.9"  # the next answer is public
        with pytest.raises(httpcore2.ConnectError, match="no longer resolves to local addresses only"):
            asyncio.run(_connect_once(backend, "lab.internal", port))


def test_a_short_key_and_a_query_string_echoed_by_the_server_are_recorded_nowhere(tmp_path, env):
    keyed = {**env, "ASCLEPIUS_TEST_KEY": SHORT_KEY}
    with OpenAIServer(api_key="the-right-key") as server:
        # The query string goes into the path the client posts to; the 404 echoes it back.
        echoed = make_notes(f"{server.base_url}?api-key={SHORT_KEY}&code=c0de", DEMO, tmp_path / "a",
                            "--limit", "2", "--api_key_env", "ASCLEPIUS_TEST_KEY", env=keyed)  # fmt: skip
        # A wrong key: the 401 quotes the key it got.
        wrong = make_notes(server.base_url, DEMO, tmp_path / "b", "--limit", "2",
                           "--api_key_env", "ASCLEPIUS_TEST_KEY", env=keyed)  # fmt: skip
    for process, folder in ((echoed, tmp_path / "a"), (wrong, tmp_path / "b")):
        assert process.returncode == 2 and "no usable rows" in final_error(process)
        annotated = list(folder.rglob("*.parquet"))
        assert annotated  # the failed rows and their errors are written for inspection
        written = everything_written(process, folder)
        assert SHORT_KEY.encode() not in written and b"c0de" not in written
        assert find_secrets_in_parquet(folder) == []
    with sqlite3.connect(tmp_path / "b" / ".asclepius" / "ledger.sqlite") as db:
        errors = {row[0] for row in db.execute("SELECT error FROM results")}
    assert len(errors) == 1 and all(
        e.startswith("http 401") and e.endswith("key provided: ***") for e in errors
    )


def test_an_echoed_key_in_an_error_column_stops_the_upload(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "stage"
    (folder / "data" / "annotated").mkdir(parents=True)
    table = pa.table(
        {"note": ["a", "b"], "error": [None, "http 404: no route /v1/?api-key=zzz999chat/completions"]}
    )
    pq.write_table(table, folder / "data" / "annotated" / "train.parquet")
    assert find_secrets_in_parquet(folder) == ["data/annotated/train.parquet:error:1"]
    (folder / "README.md").write_text("---\nlicense: other\n---\n# a finished folder\n")
    with pytest.raises(InputError, match=r"refusing to push: data/annotated/train.parquet:error:1"):
        push_folder(folder, "someone/stage", private=True)  # refused before any Hub call


def test_a_key_pasted_as_the_variable_name_is_never_echoed(tmp_path, env):
    refused = make_notes("https://api.example.com/v1", DEMO, tmp_path / "notes", "--limit", "1",
                         "--api_key_env", SHORT_KEY, env=env)  # fmt: skip
    assert refused.returncode == 2 and "--api_key_env" in error_line(refused)
    assert SHORT_KEY not in refused.stderr + refused.stdout


def test_a_rerun_against_another_endpoint_reuses_nothing_and_the_card_names_the_endpoint(tmp_path, env):
    output = tmp_path / "notes"
    with OpenAIServer() as first:
        made = make_notes(first.base_url, DEMO, output, "--limit", "2", env=env)
        assert made.returncode == 0, made.stderr[-2000:]
        first_url = first.base_url
    with OpenAIServer() as second:  # another port: another endpoint, even with the same model name
        again = make_notes(second.base_url, DEMO, output, "--limit", "2", "--overwrite", "true", env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        assert len(second.billing) == 2  # the first endpoint's answers were not served as the second's
    facts = read_card_metadata(output)["asclepius"]
    assert facts["endpoints"] == [second.base_url] and facts["base_url"] == second.base_url
    assert first_url not in (output / "README.md").read_text()
    with sqlite3.connect(output / ".asclepius" / "ledger.sqlite") as db:
        endpoints = {row[0] for row in db.execute("SELECT endpoint FROM results")}
    assert endpoints == {first_url, second.base_url}  # each row says which endpoint answered it


def test_generate_cards_name_the_endpoints_that_answered(tmp_path, env):
    output = tmp_path / "answers"
    with OpenAIServer() as server:
        made = run_script("generate.py", "--backend", "openai", "--base_url", server.base_url, "--model", "m",
                          "--input", str(DEMO.with_name("synthetic_notes.jsonl")), "--test_ratio", "0.2",
                          "--max_samples", "2", "--output_dir", str(output), "--show_progress", "false", env=env)  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
    assert read_card_metadata(output)["asclepius_evaluation"]["endpoints"] == [server.base_url]
