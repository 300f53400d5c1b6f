"""Numbers from the judge's scores: means with bootstrap intervals, win rates, position bias.

Everything starts from the long table of :func:`judging.score_rows` (one row per item,
shuffle and model; ``score`` None where the judgement is missing). A model's score on an
item is the mean of its readable scores over the shuffles; the bootstrap resamples
items, the unit the evaluation set samples, with a fixed seed so the intervals are
reproducible.

A candidate that gave no answer (failed or empty) is not shown to the judge, but it did
not complete the instruction: :func:`non_answer_rows` scores it 1 (Unacceptable) on that
item, so the headline mean, interval, win rates and model-index of a model that answers
1 of 4 items are not those of a model that answers all 4. ``answered`` tells these rows
apart, for the mean over answered items and the answer rate.

Agreement between raters (clinicians, the judge) uses maintained implementations:
quadratic-weighted Cohen's kappa from scikit-learn, ordinal Krippendorff's alpha from
``krippendorff``, Spearman's rho from SciPy, each with a bootstrap interval over items.
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
        "source",
        "answered",
    ]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    frame["answered"] = frame["answered"].map(lambda value: value is not False)  # judged rows lack the key
    return frame


NON_ANSWER_SCORE = 1  # "Unacceptable": the candidate did not complete the instruction


def non_answer_rows(items, models: Sequence[str], shuffles: Sequence[int]) -> list[dict[str, Any]]:
    """Score rows of NON_ANSWER_SCORE for every (item, shuffle, model) the model gave no answer to.

    ``items`` are :class:`judging.Item`; one row per shuffle keeps them paired with the
    other candidates' judgements in win rates.
    """
    rows = []
    for item in items:
        for model in models:
            if model in item.answers and item.answers[model] is None:
                for shuffle in shuffles:
                    rows.append(
                        {
                            "item_id": item.key,
                            "task": item.task,
                            "source": getattr(item, "source", None),
                            "shuffle": shuffle,
                            "model": model,
                            "label": None,
                            "position": None,
                            "num_candidates": None,
                            "score": NON_ANSWER_SCORE,
                            "missing_reason": None,
                            "answered": False,
                        }
                    )
    return rows


def judged(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the rows the judge saw (non-answers left out)."""
    return frame[frame["answered"]]


def item_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """item_id x model: the mean readable score over shuffles (NaN where there is none)."""
    valid = frame.dropna(subset=["score"])
    table = valid.groupby(["item_id", "model"])["score"].mean().unstack("model")
    return table.reindex(index=pd.unique(frame["item_id"]), columns=pd.unique(frame["model"]))


