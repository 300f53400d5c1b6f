"""`make bench ARGS="--only X"` reruns X and keeps the other benchmarks' rows of BENCHMARKS.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_runner():
    spec = importlib.util.spec_from_file_location("bench_run_all", ROOT / "bench" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_keeps_the_rows_of_the_benchmarks_it_did_not_run():
    runner = load_runner()
    text = "\n".join([
        "# Benchmarks", runner.BEGIN, "Last run: then.", "",
        "| benchmark | figure | value | baseline | ratio | goal | met | min / median / max |",
        "|---|---|---|---|---|---|---|---|",
        "| `generation.py` | samples/s | 3.67 | 0.257 | 14.3 | >= 10x | yes |  |",
        "| `request_engine.py` | achieved/limit | 1 | 0.07 | 14.2 | >= 0.95 | yes |  |",
        "", "Wall time per benchmark: `generation.py` 64 s.", runner.END, "prose",
    ])  # fmt: skip
    kept = runner.kept_rows(text, skip={"request_engine.py"})
    assert kept == ["| `generation.py` | samples/s | 3.67 | 0.257 | 14.3 | >= 10x | yes |  |"]
    rows = [("request_engine.py", {"name": "achieved/limit", "value": 0.99, "goal": ">= 0.97", "met": True})]
    table = runner.render(rows, {"request_engine.py": 230.0}, kept)
    assert "Rerun alone: `request_engine.py`; the other rows are from an earlier run." in table
    lines = table.splitlines()
    assert lines.index(kept[0]) < next(i for i, line in enumerate(lines) if "| 0.99 |" in line)
    assert "the other rows" not in runner.render(rows, {"request_engine.py": 230.0})
