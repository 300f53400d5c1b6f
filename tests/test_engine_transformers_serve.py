"""The engine against a real OpenAI-compatible server: `transformers serve` on the tiny model."""

from __future__ import annotations

import pytest

from asclepius.engine import Request, run_requests

pytest.importorskip("asclepius.tiny")


def test_engine_talks_to_transformers_serve(tiny_serve, make_engine, tmp_path):
    base_url, model_path = tiny_serve
    requests = [
        Request([{"role": "user", "content": f"Summarise case {i}."}], metadata={"i": i}) for i in range(4)
    ]
    engine = make_engine(base_url, model=model_path, max_tokens=16, max_concurrency=2, request_timeout=60.0)
    results = []
    summary = run_requests(engine, requests, results.append)
    assert sorted(r.request.metadata["i"] for r in results) == [0, 1, 2, 3]
    for result in results:
        assert result.ok and isinstance(result.content, str) and result.finish_reason in ("stop", "length")
        assert 0 < result.usage["completion_tokens"] <= 16 and result.usage["prompt_tokens"] > 0
    assert summary.sent == 4 and summary.calls == 4 and summary.completion_tokens > 0

    again = make_engine(base_url, model=model_path, max_tokens=16)
    rerun = []
    run_requests(again, requests, rerun.append)
    assert all(r.from_ledger for r in rerun) and again.summary.sent == 0


def test_raw_prompts_reach_transformers_serve_as_given_even_without_a_chat_template(
    tiny_model_path, make_engine, tmp_path
):
    """/v1/completions: the server tokenizes the prompt's exact bytes; no chat template is needed or applied."""
    import json
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from transformers import AutoTokenizer

    from asclepius.evaluation.prompting import api_request

    bare = tmp_path / "no-chat-template"
    shutil.copytree(tiny_model_path, bare)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(bare)
    assert not tokenizer.chat_template

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("transformers")), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu", str(bare)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(720):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.25)
        request = api_request("asclepius", "Pt admitted w/ CAP, tx abx, d/c home.", "What was treated?")
        engine = make_engine(
            f"http://127.0.0.1:{port}/v1", model=str(bare), max_tokens=8, request_timeout=120.0
        )
        results = []
        run_requests(engine, [request], results.append)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    [result] = results
    assert result.ok and isinstance(result.content, str), result.error
    # The prompt tokens are those of the prompt alone (BOS included, as locally): nothing wrapped it.
    assert result.usage["prompt_tokens"] == len(tokenizer(request.prompt)["input_ids"])
