"""serve_model stops its server however the process holding it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# A child that serves a stand-in "transformers serve" (a plain HTTP server answering /health)
# through serve_model, prints the server's pid, then waits to be terminated.
CHILD = r"""
import subprocess, sys, time
import asclepius.serving as serving

stand_in = ("import http.server, sys\n"
            "port = int(sys.argv[sys.argv.index('--port') + 1])\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers()\n"
            "    def log_message(self, *a): pass\n"
            "http.server.HTTPServer(('127.0.0.1', port), H).serve_forever()\n")
serving._serve_command = lambda: [sys.executable, "-c", stand_in]
with serving.serve_model("any-model") as url:
    port = int(url.split(":")[-1].split("/")[0])
    pids = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True).stdout.split()
    print(" ".join(pids), flush=True)
    time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone for our purpose
        return handle.read().split()[2] != "Z"


def test_a_terminated_holder_stops_the_server():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        servers = [int(pid) for pid in child.stdout.readline().split()]
        assert servers and all(alive(pid) for pid in servers)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in servers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in servers)
    finally:
        child.kill()
