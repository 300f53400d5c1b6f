"""The learning-signal benchmark's statistics: paired intervals, bits per byte, goals and the BENCHMARKS.md block."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = {"notes": ["1", "2", "3", "4", "5"], "cases": ["1", "2", "3", "4", "5"]}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("learning_signal", ROOT / "bench" / "learning_signal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.BOOTSTRAP = 300  # the statistics, not their precision, are under test: kept fast
    return module


def _documents(nll: float, spread: float = 0.01) -> np.ndarray:
    return np.array([[nll + spread * i, 100 + i, 400 + 4 * i] for i in range(5)])


def _scores(note_nll: float, rouge: list[float], case_nll: float | None = None) -> dict:
    notes = _documents(note_nll)
    return {
        "notes": notes,
        "real": notes,
        "cases": _documents(3.0 if case_nll is None else case_nll),
        "answers": np.array([[2.0, 50]] * len(rouge)),
        "rouge": np.array(rouge),
        "examples": ["an answer"],
    }


def _setup(n_rows: int, n_test_rows: int | None = None) -> dict:
    return {
        "n_notes": 5, "n_real": 5, "n_cases": 5, "n_rows": n_rows, "n_test_rows": n_test_rows or n_rows,
        "real_source": "test corpus", "sft_steps": 6, "max_new_tokens": 64,
    }  # fmt: skip


def test_perplexity_is_token_weighted_and_bits_per_byte_counts_bytes(bench):
    rows = np.array([[1.0, 100, 50], [3.0, 300, 150]])
    assert bench.perplexity(rows) == pytest.approx(math.exp(2.5))
    # 1000 nats over 200 bytes
    assert bench.bits_per_byte(rows) == pytest.approx(1000 / math.log(2) / 200)


def test_a_paired_interval_sees_a_change_that_unpaired_intervals_hide(bench):
    """Documents of very different difficulty, each 2% easier under the second model."""
    rng = np.random.default_rng(1)
    base = np.array([[nll, 300, 1200] for nll in rng.uniform(1.5, 4.5, size=30)])
    cpt = base.copy()
    cpt[:, 0] -= 0.02
    own_base, own_cpt = bench.bootstrap(base, bench.perplexity), bench.bootstrap(cpt, bench.perplexity)
    assert own_cpt[1] > own_base[0]  # each model's own intervals overlap
    low, high = bench.bootstrap(bench.paired(base, cpt), bench.perplexity_change)
    assert high < 0 and low == pytest.approx(math.exp(-0.02) - 1, abs=1e-6)


def test_pairs_must_cover_the_same_documents(bench):
    with pytest.raises(ValueError, match="same documents"):
        bench.paired(_documents(3.0), _documents(3.0)[:4])


def test_goals_follow_the_paired_differences(bench):
    scores = {
        "base": _scores(3.0, [0.1, 0.1, 0.2, 0.1] * 8),
        "cpt": _scores(2.5, [0.1, 0.1, 0.2, 0.1] * 8),
        "sft": _scores(2.5, [0.3, 0.4, 0.3, 0.5] * 8),
    }
    table, results = bench.render(scores, _setup(32, 40), PATIENTS)
    reduction, gain = results
    assert reduction["value"] == pytest.approx(1 - math.exp(-0.5), abs=1e-3) and reduction["met"]
    assert reduction["min"] == pytest.approx(reduction["value"], abs=1e-6)  # the same change on every note
    assert gain["value"] == pytest.approx(0.25) and gain["met"] and gain["min"] > 0
    assert "| sft |" in table and "goal >= 10%: met" in table and "the first 32 of 40 held-out" in table
    assert "| cpt - base | -39.3% [-39.3, -39.3] (5/5 lower) |" in table


def test_the_rouge_goal_needs_thirty_rows(bench):
    scores = {
        "base": _scores(3.0, [0.1, 0.1, 0.2, 0.1]),
        "cpt": _scores(2.5, [0.1, 0.1, 0.2, 0.1]),
        "sft": _scores(2.5, [0.3, 0.4, 0.3, 0.5]),
    }
    table, (_, gain) = bench.render(scores, _setup(4), PATIENTS)
    assert gain["min"] > 0 and not gain["met"]
    assert "all 4 held-out instruction rows (the test split has no more)" in table
    assert "interval above zero on >= 30 rows: MISSED" in table


def test_a_run_stopped_before_sft_reports_base_and_cpt(bench):
    scores = {"base": _scores(3.0, [0.1] * 4), "cpt": _scores(2.5, [0.1] * 4)}
    scores["base"]["benchmarks"] = {"pubmedqa": np.array([1.0, 0.0, 1.0])}  # CPT not run on it: no column
    table, results = bench.render(scores, _setup(4), PATIENTS)
    assert [r["name"].split(":")[0] for r in results] == ["CPT"]
    assert "| cpt - base |" in table and "| sft" not in table and "pubmedqa" not in table
    assert "SFT: **not scored in this run**" in table


def test_a_gain_within_noise_is_reported_missed(bench):
    scores = {
        "base": _scores(3.0, [0.1, 0.3, 0.2, 0.4] * 8),
        "cpt": _scores(2.99, [0.1, 0.3, 0.2, 0.4] * 8),
        "sft": _scores(2.99, [0.3, 0.1, 0.2, 0.41] * 8),
    }
    _, (reduction, gain) = bench.render(scores, _setup(32), PATIENTS)
    assert not reduction["met"] and not gain["met"]


def test_case_reports_relatively_harder_after_training_on_notes(bench):
    scores = {
        "base": _scores(3.0, [0.1] * 4, case_nll=3.0),
        "cpt": _scores(2.5, [0.1] * 4, case_nll=2.9),  # notes much easier, case reports a little
        "sft": _scores(2.5, [0.1] * 4, case_nll=2.5),  # both equally easier
    }
    table, _ = bench.render(scores, _setup(4), PATIENTS)
    cpt_line = next(line for line in table.splitlines() if line.startswith("- CPT vs base, case reports"))
    sft_line = next(line for line in table.splitlines() if line.startswith("- SFT vs base, case reports"))
    assert "paired over 5 patients" in cpt_line and cpt_line.endswith("case reports relatively harder.")
    assert "-9.5% on case reports vs -39.3% on notes" in cpt_line
    assert sft_line.endswith("not told apart.")
    assert "| case reports ppl | case reports bits/byte |" in table


def test_case_reports_follow_the_notes_patients(bench, tmp_path):
    csv = tmp_path / "reports.csv"
    csv.write_text('patient_id,patient\n1,"first, report"\n2,second\n3,third\n', encoding="utf-8")
    assert bench.read_case_reports(str(csv), ["3", "1"]) == (["third", "first, report"], ["3", "1"])
    with pytest.raises(Exception, match="held-out patient"):
        bench.read_case_reports(str(csv), ["4"])


def test_benchmark_columns_have_intervals_and_paired_differences(bench):
    scores = {
        "base": _scores(3.0, [0.1, 0.1, 0.2, 0.1]),
        "cpt": _scores(2.5, [0.1, 0.1, 0.2, 0.1]),
        "sft": _scores(2.5, [0.3, 0.4, 0.3, 0.5]),
    }
    scores["base"]["benchmarks"] = {"medqa_5options": np.array([0.0] * 30 + [1.0] * 10)}
    scores["cpt"]["benchmarks"] = {"medqa_5options": np.array([0.0] * 30 + [1.0] * 10)}
    scores["sft"]["benchmarks"] = {"medqa_5options": np.array([1.0] * 40)}
    table, _ = bench.render(scores, _setup(4), PATIENTS)
    assert "| ROUGE-L | medqa_5options acc |" in table and "first 40 medqa_5options questions" in table
    assert "| 0.250 [0.142, 0.402] |" in table  # 10 of 40, Wilson interval
    assert "CPT vs base, medqa_5options accuracy (paired, 40 questions): +0.000" in table
    assert "SFT vs base, medqa_5options accuracy (paired, 40 questions): +0.750" in table
    assert table.count("not distinguishable from zero") == 1


def test_scores_are_reused_only_with_the_same_settings(bench, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"notes": np.array([[1.0, 2.0, 3.0]]), "examples": ["a"], "benchmarks": {"t": np.array([1.0])}}

    path = tmp_path / "base-texts.json"
    first = bench.cached(path, {"rows": 30}, compute)
    again = bench.cached(path, {"rows": 30}, compute)
    assert len(calls) == 1 and np.array_equal(again["notes"], first["notes"]) and again["examples"] == ["a"]
    assert np.array_equal(again["benchmarks"]["t"], [1.0])
    bench.cached(path, {"rows": 8}, compute)
    assert len(calls) == 2 and json.loads(path.read_text())["settings"] == {"rows": 8}


def test_table_block_is_replaced_in_place(bench, tmp_path, monkeypatch):
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nprose\n", encoding="utf-8")
    monkeypatch.setattr(bench, "BENCHMARKS_MD", target)
    bench.write_table("first")
    bench.write_table("second")
    text = target.read_text()
    assert "prose" in text and "second" in text and "first" not in text
    assert text.count(bench.BEGIN) == 1
