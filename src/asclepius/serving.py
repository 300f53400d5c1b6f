"""Serve a local model over the OpenAI API with ``transformers serve``, for as long as you need it.

The demo uses this as its teacher and judge, and the tests use it as a real
OpenAI-compatible endpoint. The server binds to 127.0.0.1 on a free port and is
stopped when the ``with`` block ends, also on an exception or Ctrl-C, so no stray
server outlives the run.

    with serve_model("outputs/tiny-model") as base_url:
        ...  # OpenAI(base_url=base_url, api_key="EMPTY"), model="outputs/tiny-model"
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_command() -> list[str]:
    # Prefer the console script next to this interpreter (the project's venv).
    script = Path(sys.executable).with_name("transformers")
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("transformers")
    if found is None:
        raise RuntimeError(
            "`transformers serve` not found: install the serving extra, pip install -e '.[serving]'"
        )
    return [found, "serve"]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"transformers serve exited with code {process.returncode} before it was ready"
            )
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.25)
    raise TimeoutError(f"transformers serve not healthy after {timeout:.0f}s at {url}")


def stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def serve_model(
    model_path: str | os.PathLike,
    *,
    port: int | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    log_file: str | os.PathLike | None = None,
    startup_timeout: float = 180.0,
) -> Iterator[str]:
    """Run ``transformers serve MODEL`` on 127.0.0.1 and yield its ``.../v1`` base URL."""
    port = port or free_port()
    command = [
        *_serve_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        device,
        "--dtype",  # auto: the checkpoint's own
        dtype,
        str(model_path),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - closed below
    # A new session gives the server its own process group, so we can stop it and its children at once.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    logger.info("transformers serve %s on 127.0.0.1:%d (pid %d)", model_path, port, process.pid)
    # The server lives in its own session, so a SIGTERM to us (`timeout`, a job scheduler) would
    # leave it generating: turn it into an exit that runs the cleanup below.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", process, startup_timeout)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process_group(process)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if log is not subprocess.DEVNULL:
            log.close()


def _exit_on_sigterm(signum: int, frame) -> None:
    raise SystemExit(128 + signum)
