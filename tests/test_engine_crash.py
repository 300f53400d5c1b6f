"""kill -9 mid-run loses nothing answered and repeats at most the calls in flight."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from asclepius.engine import Request, request_key, run_requests
from asclepius.testing.openai_server import OpenAIServer, messages_hash

N, CONCURRENCY, MAX_TOKENS = 300, 8, 256
ROOT = Path(__file__).resolve().parents[1]

DRIVER = """
import json, sys
from asclepius.engine import Engine, EngineArguments, Request, run_requests

base_url, ledger, out, n, concurrency, max_tokens = sys.argv[1:7]
args = EngineArguments(base_url=base_url, model="test-model", max_concurrency=int(concurrency),
                       max_requests_per_minute=60000, max_tokens_per_minute=1e9, show_progress=False)
engine = Engine(args, ledger, default_max_tokens=int(max_tokens))
with open(out, "a") as handle:
    def on_result(result):
        handle.write(json.dumps({"i": result.request.metadata["i"], "key": result.key, "ok": result.ok,
                                 "content": result.content, "from_ledger": result.from_ledger}) + "\\n")
        handle.flush()
    requests = (Request([{"role": "user", "content": f"crash test question {i}"}], metadata={"i": i})
                for i in range(int(n)))
    run_requests(engine, requests, on_result)
"""


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"crash test question {i}"}]


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def driver(tmp_path: Path, base_url: str, ledger: Path, out: Path) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [
        sys.executable,
        str(script),
        base_url,
        str(ledger),
        str(out),
        str(N),
        str(CONCURRENCY),
        str(MAX_TOKENS),
    ]
    return subprocess.Popen(command, env=env)


def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, make_engine):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kill_after = rng.randint(20, 200)
    ledger = tmp_path / "run" / "ledger.sqlite"
    with OpenAIServer(latency=0.01, latency_jitter=0.04) as server:
        process = driver(tmp_path, server.base_url, ledger, tmp_path / "killed.jsonl")
        deadline = time.monotonic() + 60
        while len(lines(tmp_path / "killed.jsonl")) < kill_after and process.poll() is None:
            assert time.monotonic() < deadline, "driver produced too few results"
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere: mid-call, mid-commit, mid-write
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, f"finished before the kill (seed {seed})"
        with sqlite3.connect(ledger) as db:
            done_at_kill = {key for (key,) in db.execute("SELECT key FROM results WHERE status = 'done'")}
        billed_at_kill = server.billing.counts()
        assert done_at_kill, f"nothing committed before the kill (seed {seed})"

        process = driver(tmp_path, server.base_url, ledger, tmp_path / "rerun.jsonl")
        endpoint, port = server.base_url, server.port
        assert process.wait(timeout=120) == 0
        billed = server.billing.counts()

    rerun = lines(tmp_path / "rerun.jsonl")
    assert sorted(r["i"] for r in rerun) == list(range(N))
    assert sum(r["from_ledger"] for r in rerun) >= len(done_at_kill)

    # The same port: the endpoint is part of every key, and the keys are compared.
    with OpenAIServer(port=port) as reference_server:
        reference: list = []
        engine = make_engine(
            reference_server.base_url, ledger=tmp_path / "ref.sqlite", max_concurrency=CONCURRENCY
        )
        run_requests(engine, (Request(messages(i), metadata={"i": i}) for i in range(N)), reference.append)
    assert {(r["key"], r["content"], r["ok"]) for r in rerun} == {(r.key, r.content, r.ok) for r in reference}

    hash_of = {
        request_key(
            "test-model", messages(i), endpoint=endpoint, temperature=1.0, max_tokens=MAX_TOKENS
        ): messages_hash(messages(i))
        for i in range(N)
    }
    assert set(hash_of) == {r["key"] for r in rerun}
    for key in done_at_kill:  # answered and committed before the kill: never paid for again
        assert billed[hash_of[key]] == billed_at_kill[hash_of[key]] == 1, f"seed {seed}"
    double = {h: n for h, n in billed.items() if n > 1}
    assert len(double) <= CONCURRENCY, f"seed {seed}: {len(double)} double-billed"
    assert set(billed) == set(hash_of.values())
