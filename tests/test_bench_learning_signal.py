"""The learning-signal benchmark's statistics: paired intervals, goals and the BENCHMARKS.md block."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("learning_signal", ROOT / "bench" / "learning_signal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(note_nll: float, rouge: list[float]) -> dict:
    notes = np.array([[note_nll + 0.01 * i, 100 + i] for i in range(5)])
    return {
        "notes": notes,
        "real": notes,
        "answers": np.array([[2.0, 50]] * 4),
        "rouge": np.array(rouge),
        "examples": ["an answer"],
    }


def test_perplexity_is_token_weighted(bench):
    rows = np.array([[1.0, 100], [3.0, 300]])
    assert bench.perplexity(rows) == pytest.approx(math.exp(2.5))


def test_goals_follow_the_paired_differences(bench):
    scores = {
        "base": _scores(3.0, [0.1, 0.1, 0.2, 0.1]),
        "cpt": _scores(2.5, [0.1, 0.1, 0.2, 0.1]),
        "sft": _scores(2.5, [0.3, 0.4, 0.3, 0.5]),
    }
    table, results = bench.render(scores, 5, 5, 4, "test corpus", 6)
    reduction, gain = results
    assert reduction["value"] == pytest.approx(1 - math.exp(-0.5), abs=1e-3) and reduction["met"]
    assert gain["value"] == pytest.approx(0.25) and gain["met"] and gain["min"] > 0
    assert "| sft |" in table and "goal >= 10%: met" in table


def test_a_gain_within_noise_is_reported_missed(bench):
    scores = {
        "base": _scores(3.0, [0.1, 0.3, 0.2, 0.4]),
        "cpt": _scores(2.99, [0.1, 0.3, 0.2, 0.4]),
        "sft": _scores(2.99, [0.3, 0.1, 0.2, 0.41]),
    }
    _, (reduction, gain) = bench.render(scores, 5, 5, 4, "test corpus", 6)
    assert not reduction["met"] and not gain["met"]


def test_benchmark_columns_have_intervals_and_paired_differences(bench):
    scores = {
        "base": _scores(3.0, [0.1, 0.1, 0.2, 0.1]),
        "cpt": _scores(2.5, [0.1, 0.1, 0.2, 0.1]),
        "sft": _scores(2.5, [0.3, 0.4, 0.3, 0.5]),
    }
    scores["base"]["benchmarks"] = {"medqa_5options": np.array([0.0] * 30 + [1.0] * 10)}
    scores["cpt"]["benchmarks"] = {"medqa_5options": np.array([0.0] * 30 + [1.0] * 10)}
    scores["sft"]["benchmarks"] = {"medqa_5options": np.array([1.0] * 40)}
    table, _ = bench.render(scores, 5, 5, 4, "test corpus", 6)
    assert "| ROUGE-L | medqa_5options acc |" in table and "first 40 medqa_5options questions" in table
    assert "| 0.250 [0.142, 0.402] |" in table  # 10 of 40, Wilson interval
    assert "CPT vs base, medqa_5options accuracy (paired, 40 questions): +0.000" in table
    assert "SFT vs base, medqa_5options accuracy (paired, 40 questions): +0.750" in table
    assert table.count("not distinguishable from zero") == 1


def test_table_block_is_replaced_in_place(bench, tmp_path, monkeypatch):
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nprose\n", encoding="utf-8")
    monkeypatch.setattr(bench, "BENCHMARKS_MD", target)
    bench.write_table("first")
    bench.write_table("second")
    text = target.read_text()
    assert "prose" in text and "second" in text and "first" not in text
    assert text.count(bench.BEGIN) == 1
