"""Request engine: throughput at a server's rate limit, 429 share, memory vs request count.

Against the bundled OpenAI-compatible test server (subprocess) enforcing 600 requests per
minute per second (a bucket of 10, refilled continuously) with 200 ms latency:

- the engine sends N requests (2,000; --quick 300), paced to the same 600 RPM;
- at the same time, against a second identical server, a baseline written like the
  classic openai-cookbook parallel processor: it starts with a full minute of capacity
  (so it bursts), retries failures up to 5 times, and pauses 15 s after any 429. It runs
  for as long as the engine needs (it would take far longer to finish) and its rate is
  what it completed in that time.

Figures: achieved / limit throughput (goal >= 0.95) and the share of responses that were
429 (goal <= 1%), engine vs baseline. Then, in child processes running in parallel with
the above (and each other), the tracemalloc peak of an engine run of 20,000 requests vs 2,000 (--quick
5,000 vs 500) against an unlimited server with no latency (goal: within 1.2x).

    python bench/request_engine.py            # ~5-6 minutes (2,000 requests at 600 RPM take 200 s)
    python bench/request_engine.py --quick    # ~1 minute

Batch row: the same N note-synthesis requests (the notes stage's real prompt around the
demo case reports; 1,000, --quick 200) through ``--backend sync`` and ``--backend batch``
against two in-process test servers, priced as gpt-4o-mini from the engine's table. The
figure is the cost per 1,000 notes from the usage each ledger recorded, batch vs sync
(goal 0.5x), with the Batch API calls the run spent (uploads, creates, downloads, and
status polls, which depend on how long batches take: the test server answers 100 lines
per poll; a real batch polled every 30 s costs one call per 30 s per open batch).

Token-bound rows: the notes stage's real prompts around the demo case reports
(``--max_tokens 1024``) against a server enforcing 400k tokens per minute per second that
charges prompt + max_tokens at admission, counted with its own tokenizer: 0.7x, 1.0x and
1.3x the engine's estimate (``token_factor``), and a server that gives back the max_tokens an answer did not use as
well as one that keeps them (``refund_unused_tokens``). Figures: the lowest achieved/limit
(the tokens the server's bucket was charged, per minute from the first to the last answer)
and the highest 429 share over the six (goals >= 0.97 and <= 1%); the baseline is the same engine with
learning from the server switched off (``Pacer.learn`` a no-op: the engine before it).

Prints one ``BENCH_RESULT {json}`` line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runnable from a checkout without installing

from asclepius import prompts  # noqa: E402
from asclepius.engine import Engine, EngineArguments, Request, run_requests  # noqa: E402
from asclepius.engine.ledger import Ledger  # noqa: E402
from asclepius.engine.pacing import Pacer  # noqa: E402
from asclepius.engine.request import estimate_prompt_tokens  # noqa: E402
from asclepius.testing.openai_server import OpenAIServer, serve_in_subprocess  # noqa: E402

LIMIT_RPM, LATENCY, MAX_TOKENS = 600, 0.2, 64
THROUGHPUT_GOAL, SHARE_429_GOAL, MEMORY_GOAL = 0.95, 0.01, 1.2
LIMIT_TPM, NOTE_MAX_TOKENS, TOKEN_FACTORS, TOKEN_GOAL = 400_000, 1024, (0.7, 1.0, 1.3), 0.97
BATCH_COST_GOAL = 0.5


def requests(n: int, tag: str):
    for i in range(n):
        yield Request([{"role": "user", "content": f"{tag} question {i}: summarise the discharge note."}])


def server_stats(base_url: str) -> collections.Counter:
    with urllib.request.urlopen(base_url.replace("/v1", "/billing"), timeout=30) as response:
        return collections.Counter(json.loads(response.read())["stats"])


async def engine_run(base_url: str, n: int, ledger: Path) -> dict:
    args = EngineArguments(
        base_url=base_url,
        model="bench",
        max_requests_per_minute=LIMIT_RPM,
        max_tokens_per_minute=1e9,  # only the request limit binds in this benchmark
        max_concurrency=64,
        show_progress=False,
    )
    engine = Engine(args, ledger, default_max_tokens=MAX_TOKENS, description="engine")
    try:
        ok = sum([result.ok async for result in engine.stream(requests(n, "engine"), total=n)])
    finally:
        await engine.aclose()
    return {"ok": ok, "elapsed": engine.summary.elapsed}


async def cookbook_baseline(base_url: str, n: int, seconds: float) -> dict:
    """The openai-cookbook api_request_parallel_processor.py loop, compactly.

    Capacity starts at a full minute and refills continuously up to a minute's worth;
    a request goes whenever capacity allows; failures are retried (5 attempts); after
    any 429 nobody starts for 15 s. Stopped after `seconds`.
    """
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=60)
    pending, retries = requests(n, "baseline"), collections.deque()
    capacity_requests, capacity_tokens, tpm = float(LIMIT_RPM), 1e9, 1e9
    state = {"ok": 0, "failed": 0, "last_429": -1e9}
    tasks: set[asyncio.Task] = set()

    async def call(request: Request, attempts_left: int) -> None:
        try:
            await client.chat.completions.create(
                model="bench", messages=request.messages, max_tokens=MAX_TOKENS
            )
            state["ok"] += 1
        except openai.APIError as error:
            if isinstance(error, openai.RateLimitError):
                state["last_429"] = time.monotonic()
            if attempts_left > 1:
                retries.append((request, attempts_left - 1))
            else:
                state["failed"] += 1

    start = last = time.monotonic()
    job = None
    while time.monotonic() - start < seconds:
        if job is None:
            job = retries.popleft() if retries else next(((r, 5) for r in pending), None)
        if job is None and not tasks:
            break
        now = time.monotonic()
        capacity_requests = min(LIMIT_RPM, capacity_requests + LIMIT_RPM * (now - last) / 60)
        capacity_tokens = min(tpm, capacity_tokens + tpm * (now - last) / 60)
        last = now
        cost = estimate_prompt_tokens(job[0].messages) + MAX_TOKENS if job else 0
        if job is not None and capacity_requests >= 1 and capacity_tokens >= cost:
            capacity_requests, capacity_tokens = capacity_requests - 1, capacity_tokens - cost
            task = asyncio.create_task(call(*job))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            job = None
        await asyncio.sleep(0.001)
        since_429 = time.monotonic() - state["last_429"]
        if since_429 < 15:
            await asyncio.sleep(min(15 - since_429, max(0.0, seconds - (time.monotonic() - start))))
    elapsed = time.monotonic() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    return {"ok": state["ok"], "elapsed": elapsed}


async def throughput(n: int, tmp: Path) -> tuple[dict, dict]:
    options = dict(requests_per_minute=LIMIT_RPM, latency=LATENCY)
    with serve_in_subprocess(**options) as engine_url, serve_in_subprocess(**options) as baseline_url:
        expected = n / LIMIT_RPM * 60
        engine, baseline = await asyncio.gather(
            engine_run(engine_url, n, tmp / "ledger.sqlite"), cookbook_baseline(baseline_url, n, expected)
        )
        for result, url in ((engine, engine_url), (baseline, baseline_url)):
            stats = server_stats(url)
            result["share_429"] = stats["429"] / max(1, sum(stats.values()))
            result["achieved"] = result["ok"] / result["elapsed"] * 60 / LIMIT_RPM
    return engine, baseline


def note_requests(n: int):
    """The notes stage's prompt around the demo case reports, cycled (each request distinct)."""
    import csv

    with (ROOT / "data" / "demo" / "case_reports.csv").open(newline="", encoding="utf-8") as handle:
        reports = [row["patient"] for row in csv.DictReader(handle)]
    for i in range(n):
        yield Request(prompts.note_messages(f"{reports[i % len(reports)]} (case {i})"))


