"""Statistics of the judge's scores: bootstrap intervals, missing judgements, win rates, position bias."""

from __future__ import annotations

import numpy as np
import pytest

from asclepius.evaluation import statistics


def row(item, model, score, *, shuffle=0, position=0, task="Summarization", reason=None):
    return {"item_id": item, "task": task, "shuffle": shuffle, "model": model, "label": "ABCD"[position],
            "position": position, "num_candidates": 2, "score": score,
            "missing_reason": reason if score is None else None}  # fmt: skip


def test_bootstrap_is_reproducible_and_contains_the_mean():
    rng = np.random.default_rng(123)
    for size in (3, 10, 57, 400):
        values = rng.integers(1, 5, size=size).tolist()
        first = statistics.bootstrap_ci(values, samples=500, seed=0)
        assert first == statistics.bootstrap_ci(values, samples=500, seed=0)
        mean, low, high = first
        assert mean == pytest.approx(np.mean(values)) and low <= mean <= high
    # Another seed resamples differently; more data narrows the interval.
    values = rng.integers(1, 5, size=50).tolist()
    assert statistics.bootstrap_ci(values, samples=500, seed=1) != statistics.bootstrap_ci(
        values, samples=500, seed=2
    )
    wide = statistics.bootstrap_ci(values[:10], samples=500, seed=0)
    narrow = statistics.bootstrap_ci(values * 20, samples=500, seed=0)
    assert narrow[2] - narrow[1] < wide[2] - wide[1]
    assert all(np.isnan(statistics.bootstrap_ci([], samples=10, seed=0)))


def test_missing_judgements_are_left_out_never_scored():
    rows = [row("i1", "m", 4), row("i2", "m", None, reason="unparseable"), row("i3", "m", 2),
            row("i1", "n", 1, position=1), row("i2", "n", None, position=1, reason="unparseable"),
            row("i3", "n", 1, position=1)]  # fmt: skip
    frame = statistics.scores_frame(rows)
    means = statistics.mean_scores(frame, ["m", "n"], samples=100, seed=0)
    assert means["m"]["mean_score"] == 3.0 and means["m"]["n_items"] == 2  # (4 + 2) / 2, not (4 + 0 + 2) / 3
    missing = statistics.missing(frame, ["m", "n"])
    assert (missing["judge_calls"], missing["missing"], missing["rate"]) == (
        3,
        1,
        pytest.approx(1 / 3, abs=1e-4),
    )
    assert missing["by_reason"] == {"unparseable": 1} and missing["by_model"]["m"]["missing"] == 1
    assert statistics.distribution(frame, ["m"])["m"] == {"1": 0, "2": 1, "3": 0, "4": 1}


def test_item_score_is_the_mean_over_shuffles():
    rows = [row("i1", "m", 4, shuffle=0), row("i1", "m", 2, shuffle=1), row("i2", "m", 3, shuffle=0),
            row("i2", "m", None, shuffle=1, reason="unparseable")]  # fmt: skip
    means = statistics.mean_scores(statistics.scores_frame(rows), ["m"], samples=100, seed=0)
    assert means["m"]["mean_score"] == 3.0  # items: (4+2)/2 = 3 and 3


def test_win_rates_count_ties_as_half():
    rows = []
    for k, (a, b) in enumerate([(4, 2), (3, 3), (1, 2), (4, 1)]):
        rows += [row(f"i{k}", "a", a), row(f"i{k}", "b", b, position=1)]
    rates = statistics.win_rates(statistics.scores_frame(rows), ["a", "b"])
    assert rates["a"]["b"] == {"wins": 2, "ties": 1, "losses": 1, "n": 4, "win_rate": 0.625}
    assert rates["b"]["a"]["win_rate"] == 0.375


def test_position_bias_shows_a_favoured_position():
    rows = []
    for k in range(6):  # whatever the model, the answer shown first gets 4 and the second 1
        first, second = ("a", "b") if k % 2 else ("b", "a")
        rows += [
            row(f"i{k // 2}", first, 4, shuffle=k % 2),
            row(f"i{k // 2}", second, 1, shuffle=k % 2, position=1),
        ]
    bias = statistics.position_bias(statistics.scores_frame(rows))
    assert bias["mean_by_position"] == {"A": 4.0, "B": 1.0} and bias["spread"] == 3.0
    # Each (item, model) was shown once first and once second: the shuffles never agree.
    assert (
        bias["shuffle_agreement"] == 0.0
        and bias["mean_abs_difference"] == 3.0
        and bias["pairs_compared"] == 6
    )


def test_rouge_l_and_lengths():
    result = statistics.rouge_l(
        ["the patient had pneumonia", "fever", None], ["the patient had pneumonia", "cough", "x"]
    )
    assert result == {"rouge_l": 0.5, "n": 2}
    lengths = statistics.answer_lengths(["one two three", None, "one"])
    assert lengths == {"mean_words": 2.0, "median_words": 2.0, "answered": 2, "no_answer": 1}
