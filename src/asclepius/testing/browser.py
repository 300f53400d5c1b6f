"""A real browser for the apps' tests: Debian's headless Chromium driven by Playwright.

No browser is ever downloaded (``playwright install`` is never run): the tests use the
system's ``chromium`` (``make browser`` installs it) and skip, with one line saying why,
where it or the ``playwright`` package is missing. Apps run as real servers on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    """$ASCLEPIUS_CHROMIUM if set (a path that is not a file: no browser), else Debian's chromium."""
    chosen = os.environ.get("ASCLEPIUS_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    found = next((path for path in CHROMIUM_CANDIDATES if Path(path).is_file()), None)
    return found or shutil.which("chromium")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can); cheap: nothing is imported."""
    for package in ("playwright", "gradio"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed (pip install -e '.[app]')"
    if chromium_path() is None:
        return "no Chromium on this machine (make browser)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """``asclepius <command> ... --port P`` in a subprocess, up when its page answers."""

    def __init__(self, args: Sequence[str], *, log: Path, timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "asclepius.cli", *args, "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"{' '.join(args)} exited with {self.process.returncode}: {log.read_text()}"
                )
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{self.url} did not answer in {timeout:.0f} s: {log.read_text()}"
                    ) from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def needs_browser(test):
    """Skip ``test`` (before its fixtures run) with one line where the browser tests cannot run."""
    import pytest

    reason = missing_browser()
    return pytest.mark.skipif(reason is not None, reason=reason or "")(test)


def save_screenshot(page, path: Path, *, publish: bool = True) -> Path:
    """A full-page screenshot at ``path``; when ``publish``, copied to $ASCLEPIUS_SCREENSHOTS too if set
    (``docs/screenshots``, the README's)."""
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("ASCLEPIUS_SCREENSHOTS")
    if target and publish:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    return path