def token_bound_run(n: int, factor: float, tmp: Path, *, learn: bool, refund: bool = True) -> dict:
    """n note requests against a token-bound server counting tokens `factor` x our estimate."""
    options = dict(
        tokens_per_minute=LIMIT_TPM,
        latency=0.1,
        latency_jitter=0.1,
        token_factor=factor,
        refund_unused_tokens=int(refund),
    )
    original = Pacer.learn
    if not learn:
        Pacer.learn = lambda self, *args, **kwargs: None  # the engine before it learned from the server
    try:
        with serve_in_subprocess(**options) as url:
            args = EngineArguments(
                base_url=url,
                model="bench",
                max_requests_per_minute=1e9,
                max_tokens_per_minute=LIMIT_TPM,
                max_concurrency=64,
                show_progress=False,
            )
            ledger = tmp / f"tokens-{factor}-{learn}-{refund}.sqlite"
            engine = Engine(args, ledger, default_max_tokens=NOTE_MAX_TOKENS)
            run_requests(engine, note_requests(n), lambda result: None)
            with urllib.request.urlopen(url.replace("/v1", "/billing"), timeout=30) as response:
                billing = json.loads(response.read())
    finally:
        Pacer.learn = original
    records = sorted(billing["records"], key=lambda record: record["time"])
    span = records[-1]["time"] - records[0]["time"]
    # What the server's bucket was charged for: the completion if it gave the rest back, else max_tokens.
    spent = "completion_tokens" if refund else "max_tokens"
    used = sum(record["prompt_tokens"] + record[spent] for record in records[1:])
    stats = collections.Counter(billing["stats"])
    return {"achieved": used / span * 60 / LIMIT_TPM, "share_429": stats["429"] / max(1, sum(stats.values()))}