def mean_scores(
    frame: pd.DataFrame, models: Sequence[str], *, samples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per model: mean (non-answers count 1), 95% interval, items scored; and the same over answered items."""
    per_item = item_scores(frame)
    answered = item_scores(judged(frame)) if len(frame) else per_item
    result = {}
    for model in models:
        values = per_item[model].dropna().tolist() if model in per_item else []
        mean, low, high = bootstrap_ci(values, samples=samples, seed=seed)
        only = answered[model].dropna().tolist() if model in answered else []
        a_mean, a_low, a_high = bootstrap_ci(only, samples=samples, seed=seed)
        rows = frame[frame["model"] == model].drop_duplicates("item_id")
        result[model] = {
            "mean_score": _num(mean),
            "ci95": [_num(low), _num(high)],
            "n_items": len(values),
            "mean_score_answered": _num(a_mean),
            "ci95_answered": [_num(a_low), _num(a_high)],
            "answer_rate": _rate(int(rows["answered"].sum()), len(rows)),
        }
    return result


def mean_scores_by(
    frame: pd.DataFrame, column: str, models: Sequence[str], *, samples: int, seed: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """value of ``column`` (task, source) -> model -> mean, interval, items."""
    result = {}
    for value in sorted(str(v) for v in frame[column].dropna().unique()):
        part = frame[frame[column].astype(str) == value]
        result[value] = mean_scores(part, models, samples=samples, seed=seed)
    return result


def mean_scores_by_task(
    frame: pd.DataFrame, models: Sequence[str], *, samples: int, seed: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> model -> mean, interval, items."""
    return mean_scores_by(frame, "task", models, samples=samples, seed=seed)


def distribution(frame: pd.DataFrame, models: Sequence[str]) -> dict[str, dict[str, int]]:
    """model -> {"1": count, ..., "4": count} over every readable judgement (non-answers left out)."""
    valid = judged(frame).dropna(subset=["score"])
    result = {}
    for model in models:
        counts = valid[valid["model"] == model]["score"].astype(int).value_counts()
        result[model] = {str(s): int(counts.get(s, 0)) for s in SCORES}
    return result


def missing(frame: pd.DataFrame, models: Sequence[str]) -> dict[str, Any]:
    """Missing judgements: overall, per model and by reason (a missing one is never a score)."""
    frame = judged(frame)
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
    valid = judged(frame).dropna(subset=["score"])
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
    for _, group in valid.groupby(["item_id", "model"]):  # non-answers are 1 in every shuffle: left out
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


def rouge_l(
    references: Sequence[str | None], candidates: Sequence[str | None], *, samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Mean ROUGE-L F1 of each answer against its reference, with a 95% bootstrap interval over items.

    Items without a reference are left out; an item with a reference but no answer (failed
    or empty) scores 0, as a non-answer counts against a model in the judge's means too.
    """
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    values = [
        scorer.score(ref, cand)["rougeL"].fmeasure if cand and cand.strip() else 0.0
        for ref, cand in zip(references, candidates)
        if ref and ref.strip()
    ]
    if not values:
        return {"rouge_l": None, "ci95": [None, None], "n": 0}
    mean, low, high = bootstrap_ci(values, samples=samples, seed=seed)
    return {"rouge_l": _num(mean), "ci95": [_num(low), _num(high)], "n": len(values)}


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


# --- agreement between raters -------------------------------------------------------
def quadratic_kappa(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's kappa with quadratic weights on the 1-4 scale (NaN when undefined, e.g. one constant rater)."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    if len(a) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when neither rater varies: NaN is the answer
        return float(
            cohen_kappa_score(
                np.asarray(a, int), np.asarray(b, int), labels=list(SCORES), weights="quadratic"
            )
        )


def ordinal_alpha(matrix: Sequence[Sequence[float]], value_domain: Sequence[int] = SCORES) -> float:
    """Krippendorff's alpha, ordinal, of a raters x units matrix (NaN: that rater did not rate that unit)."""
    import krippendorff

    data = np.asarray(matrix, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2 or np.count_nonzero(~np.isnan(data).any(axis=0)) < 2:
        return float("nan")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 without variation: NaN is the answer
            return float(
                krippendorff.alpha(
                    reliability_data=data, level_of_measurement="ordinal", value_domain=list(value_domain)
                )
            )
    except (ValueError, ZeroDivisionError):  # no variation at all: alpha is undefined
        return float("nan")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (NaN when a side is constant)."""
    import warnings

    from scipy.stats import spearmanr

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def _pair_statistic(name: str):
    function = {"kappa": quadratic_kappa, "spearman": spearman}[name]

    def statistic(table: pd.DataFrame) -> float:
        pair = table.dropna()
        return function(pair.iloc[:, 0].tolist(), pair.iloc[:, 1].tolist())

    return statistic


def _alpha_statistic(table: pd.DataFrame) -> float:
    return ordinal_alpha(table.to_numpy(dtype=float).T)


AGREEMENT_STATISTICS = {
    "kappa": _pair_statistic("kappa"),
    "spearman": _pair_statistic("spearman"),
    "alpha": _alpha_statistic,
}


def agreement(
    table: pd.DataFrame,
    raters: Sequence[str],
    statistic: str,
    *,
    samples: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """One agreement statistic of ``raters`` (columns of ``table``) with a bootstrap interval over items.

    ``table`` has one row per rated unit (an answer to an item) and an ``item_id`` column;
    the bootstrap resamples items (all of an item's answers together), the unit that was
    sampled, and skips resamples where the statistic is undefined.
    """
    compute = AGREEMENT_STATISTICS[statistic]
    columns = list(raters)
    value = compute(table[columns])
    units = (
        len(table[columns].dropna())
        if statistic != "alpha"
        else int(table[columns].notna().sum(axis=1).ge(2).sum())
    )
    groups = [np.asarray(index) for index in table.groupby("item_id", sort=False).indices.values()]
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(samples if groups else 0):
        chosen = rng.integers(0, len(groups), size=len(groups))
        rows = np.concatenate([groups[i] for i in chosen])
        replicate = compute(table[columns].iloc[rows])
        if not np.isnan(replicate):
            replicates.append(replicate)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail]) if replicates else (np.nan, np.nan)
    return {
        "value": _num(value),
        "ci95": [_num(low), _num(high)],
        "n_units": units,
        "bootstrap_valid": len(replicates),
    }
