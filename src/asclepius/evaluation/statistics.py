"""Numbers from the judge's scores: means with bootstrap intervals, win rates, position bias.

Everything starts from the long table of :func:`judging.score_rows` (one row per item,
shuffle and model; ``score`` None where the judgement is missing). A model's score on an
item is the mean of its readable scores over the shuffles; the bootstrap resamples
items, the unit the evaluation set samples, with a fixed seed so the intervals are
reproducible.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SCORES = (1, 2, 3, 4)


def bootstrap_ci(
    values: Sequence[float], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean; NaNs for no values."""
    data = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(data.mean()), float(low), float(high)


def scores_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    columns = [
        "item_id",
        "task",
        "shuffle",
        "model",
        "label",
        "position",
        "num_candidates",
        "score",
        "missing_reason",
    ]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    return frame


def item_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """item_id x model: the mean readable score over shuffles (NaN where there is none)."""
    valid = frame.dropna(subset=["score"])
    table = valid.groupby(["item_id", "model"])["score"].mean().unstack("model")
    return table.reindex(index=pd.unique(frame["item_id"]), columns=pd.unique(frame["model"]))


def mean_scores(
    frame: pd.DataFrame, models: Sequence[str], *, samples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per model: mean, 95% interval and number of items scored."""
    per_item = item_scores(frame)
    result = {}
    for model in models:
        values = per_item[model].dropna().tolist() if model in per_item else []
        mean, low, high = bootstrap_ci(values, samples=samples, seed=seed)
        result[model] = {"mean_score": _num(mean), "ci95": [_num(low), _num(high)], "n_items": len(values)}
    return result


def mean_scores_by_task(
    frame: pd.DataFrame, models: Sequence[str], *, samples: int, seed: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> model -> mean, interval, items."""
    result = {}
    for task in sorted(t for t in frame["task"].dropna().unique()):
        result[str(task)] = mean_scores(frame[frame["task"] == task], models, samples=samples, seed=seed)
    return result


def distribution(frame: pd.DataFrame, models: Sequence[str]) -> dict[str, dict[str, int]]:
    """model -> {"1": count, ..., "4": count} over every readable judgement."""
    valid = frame.dropna(subset=["score"])
    result = {}
    for model in models:
        counts = valid[valid["model"] == model]["score"].astype(int).value_counts()
        result[model] = {str(s): int(counts.get(s, 0)) for s in SCORES}
    return result


def missing(frame: pd.DataFrame, models: Sequence[str]) -> dict[str, Any]:
    """Missing judgements: overall, per model and by reason (a missing one is never a score)."""
    calls = frame.drop_duplicates(["item_id", "shuffle"])
    missing_calls = calls[calls["score"].isna()]
    per_model = {}
    for model in models:
        rows = frame[frame["model"] == model]
        count = int(rows["score"].isna().sum())
        per_model[model] = {"judgements": len(rows), "missing": count, "rate": _rate(count, len(rows))}
    reasons = missing_calls["missing_reason"].fillna("unknown").value_counts()
    return {
        "judge_calls": len(calls),
        "missing": len(missing_calls),
        "rate": _rate(len(missing_calls), len(calls)),
        "by_reason": {str(k): int(v) for k, v in reasons.items()},
        "by_model": per_model,
    }


def win_rates(frame: pd.DataFrame, models: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """a -> b -> wins/ties/losses of a against b in the same judgements; win_rate counts ties as half."""
    valid = frame.dropna(subset=["score"])
    wide = valid.pivot_table(index=["item_id", "shuffle"], columns="model", values="score", aggfunc="first")
    result: dict[str, dict[str, dict[str, Any]]] = {a: {} for a in models}
    for a, b in itertools.permutations(models, 2):
        if a not in wide or b not in wide:
            pair = pd.DataFrame(columns=[a, b])
        else:
            pair = wide[[a, b]].dropna()
        wins, ties = int((pair[a] > pair[b]).sum()), int((pair[a] == pair[b]).sum())
        n = len(pair)
        result[a][b] = {
            "wins": wins,
            "ties": ties,
            "losses": n - wins - ties,
            "n": n,
            "win_rate": _num((wins + 0.5 * ties) / n) if n else None,
        }
    return result


def position_bias(frame: pd.DataFrame) -> dict[str, Any]:
    """Mean score by label position (A, B, ...), and how consistent shuffles of one item are.

    Orders are random, so without position bias every position's mean is the same up to
    noise; ``spread`` (highest minus lowest position mean) summarises the gap. With
    ``--num_shuffles`` > 1 the same answer is graded in different positions:
    ``shuffle_agreement`` is the share of (item, model) pairs whose readable scores all
    agree, ``mean_abs_difference`` the mean |difference| over pairs of shuffles.
    """
    valid = frame.dropna(subset=["score"])
    by_label = valid.groupby("label")["score"].agg(["mean", "count"]).sort_index()
    means = {str(label): _num(row["mean"]) for label, row in by_label.iterrows()}
    counts = {str(label): int(row["count"]) for label, row in by_label.iterrows()}
    well_sampled = [row["mean"] for _, row in by_label.iterrows() if row["count"] > 0]
    result: dict[str, Any] = {
        "mean_by_position": means,
        "n_by_position": counts,
        "spread": _num(max(well_sampled) - min(well_sampled)) if len(well_sampled) > 1 else None,
    }
    agreement, differences, pairs_compared = [], [], 0
    for _, group in valid.groupby(["item_id", "model"]):
        scores = group["score"].tolist()
        if len(scores) < 2:
            continue
        pairs_compared += 1
        agreement.append(len(set(scores)) == 1)
        differences.extend(abs(x - y) for x, y in itertools.combinations(scores, 2))
    result["shuffle_agreement"] = _num(float(np.mean(agreement))) if agreement else None
    result["mean_abs_difference"] = _num(float(np.mean(differences))) if differences else None
    result["pairs_compared"] = pairs_compared
    return result


def rouge_l(references: Sequence[str | None], candidates: Sequence[str | None]) -> dict[str, Any]:
    """Mean ROUGE-L F1 of each answer against its reference, over rows that have both."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    values = [
        scorer.score(ref, cand)["rougeL"].fmeasure
        for ref, cand in zip(references, candidates)
        if ref and ref.strip() and cand and cand.strip()
    ]
    return {"rouge_l": _num(float(np.mean(values))) if values else None, "n": len(values)}


def answer_lengths(answers: Sequence[str | None]) -> dict[str, Any]:
    """Words per answer (mean, median) over the answers that exist, and how many are missing."""
    words = [len(a.split()) for a in answers if a]
    return {
        "mean_words": _num(float(np.mean(words))) if words else None,
        "median_words": _num(float(np.median(words))) if words else None,
        "answered": len(words),
        "no_answer": len(answers) - len(words),
    }


def _num(value: float | None, digits: int = 4) -> float | None:
    """JSON-friendly rounding; NaN becomes None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return round(float(value), digits)


def _rate(count: int, total: int) -> float | None:
    return _num(count / total) if total else None