def token_bound(n: int, tmp: Path) -> dict:
    """Every (server kind, token factor) for the engine, then for the baseline; the runs of one
    engine are paced (mostly waiting), so they overlap in threads, one event loop each."""
    out = {}
    cases = [(refund, factor) for refund in (True, False) for factor in TOKEN_FACTORS]
    for learn in (True, False):
        runs: dict = {}

        def one(case, learn=learn, runs=runs):
            runs[case] = token_bound_run(n, case[1], tmp, learn=learn, refund=case[0])

        threads = [threading.Thread(target=one, args=(case,)) for case in cases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for (refund, factor), run in sorted(runs.items()):
            print(
                f"token-bound, server {'refunds' if refund else 'keeps'} unused max_tokens, counts {factor}x, "
                f"{'engine' if learn else 'baseline (no learning)'}: {run['achieved']:.3f} of the limit, "
                f"{run['share_429']:.1%} of responses 429",
                flush=True,
            )
        out["engine" if learn else "baseline"] = {
            "achieved": min(run["achieved"] for run in runs.values()),
            "share_429": max(run["share_429"] for run in runs.values()),
        }
    return out


def batch_vs_sync(n: int, tmp: Path) -> dict:
    """Cost per 1,000 notes from recorded usage, sync vs batch, and the batch run's API calls."""
    out = {}
    for backend in ("sync", "batch"):
        ledger = tmp / f"{backend}.sqlite"
        with OpenAIServer(batch_requests_per_poll=100) as server:
            args = EngineArguments(
                base_url=server.base_url,
                model="gpt-4o-mini",  # priced from the engine's table; the test server answers any name
                backend=backend,
                max_requests_per_minute=1e9,
                max_tokens_per_minute=1e12,
                batch_poll_seconds=0.01,
                show_progress=False,
            )
            engine = Engine(args, ledger, default_max_tokens=1024, description=backend)
            start = time.monotonic()
            run_requests(engine, note_requests(n), lambda result: None)
            elapsed = time.monotonic() - start
        reader = Ledger(ledger)
        spent = reader.spent()
        reader.close()
        out[backend] = {
            "cost_per_1000": spent / n * 1000,
            "elapsed": elapsed,
            "calls": engine.summary.batch_api_calls,
            "polls": engine.summary.batch_polls,
            "billed": len(server.billing),
        }
        print(
            f"{backend}: ${out[backend]['cost_per_1000']:.4f} per 1,000 notes, {elapsed:.1f} s, "
            f"{engine.summary.batch_api_calls} batch API calls ({engine.summary.batch_polls} polls)",
            flush=True,
        )
    return out


def memory_run(n: int) -> None:
    """Child process: tracemalloc peak of one engine run of n requests (prints MEMORY {json})."""
    logging.disable(logging.INFO)
    with serve_in_subprocess() as base_url, tempfile.TemporaryDirectory() as tmp:

        def engine(name: str) -> Engine:
            args = EngineArguments(
                base_url=base_url,
                model="bench",
                max_requests_per_minute=1e9,
                max_tokens_per_minute=1e12,
                max_concurrency=16,
                show_progress=False,
            )
            return Engine(args, Path(tmp) / name, default_max_tokens=MAX_TOKENS)

        run_requests(engine("warmup.sqlite"), requests(50, "warmup"), lambda r: None)  # imports, first client
        count = [0]
        engine_ = engine("ledger.sqlite")
        tracemalloc.start()
        start = time.monotonic()
        run_requests(engine_, requests(n, "memory"), lambda r: count.__setitem__(0, count[0] + 1))
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print("MEMORY " + json.dumps({"n": n, "results": count[0], "peak": peak, "elapsed": elapsed}), flush=True)


def measure_memory(n: int, out: dict) -> None:
    """Each size in its own process: a fresh interpreter, so neither peak includes the other."""
    process = subprocess.run(
        [sys.executable, __file__, "--memory-run", str(n)], capture_output=True, text=True, check=True
    )
    line = next(line for line in process.stdout.splitlines() if line.startswith("MEMORY "))
    out[n] = json.loads(line[len("MEMORY ") :])
    print(
        f"memory: {n:,} requests, peak {out[n]['peak'] / 1e6:.2f} MB ({out[n]['elapsed']:.0f} s)", flush=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--memory-run", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run is not None:
        memory_run(args.memory_run)
        return 0
    logging.basicConfig(level=logging.WARNING)
    n = 300 if args.quick else 2000
    sizes = [500, 5000] if args.quick else [2000, 20000]

    # The memory runs are CPU-bound (tracemalloc slows Python ~4x) and the throughput runs
    # are paced (200 s for 2,000 requests, mostly waiting): overlap them all.
    memory: dict = {}
    memory_threads = [threading.Thread(target=measure_memory, args=(size, memory)) for size in sizes]
    for thread in memory_threads:
        thread.start()
    with tempfile.TemporaryDirectory() as tmp:
        batch = batch_vs_sync(200 if args.quick else 1000, Path(tmp))
        engine, baseline = asyncio.run(throughput(n, Path(tmp)))
        tokens = token_bound(100 if args.quick else 300, Path(tmp))
    for name, result in (("engine", engine), ("cookbook baseline", baseline)):
        print(
            f"{name}: {result['ok']:,} ok in {result['elapsed']:.1f} s = {result['achieved']:.3f} of {LIMIT_RPM} RPM, "
            f"{result['share_429']:.1%} of responses 429",
            flush=True,
        )
    for thread in memory_threads:
        thread.join()

    small, large = memory[sizes[0]], memory[sizes[1]]
    figures = [
        {
            "name": f"request engine achieved/limit throughput, {n:,} requests, test server at {LIMIT_RPM} RPM "
            f"(per second), {LATENCY * 1000:.0f} ms latency; baseline = cookbook parallel processor",
            "value": round(engine["achieved"], 3),
            "baseline": round(baseline["achieved"], 3),
            "ratio": round(engine["achieved"] / max(baseline["achieved"], 1e-9), 2),
            "goal": f">= {THROUGHPUT_GOAL}",
            "met": engine["achieved"] >= THROUGHPUT_GOAL,
        },
        {
            "name": "request engine share of responses that were 429, same runs",
            "value": round(engine["share_429"], 4),
            "baseline": round(baseline["share_429"], 4),
            "ratio": round(engine["share_429"] / max(baseline["share_429"], 1e-9), 4),
            "goal": f"<= {SHARE_429_GOAL:.0%}",
            "met": engine["share_429"] <= SHARE_429_GOAL,
        },
        {
            "name": f"request engine tracemalloc peak (MB), {sizes[1]:,} requests vs {sizes[0]:,} (baseline), "
            "unlimited server, 0 latency, concurrency 16",
            "value": round(large["peak"] / 1e6, 2),
            "baseline": round(small["peak"] / 1e6, 2),
            "ratio": round(large["peak"] / small["peak"], 3),
            "goal": f"<= {MEMORY_GOAL}x",
            "met": large["peak"] / small["peak"] <= MEMORY_GOAL and large["results"] == sizes[1],
        },
        {
            "name": f"request engine cost per 1,000 notes (USD, gpt-4o-mini prices, recorded usage), --backend "
            f"batch vs sync (baseline), {batch['batch']['billed']:,} note requests; batch API calls: "
            f"{batch['batch']['calls']} ({batch['batch']['polls']} status polls)",
            "value": round(batch["batch"]["cost_per_1000"], 4),
            "baseline": round(batch["sync"]["cost_per_1000"], 4),
            "ratio": round(batch["batch"]["cost_per_1000"] / batch["sync"]["cost_per_1000"], 3),
            "goal": f"<= {BATCH_COST_GOAL}x",
            "met": batch["batch"]["cost_per_1000"] <= BATCH_COST_GOAL * batch["sync"]["cost_per_1000"] + 1e-12
            and batch["batch"]["billed"] == batch["sync"]["billed"],
        },
        {
            "name": f"request engine achieved/limit tokens, token-bound: notes prompts, max_tokens "
            f"{NOTE_MAX_TOKENS}, {LIMIT_TPM:,} TPM per second charged prompt + max_tokens at admission, the "
            f"server counting {'/'.join(f'{f}x' for f in TOKEN_FACTORS)} our estimate, refunding unused max_tokens or not (lowest of the six); "
            "baseline = the engine without learning from the server",
            "value": round(tokens["engine"]["achieved"], 3),
            "baseline": round(tokens["baseline"]["achieved"], 3),
            "ratio": round(tokens["engine"]["achieved"] / max(tokens["baseline"]["achieved"], 1e-9), 2),
            "goal": f">= {TOKEN_GOAL}",
            "met": tokens["engine"]["achieved"] >= TOKEN_GOAL,
        },
        {
            "name": "request engine share of responses that were 429, token-bound runs (highest of the six)",
            "value": round(tokens["engine"]["share_429"], 4),
            "baseline": round(tokens["baseline"]["share_429"], 4),
            "ratio": round(tokens["engine"]["share_429"] / max(tokens["baseline"]["share_429"], 1e-9), 4),
            "goal": f"<= {SHARE_429_GOAL:.0%}",
            "met": tokens["engine"]["share_429"] <= SHARE_429_GOAL,
        },
    ]
    for figure in figures:
        print("BENCH_RESULT " + json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
