"""The paper's scale, simulated: 158,114 note requests through ``--backend batch``.

The published dataset has 158,114 rows. This runs the notes stage's requests at that
scale (the notes stage's real prompt around the demo case reports, cycled, each with a
distinct suffix so every request is distinct; ``max_tokens`` 1024) through the engine's
Batch API backend with the real limits (``EngineArguments`` defaults: 50,000 requests and
200 MB per input file, rounds of 50,000), against the project's test server (in this
process, on 127.0.0.1; it answers 2,500 lines of a batch per status poll). The engine
runs in a child process (this script with ``--drive``) so that its peak RSS is its own
and it can be killed.

Three runs, each against a fresh server and ledger:

- 1/10 scale (15,811 requests), uninterrupted: the baseline of the memory, time and ledger figures;
- full scale, uninterrupted: files uploaded and batches created (server's counts) against the
  fewest the limits allow, peak RSS, wall time per 10k requests, ledger size on disk;
- full scale again, killed with SIGKILL once half the requests are billed (the first
  batch is then collected into the ledger, the second submitted and partly answered), then rerun with the same command: the
  server's billing log must bill every request once and no request may be in two
  uploaded files (nothing uploaded or billed twice).

    python bench/paper_scale.py              # 158,114 requests (~6 min on 2 shared cores, ~6 GB RAM)
    python bench/paper_scale.py --scale 0.5  # half
    python bench/paper_scale.py --quick      # scale 0.05 (7,906 requests), a smoke run

Not part of ``make test``; prints one ``BENCH_RESULT {json}`` line per figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runnable from a checkout without installing
sys.path.insert(0, str(ROOT / "bench"))

from request_engine import note_requests  # noqa: E402  (the notes stage's prompt, one place)

from asclepius.engine.config import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS  # noqa: E402
from asclepius.testing.openai_server import OpenAIServer  # noqa: E402

PAPER_ROWS = 158_114  # rows of the published Asclepius synthetic dataset
NOTE_MAX_TOKENS = 1024
POLLS_PER_BATCH = 20  # the test server answers 1/20 of a full batch file per status poll
BASELINE_FRACTION = 0.1


# --- the child: one engine run, its own peak RSS --------------------------------------------
def drive(base_url: str, ledger: str, n: int, batch_max_requests: int) -> None:
    """Run n note requests through the batch backend; print DRIVE {json} (results, peak RSS)."""
    from asclepius.engine import Engine, EngineArguments, run_requests

    args = EngineArguments(
        base_url=base_url,
        model="bench",
        backend="batch",
        # Defaults at full scale (rounds of one full file); lowered together by the tests.
        batch_max_requests=batch_max_requests,
        batch_round_size=batch_max_requests,
        batch_poll_seconds=0.05,
        show_progress=False,
    )
    engine = Engine(args, ledger, default_max_tokens=NOTE_MAX_TOKENS, description="notes")
    counts = {"results": 0, "ok": 0, "from_ledger": 0}

    def on_result(result) -> None:  # counted, not kept: the stage writes rows out as they come
        counts["results"] += 1
        counts["ok"] += result.ok
        counts["from_ledger"] += result.from_ledger

    start = time.monotonic()
    run_requests(engine, note_requests(n), on_result)
    counts |= {
        "elapsed": time.monotonic() - start,
        "peak_rss": peak_rss(),
        "batches_created": engine.summary.batches_created,
        "batch_api_calls": engine.summary.batch_api_calls,
    }
    print("DRIVE " + json.dumps(counts), flush=True)


def peak_rss() -> int:
    """Bytes: this process's high-water resident set. VmHWM, not ru_maxrss: on Linux ru_maxrss
    keeps the RSS of the process that spawned us (the parent, holding the server), VmHWM is ours."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux (macOS: bytes)


