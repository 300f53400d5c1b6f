"""bench/paper_scale.py at a tiny scale: its figures, and a kill -9 that bills and uploads nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_paper_scale_run_reports_files_memory_ledger_and_a_clean_resume():
    # 300 requests in files of 100 (rounds of one file, as the defaults' 50,000 are): 3 files.
    process = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "paper_scale.py"),
            "--requests",
            "300",
            "--batch_max_requests",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert process.returncode == 0, process.stdout + process.stderr
    lines = process.stdout.splitlines()
    runs = {
        name: json.loads(line.split(": ", 1)[1])
        for line in lines
        for name in ("baseline", "full", "killed")
        if line.startswith(f"{name}: ")
    }
    figures = [json.loads(line[len("BENCH_RESULT ") :]) for line in lines if line.startswith("BENCH_RESULT ")]
    files, per_10k, rss, ledger, resume = figures

    assert runs["baseline"]["n"] == 30 and runs["full"]["n"] == 300
    assert (files["value"], files["baseline"], files["met"]) == (3, 3, True)
    assert runs["full"]["batches_created"] == 3 and runs["full"]["billed"] == 300
    assert per_10k["value"] > 0 and per_10k["baseline"] > 0
    assert 50 < rss["value"] < 2000 and 50 < rss["baseline"] < 2000  # MB of one Python process
    assert ledger["value"] > ledger["baseline"] > 0

    killed = runs["killed"]
    # Killed mid-run: the first file's results were in the ledger, the second batch partly answered.
    assert 150 <= killed["billed_at_kill"] < 300 and killed["from_ledger"] >= 100
    assert killed["billed"] == 300 and killed["billed_twice"] == 0
    assert killed["requests_uploaded"] == 300 and killed["uploaded_twice"] == 0
    assert killed["upload_calls"] == killed["files_uploaded"] == killed["batches_created"] == 3
    assert resume["value"] == 0 and resume["met"]
