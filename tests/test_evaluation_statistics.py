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
    assert result["rouge_l"] == 0.5 and result["n"] == 2  # the row without a reference is left out
    assert result["ci95"] == [0.0, 1.0]  # two items, 1.0 and 0.0: every resample mean lies in [0, 1]
    # A non-answer scores 0: answering one of two items is not as good as answering both.
    both = statistics.rouge_l(["fever", "cough"], ["fever", "cough"])
    one = statistics.rouge_l(["fever", "cough"], ["fever", ""])
    assert both["rouge_l"] == 1.0 and one["rouge_l"] == 0.5 and one["n"] == 2
    assert statistics.rouge_l([None], ["x"]) == {"rouge_l": None, "ci95": [None, None], "n": 0}
    lengths = statistics.answer_lengths(["one two three", None, "one"])
    assert lengths == {"mean_words": 2.0, "median_words": 2.0, "answered": 2, "no_answer": 1}


def test_non_answers_count_as_unacceptable_in_the_headline():
    """A model answering 1 of 4 items must not score like one answering all 4 (issue 11, item 9)."""
    from asclepius.evaluation.judging import Item

    items = [Item(key=f"i{k}", note="n", question="q", task="Summarization", reference=None, patient_id=k,
                  answers={"all": "yes", "one": "yes" if k == 0 else None}) for k in range(4)]  # fmt: skip
    judged = [row(f"i{k}", "all", 4) for k in range(4)] + [row("i0", "one", 4, position=1)]
    frame = statistics.scores_frame(judged + statistics.non_answer_rows(items, ["all", "one"], [0]))
    means = statistics.mean_scores(frame, ["all", "one"], samples=200, seed=0)
    assert means["all"]["mean_score"] == 4.0 and means["all"]["answer_rate"] == 1.0
    assert means["one"]["mean_score"] == pytest.approx((4 + 1 + 1 + 1) / 4)  # not 4.0
    assert means["one"]["mean_score_answered"] == 4.0 and means["one"]["answer_rate"] == 0.25
    assert means["one"]["n_items"] == 4 and means["one"]["ci95"][0] < 4.0
    wins = statistics.win_rates(frame, ["all", "one"])
    assert (wins["all"]["one"]["wins"], wins["all"]["one"]["ties"]) == (3, 1)
    # Non-answers are not judgements: neither missing nor in the score distribution or position bias.
    assert statistics.missing(frame, ["one"])["by_model"]["one"]["judgements"] == 1
    assert statistics.distribution(frame, ["one"])["one"] == {"1": 0, "2": 0, "3": 0, "4": 1}
    assert statistics.position_bias(frame)["n_by_position"] == {"A": 4, "B": 1}


def test_quadratic_kappa_matches_a_hand_computed_case():
    # Observed weighted disagreement (0 + 1 + 1)/3 = 2/3, expected under independent margins
    # sum((i-j)^2)/9 = 12/9 (weights' scale cancels): kappa = 1 - (2/3)/(12/9) = 0.5.
    assert statistics.quadratic_kappa([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert statistics.quadratic_kappa([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    # Full reversal on 1..4: observed (9+1+1+9)/4 = 5, expected sum((i-j)^2)/16 = 40/16: kappa = 1 - 2 = -1.
    assert statistics.quadratic_kappa([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Near misses cost less than far ones: quadratic weights, unlike plain kappa.
    assert statistics.quadratic_kappa([1, 2, 3, 4], [2, 3, 4, 4]) > statistics.quadratic_kappa(
        [1, 2, 3, 4], [4, 1, 1, 2]
    )


def test_krippendorff_alpha_matches_the_published_example():
    """Krippendorff (2011), 'Computing Krippendorff's Alpha-Reliability', 4 observers x 12 units: ordinal 0.815."""
    nan = float("nan")
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]  # fmt: skip
    assert statistics.ordinal_alpha(data, value_domain=[1, 2, 3, 4, 5]) == pytest.approx(0.815, abs=5e-4)
    assert statistics.ordinal_alpha([[1, 2, 3, 4], [1, 2, 3, 4]]) == pytest.approx(1.0)
    assert np.isnan(statistics.ordinal_alpha([[2, 2, 2], [2, 2, 2]]))  # no variation: undefined


def test_spearman_matches_a_hand_computed_case():
    # Rank differences 0, 1, -1, 0: rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8.
    assert statistics.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert np.isnan(statistics.spearman([1, 2, 3], [2, 2, 2]))


def test_agreement_has_a_reproducible_bootstrap_interval_over_items():
    import pandas as pd

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 5, size=60)
    noisy = np.clip(truth + rng.integers(-1, 2, size=60), 1, 4)
    table = pd.DataFrame({"item_id": np.repeat(np.arange(30), 2), "a": truth, "b": noisy})
    for name in ("kappa", "spearman", "alpha"):
        result = statistics.agreement(table, ["a", "b"], name, samples=300, seed=0)
        assert result == statistics.agreement(table, ["a", "b"], name, samples=300, seed=0)
        assert result["ci95"][0] <= result["value"] <= result["ci95"][1] and result["n_units"] == 60
        assert 0.3 < result["value"] < 1.0
    same = statistics.agreement(table, ["a", "a"], "kappa", samples=50, seed=0)
    assert same["value"] == 1.0 and same["ci95"] == [1.0, 1.0]