# --- the parent: servers, runs, kill, checks -------------------------------------------------
def start_driver(server: OpenAIServer, folder: Path, n: int, batch_max_requests: int) -> subprocess.Popen:
    command = [sys.executable, __file__, "--drive", server.base_url, str(folder / "ledger.sqlite"), str(n)]
    command += ["--batch_max_requests", str(batch_max_requests)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the engine run failed (exit {process.returncode}):\n{out}")
    line = next(line for line in out.splitlines() if line.startswith("DRIVE "))
    return json.loads(line[len("DRIVE ") :])


def disk_mb(folder: Path, pattern: str) -> float:
    return sum(path.stat().st_size for path in folder.glob(pattern)) / 1e6


def server_counts(server: OpenAIServer, n: int, batch_max_requests: int) -> dict:
    """What the server saw: uploads, batches, billing; and whether anything happened twice."""
    uploaded = [f for f in server.batch.files.values() if f["purpose"] == "batch"]
    files_per_key: dict[str, int] = {}
    for file in uploaded:
        for text in file["_content"].splitlines():
            key = json.loads(text)["custom_id"]
            files_per_key[key] = files_per_key.get(key, 0) + 1
    input_bytes = sum(file["bytes"] for file in uploaded)
    return {
        "files_uploaded": len(uploaded),
        "upload_calls": server.batch.calls["files.create"],
        "batches_created": len(server.batch.batches),
        "input_bytes": input_bytes,
        # The fewest files the limits allow; >= this many, whatever the engine does.
        "fewest_files": max(math.ceil(n / batch_max_requests), math.ceil(input_bytes / BATCH_MAX_BYTES)),
        "requests_uploaded": len(files_per_key),
        "uploaded_twice": sum(count > 1 for count in files_per_key.values()),
        "billed": len(server.billing),
        "billed_twice": len(server.billing.double_billed()),
    }


def one_run(n: int, tmp: Path, name: str, batch_max_requests: int, *, kill_at: float | None = None) -> dict:
    """n requests against a fresh server; with kill_at, SIGKILL once that share is billed, then rerun."""
    folder = tmp / name
    folder.mkdir()
    poll = max(1, batch_max_requests // POLLS_PER_BATCH)
    with OpenAIServer(batch_requests_per_poll=poll) as server:
        run: dict = {}
        if kill_at is not None:
            process = start_driver(server, folder, n, batch_max_requests)
            while len(server.billing) < kill_at * n:
                if process.poll() is not None:
                    raise SystemExit(f"{name}: the engine run ended before {kill_at:.0%} was billed")
                time.sleep(0.02)
            # The server may print a "Connection reset by peer" traceback: the killed client's socket.
            print(f"{name} run: SIGKILL to the engine at {len(server.billing):,} billed", flush=True)
            process.send_signal(signal.SIGKILL)
            process.wait()
            run["billed_at_kill"] = len(server.billing)
            run["uploads_at_kill"] = server.batch.calls["files.create"]
            run["batches_at_kill"] = len(server.batch.batches)
        start = time.monotonic()
        run |= finish(start_driver(server, folder, n, batch_max_requests))
        run["wall"] = time.monotonic() - start
        run |= server_counts(server, n, batch_max_requests)
    run["ledger_mb"] = disk_mb(folder, "ledger.sqlite*")
    run["batch_files_mb"] = disk_mb(folder / "batches", "*.jsonl")
    run["n"] = n
    print(f"{name}: {json.dumps(run)}", flush=True)
    if run["results"] != n or run["ok"] != n:
        raise SystemExit(f"{name}: {run['ok']} of {n} requests answered")
    return run


def figures(full: dict, small: dict, killed: dict, batch_max_requests: int) -> list[dict]:
    n, limits = full["n"], f"{batch_max_requests:,} requests / {BATCH_MAX_BYTES // 2**20} MB per file"
    per_10k = {run["n"]: run["elapsed"] / run["n"] * 10_000 for run in (full, small)}
    return [
        {
            "name": f"paper scale: batch input files uploaded, {n:,} note requests ({full['input_bytes'] / 1e6:,.0f} MB "
            f"of JSONL), limits {limits}, batches created: {full['batches_created']}; baseline = the fewest the "
            "limits allow",
            "value": full["files_uploaded"],
            "baseline": full["fewest_files"],
            "ratio": round(full["files_uploaded"] / full["fewest_files"], 3),
            "goal": "= fewest",
            "met": full["files_uploaded"] == full["batches_created"] == full["fewest_files"],
        },
        {
            "name": f"paper scale: wall time (s) per 10k requests, {n:,} requests vs {small['n']:,} (baseline), "
            f"test server answering {max(1, batch_max_requests // POLLS_PER_BATCH):,} lines per 0.05 s poll; "
            f"total {full['elapsed']:.0f} s",
            "value": round(per_10k[n], 2),
            "baseline": round(per_10k[small["n"]], 2),
            "ratio": round(per_10k[n] / per_10k[small["n"]], 2),
        },
        {
            "name": f"paper scale: engine peak RSS (MB), {n:,} requests vs {small['n']:,} (baseline); rounds of "
            f"{batch_max_requests:,} requests bound it",
            "value": round(full["peak_rss"] / 1e6, 1),
            "baseline": round(small["peak_rss"] / 1e6, 1),
            "ratio": round(full["peak_rss"] / small["peak_rss"], 2),
        },
        {
            "name": f"paper scale: ledger size on disk (MB, SQLite), {n:,} requests vs {small['n']:,} (baseline); "
            f"plus {full['batch_files_mb']:,.0f} MB of batch input files kept beside it",
            "value": round(full["ledger_mb"], 3),
            "baseline": round(small["ledger_mb"], 3),
            "ratio": round(full["ledger_mb"] / max(small["ledger_mb"], 1e-9), 2),
        },
        {
            "name": f"paper scale: kill -9 once {killed['billed_at_kill']:,} of {n:,} were billed "
            f"({killed['uploads_at_kill']} files uploaded, {killed['batches_at_kill']} batches created), then "
            f"rerun: requests billed twice + requests uploaded twice (resumed run: {killed['files_uploaded']} "
            f"files, {killed['batches_created']} batches, {killed['billed']:,} billed, "
            f"{killed['from_ledger']:,} served from the ledger, {killed['billed'] - killed['billed_at_kill']:,} billed "
            "after the kill)",
            "value": killed["billed_twice"] + killed["uploaded_twice"],
            "goal": "0",
            "met": killed["billed_twice"] == killed["uploaded_twice"] == 0
            and killed["billed"] == killed["requests_uploaded"] == n
            and killed["upload_calls"] == killed["files_uploaded"] == killed["batches_created"],
        },
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the paper's 158,114 rows")
    parser.add_argument("--quick", action="store_true", help="scale 0.05 (a smoke run)")
    parser.add_argument("--requests", type=int, default=None, help="exact request count (overrides --scale)")
    parser.add_argument("--batch_max_requests", type=int, default=BATCH_MAX_REQUESTS, help=argparse.SUPPRESS)
    parser.add_argument("--drive", nargs=3, metavar=("BASE_URL", "LEDGER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        base_url, ledger, n = args.drive
        drive(base_url, ledger, int(n), args.batch_max_requests)
        return 0
    n = args.requests or round(PAPER_ROWS * (0.05 if args.quick else args.scale))
    small_n = max(1, round(n * BASELINE_FRACTION))
    with tempfile.TemporaryDirectory(prefix="paper-scale-") as tmp:
        small = one_run(small_n, Path(tmp), "baseline", args.batch_max_requests)
        full = one_run(n, Path(tmp), "full", args.batch_max_requests)
        killed = one_run(n, Path(tmp), "killed", args.batch_max_requests, kill_at=0.5)
    for figure in figures(full, small, killed, args.batch_max_requests):
        print("BENCH_RESULT " + json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
