"""Run every benchmark in bench/ and rewrite the results table in BENCHMARKS.md.

Each benchmark measures its own baseline in the same process (this machine is noisy)
and prints one ``BENCH_RESULT {json}`` line per figure. This runner collects those
lines and rewrites the block between the markers in BENCHMARKS.md; the prose around
the table (what each figure means, why a goal was missed) is kept.

    python bench/run_all.py            # every bench/*.py except this one and GPU-only ones
    python bench/run_all.py --quick    # pass --quick to each benchmark
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# Benchmarks that need an accelerator are run by hand on one (see BENCHMARKS.md).
GPU_ONLY = {"gpu_sft.py"}
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "openai")


def run_benchmark(script: Path, extra: list[str]) -> tuple[list[dict], float, int]:
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    results = []
    for line in process.stdout:
        sys.stdout.write(line)
        if line.startswith("BENCH_RESULT "):
            results.append(json.loads(line[len("BENCH_RESULT ") :]))
    return results, time.perf_counter() - start, process.wait()


def fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def render(rows: list[tuple[str, dict]], timings: dict[str, float], kept: list[str] = ()) -> str:
    """The results block; ``kept`` are table lines of benchmarks not run this time (``--only``)."""
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in PACKAGES if _installed(name))
    ran = ", ".join(f"`{script}`" for script in timings)
    lines = [
        f"Last run: {dt.date.today().isoformat()} on `{platform.node() or 'unknown'}` "
        f"({os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}); {versions}.",
        *([f"Rerun alone: {ran}; the other rows are from an earlier run."] if kept else []),
        "",
        "| benchmark | figure | value | baseline | ratio | goal | met | min / median / max |",
        "|---|---|---|---|---|---|---|---|",
        *kept,
    ]
    for script, result in rows:
        spread = (
            " / ".join(fmt(result.get(k)) for k in ("min", "median", "max")) if "median" in result else ""
        )
        lines.append(
            f"| `{script}` | {result['name']} | {fmt(result.get('value'))} | {fmt(result.get('baseline'))} "
            f"| {fmt(result.get('ratio'))} | {result.get('goal', '')} | {fmt(result.get('met'))} | {spread} |"
        )
    lines += [
        "",
        "Wall time per benchmark: " + ", ".join(f"`{k}` {v:.0f} s" for k, v in timings.items()) + ".",
    ]
    return "\n".join(lines)


def kept_rows(text: str, skip: set[str]) -> list[str]:
    """The table lines of the current results block whose benchmark is not in ``skip``."""
    block = re.search(re.escape(BEGIN) + r"(.*?)" + re.escape(END), text, flags=re.S)
    lines = block.group(1).splitlines() if block else []
    return [
        line for line in lines if (found := re.match(r"\| `([^`]+)` \|", line)) and found.group(1) not in skip
    ]


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="*", help="benchmark file names to run (default: all)")
    args = parser.parse_args()
    scripts = sorted(
        p for p in (ROOT / "bench").glob("*.py") if p.name not in GPU_ONLY | {Path(__file__).name}
    )
    if args.only:
        scripts = [p for p in scripts if p.name in args.only or p.stem in args.only]
    rows, timings, failed = [], {}, []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        results, seconds, code = run_benchmark(script, ["--quick"] if args.quick else [])
        timings[script.name] = seconds
        rows += [(script.name, result) for result in results]
        if code != 0 or not results:
            failed.append(script.name)
    text = (
        BENCHMARKS_MD.read_text(encoding="utf-8")
        if BENCHMARKS_MD.exists()
        else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    )
    # --only reruns some benchmarks: the rows of the others stay as they were.
    kept = kept_rows(text, skip=set(timings)) if args.only else []
    table = render(rows, timings, kept)
    text = re.sub(
        re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: f"{BEGIN}\n{table}\n{END}", text, flags=re.S
    )
    BENCHMARKS_MD.write_text(text, encoding="utf-8")
    print(f"\n{table}\n\nwrote {BENCHMARKS_MD}")
    if failed:
        print(f"benchmarks that failed or printed no result: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
