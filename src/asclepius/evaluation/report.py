"""``results.json``, ``report.md`` and plots from the judge's scores.

The plots use matplotlib's Agg backend (files only, no display), so the report renders
on a headless server or in CI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from asclepius.evaluation import statistics
from asclepius.evaluation.judging import SCORE_NAMES, Item, paper_style_means
from asclepius.stage.files import atomic_write_text
from asclepius.stage.provenance import UNKNOWN, Provenance, restricted


def build_results(
    score_rows: Sequence[Mapping[str, Any]],
    items: Sequence[Item],
    models: Sequence[str],
    *,
    bootstrap_samples: int,
    bootstrap_seed: int,
) -> dict[str, Any]:
    """Every number of the report, per model and overall, and broken down by source.

    A candidate's non-answers count 1 (Unacceptable) in the headline numbers; the mean
    over answered items and the answer rate sit beside them.
    """
    shuffles = sorted({int(row["shuffle"]) for row in score_rows}) or [0]
    frame = statistics.scores_frame([*score_rows, *statistics.non_answer_rows(items, models, shuffles)])
    results = _results_of(
        frame, items, models, bootstrap_samples=bootstrap_samples, bootstrap_seed=bootstrap_seed
    )
    sources = sorted({str(item.source) for item in items if getattr(item, "source", None) is not None})
    if sources:
        results["by_source"] = {}
        for source in sources:
            part = [item for item in items if str(item.source) == source]
            results["by_source"][source] = _results_of(
                frame[frame["source"].astype(str) == source],
                part,
                models,
                bootstrap_samples=bootstrap_samples,
                bootstrap_seed=bootstrap_seed,
            )
    results["paper_style"] = paper_style_results(score_rows)
    return results


def paper_style_results(score_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The paper's rule beside ours: per model, the mean with 0 for every unreadable judgement."""
    judged = [row for row in score_rows if "paper_score" in row]
    return paper_style_means(judged) if judged else {}


def _results_of(frame, items, models, *, bootstrap_samples: int, bootstrap_seed: int) -> dict[str, Any]:
    means = statistics.mean_scores(frame, models, samples=bootstrap_samples, seed=bootstrap_seed)
    by_task = statistics.mean_scores_by_task(frame, models, samples=bootstrap_samples, seed=bootstrap_seed)
    dist = statistics.distribution(frame, models)
    missing = statistics.missing(frame, models)
    per_model = {}
    for model in models:
        answers = [item.answers.get(model) for item in items]
        per_model[model] = {
            **means[model],
            "distribution": dist[model],
            "missing_rate": missing["by_model"][model]["rate"],
            "missing": missing["by_model"][model],
            "by_task": {task: scores[model] for task, scores in by_task.items()},
            "lengths": statistics.answer_lengths(answers),
            **_rouge(model, [item.reference for item in items], answers),
        }
    return {
        "models": per_model,
        "win_rates": statistics.win_rates(frame, models),
        "position_bias": statistics.position_bias(frame),
        "missing": {k: v for k, v in missing.items() if k != "by_model"},
        "bootstrap": {
            "samples": bootstrap_samples,
            "seed": bootstrap_seed,
            "confidence": 0.95,
            "unit": "item",
        },
    }


def _rouge(model: str, references, answers) -> dict[str, Any]:
    """ROUGE-L F1 against the references; none for the references themselves (it would be 1.0)."""
    if model == "reference":
        return {"rougeL": None, "rougeL_ci95": [None, None], "rougeL_n": 0}
    rouge = statistics.rouge_l(references, answers)
    return {"rougeL": rouge["rouge_l"], "rougeL_ci95": rouge["ci95"], "rougeL_n": rouge["n"]}


def write_results_json(output_dir: str | os.PathLike, results: Mapping[str, Any]) -> Path:
    path = Path(output_dir) / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return path


# --- plots ------------------------------------------------------------------------
def write_plots(output_dir: str | os.PathLike, results: Mapping[str, Any]) -> list[Path]:
    """scores.png, distribution.png, by_task.png, position_bias.png under ``plots/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(output_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    models = list(results["models"])
    written = []

    # Mean score with its 95% interval.
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(models) + 2), 3.5))
    means = [results["models"][m]["mean_score"] or 0.0 for m in models]
    lows = [_gap(results["models"][m], 0) for m in models]
    highs = [_gap(results["models"][m], 1) for m in models]
    ax.bar(range(len(models)), means, yerr=[lows, highs], capsize=4, color="tab:blue")
    ax.set_xticks(range(len(models)), [_short(m) for m in models], rotation=20, ha="right")
    ax.set_ylim(0, 4.2)
    ax.set_ylabel("mean judge score (1-4)")
    ax.set_title("Mean score, 95% bootstrap interval")
    written.append(_save(fig, folder / "scores.png"))

    # Share of each score per model.
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.5 * len(models) + 1.5)))
    colours = {1: "tab:red", 2: "tab:orange", 3: "tab:olive", 4: "tab:green"}
    left = [0.0] * len(models)
    for score in statistics.SCORES:
        counts = [results["models"][m]["distribution"][str(score)] for m in models]
        totals = [max(1, sum(results["models"][m]["distribution"].values())) for m in models]
        shares = [c / t for c, t in zip(counts, totals)]
        ax.barh(
            range(len(models)), shares, left=left, color=colours[score], label=f"{score} {SCORE_NAMES[score]}"
        )
        left = [a + b for a, b in zip(left, shares)]
    ax.set_yticks(range(len(models)), [_short(m) for m in models])
    ax.invert_yaxis()  # first model on top, as in the tables
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of readable judgements")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)
    written.append(_save(fig, folder / "distribution.png"))

    # Mean score per task and model.
    tasks = sorted({task for m in models for task in results["models"][m]["by_task"]})
    if tasks:
        import numpy as np

        grid = np.array(
            [
                [(results["models"][m]["by_task"].get(t) or {}).get("mean_score") or np.nan for m in models]
                for t in tasks
            ]
        )
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(models) + 3), 0.45 * len(tasks) + 1.5))
        image = ax.imshow(grid, vmin=1, vmax=4, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(models)), [_short(m) for m in models], rotation=20, ha="right")
        ax.set_yticks(range(len(tasks)), tasks)
        for (row, col), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax, label="mean score")
        ax.set_title("Mean score by task")
        written.append(_save(fig, folder / "by_task.png"))

    # Position bias: mean score by the label the answer was shown under.
    bias = results["position_bias"]
    labels = list(bias["mean_by_position"])
    if labels:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(labels) + 2), 3.2))
        ax.bar(labels, [bias["mean_by_position"][label] for label in labels], color="tab:purple")
        ax.set_ylim(0, 4.2)
        ax.set_xlabel("position shown to the judge")
        ax.set_ylabel("mean score")
        ax.set_title("Position bias")
        written.append(_save(fig, folder / "position_bias.png"))
    return written


def _gap(model: Mapping[str, Any], side: int) -> float:
    mean, (low, high) = model["mean_score"], model["ci95"]
    if mean is None or low is None or high is None:
        return 0.0
    return max(0.0, mean - low) if side == 0 else max(0.0, high - mean)


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# --- markdown ---------------------------------------------------------------------
def render_markdown(results: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The report body (also the body of the judgement folder's card)."""
    lines = [
        "## Results",
        "",
        f"Judge `{meta['judge_model']}` (prompt hash `{meta['prompt_hash']}`, temperature {meta['judge_temperature']}), "
        f"{meta['items']} items, {meta['num_shuffles']} shuffle(s) per item (seed {meta['shuffle_seed']}). "
        f"Intervals: 95% bootstrap over items ({results['bootstrap']['samples']} resamples, seed "
        f"{results['bootstrap']['seed']}).",
        "",
    ]
    if not any(m["n_items"] for m in results["models"].values()):
        # Nothing to show but n/a: say so in one sentence and keep the numbers that exist.
        missing = results["missing"]
        lines += [
            f"**The judge gave no readable judgement** ({missing['missing']} of {missing['judge_calls']} replies "
            "could not be read as scores), so there are no judge scores: the score tables are left out rather "
            "than filled with n/a. What can be measured without the judge:",
            "",
            *_reference_table(results),
        ]
        return "\n".join(lines + _missing_section(results) + _paper_style_table(results)) + "\n"
    lines += [*_model_table(results), "", "### Score distribution", "", *_distribution_table(results)]
    lines += _task_table(results, "### By task (mean, 95% CI)")
    lines += _win_table(results, "### Pairwise win rates (row vs column, ties count half)")
    for source, part in (results.get("by_source") or {}).items():
        lines += ["", f"### Source `{source}`", "", *_model_table(part)]
        lines += ["", f"#### Source `{source}`: score distribution", "", *_distribution_table(part)]
        lines += _task_table(part, f"#### Source `{source}` by task")
        lines += _win_table(part, f"#### Source `{source}`: pairwise win rates")
    bias = results["position_bias"]
    lines += _missing_section(results)
    lines += [
        "",
        "### Position bias",
        "",
        "Mean score by the position the answer was shown in: "
        + ", ".join(
            f"{k} {_fmt(v)} (n={bias['n_by_position'][k]})" for k, v in bias["mean_by_position"].items()
        )
        + f"; spread {_fmt(bias['spread'])}.",
    ]
    if bias["pairs_compared"]:
        lines.append(
            f"Across shuffles, {_fmt(bias['shuffle_agreement'])} of {bias['pairs_compared']} (item, model) pairs got "
            f"the same score in every order (mean |difference| {_fmt(bias['mean_abs_difference'])})."
        )
    lines += _paper_style_table(results)
    decon = meta.get("decontamination")
    lines += ["", "### Decontamination", ""]
    if decon:
        lines.append(
            f"{decon['flagged']} of {decon['items_checked']} evaluation items overlap the training data "
            f"({decon['by_patient_id']} by patient_id, {decon['by_ngram']} by {decon['ngram']}-gram containment >= "
            f"{decon['threshold']}; max containment {decon['max_containment']}); "
            + ("they were left out of scoring." if decon.get("dropped") else "they are flagged, not removed.")
        )
    else:
        lines.append(
            "Not checked (pass --train_dataset to check evaluation notes against the training data)."
        )
    if meta.get("dropped_items"):
        lines += ["", f"{meta['dropped_items']} items were not in every answers folder and were left out."]
    if meta.get("plots"):
        lines += ["", "### Plots", ""] + [f"![{Path(p).stem}](plots/{Path(p).name})" for p in meta["plots"]]
    return "\n".join(lines) + "\n"


def _missing_section(results: Mapping[str, Any]) -> list[str]:
    missing = results["missing"]
    reasons = ", ".join(f"{k}: {v}" for k, v in missing["by_reason"].items()) or "none"
    return [
        "",
        "### Missing judgements",
        "",
        f"{missing['missing']} of {missing['judge_calls']} judge calls gave no readable scores "
        f"(rate {_fmt(missing['rate'])}; {reasons}). Missing judgements are left out of every mean, never scored. "
        "A candidate that gave no answer (failed or empty) is not judged and counts 1 (Unacceptable) on that item "
        "in the mean score, its interval, the win rates and the model-index; the answer rate and the mean over "
        "answered items are shown beside it.",
    ]


def _reference_table(results: Mapping[str, Any]) -> list[str]:
    """What needs no judge: ROUGE-L against the reference answers (95% CI), answer rate, length."""
    lines = ["| model | ROUGE-L (95% CI) | n | answer rate | mean words |", "|---|---|---|---|---|"]
    for model, m in results["models"].items():
        if model == "reference":
            continue
        lines.append(
            f"| {model} | {_rouge_cell(m)} | {m['rougeL_n']} | {_fmt(m['answer_rate'])} | "
            f"{_fmt(m['lengths']['mean_words'], 1)} |"
        )
    return lines


def _rouge_cell(m: Mapping[str, Any]) -> str:
    if m.get("rougeL") is None:
        return "-"
    low, high = m.get("rougeL_ci95") or (None, None)
    return f"{_fmt(m['rougeL'])} ({_fmt(low)} - {_fmt(high)})"


def _paper_style_table(results: Mapping[str, Any]) -> list[str]:
    """Means under the paper's rule (an unreadable judge reply scores 0 for every model of the item)."""
    paper = results.get("paper_style") or {}
    if not paper:
        return []
    lines = [
        "",
        "### The paper's scoring rule",
        "",
        "For comparison with the published numbers: the mean over judged answers when an unreadable judge reply "
        "(fewer tokens than candidates, under judge_style paper) scores 0 for every model of its item, as the "
        "original evaluation did (above, such judgements are missing instead). A reply token that is not a score "
        "(the original kept it as given) is left out of the mean and counted.",
        "",
        "| model | paper-style mean | judged | scored 0 (unreadable) | non-score token (left out) |",
        "|---|---|---|---|---|",
    ]
    for model, m in paper.items():
        lines.append(
            f"| {model} | {_fmt(m['paper_mean'])} | {m['judged']} | {m['zeroed']} | {m.get('non_numeric', 0)} |"
        )
    return lines


def _model_table(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "| model | mean score | 95% CI | items | answer rate | mean over answered (95% CI) | missing judgements "
        "| ROUGE-L (95% CI) | mean words |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, m in results["models"].items():
        low, high = m["ci95"]
        a_low, a_high = m["ci95_answered"]
        lines.append(
            f"| {model} | {_fmt(m['mean_score'])} | {_fmt(low)} - {_fmt(high)} | {m['n_items']} | "
            f"{_fmt(m['answer_rate'])} | {_fmt(m['mean_score_answered'])} ({_fmt(a_low)} - {_fmt(a_high)}) | "
            f"{m['missing']['missing']}/{m['missing']['judgements']} | {_rouge_cell(m)} | "
            f"{_fmt(m['lengths']['mean_words'], 1)} |"
        )
    return lines


def _distribution_table(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "| model | " + " | ".join(f"{s} {SCORE_NAMES[s]}" for s in statistics.SCORES) + " |",
        "|---|" + "---|" * len(statistics.SCORES),
    ]
    for model, m in results["models"].items():
        lines.append(
            f"| {model} | " + " | ".join(str(m["distribution"][str(s)]) for s in statistics.SCORES) + " |"
        )
    return lines


def _task_table(results: Mapping[str, Any], title: str) -> list[str]:
    models = list(results["models"])
    tasks = sorted({task for m in models for task in results["models"][m]["by_task"]})
    if not tasks:
        return []
    lines = ["", title, "", "| task | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for task in tasks:
        cells = []
        for model in models:
            entry = results["models"][model]["by_task"].get(task) or {}
            low, high = entry.get("ci95", [None, None])
            cells.append(
                f"{_fmt(entry.get('mean_score'))} ({_fmt(low)}-{_fmt(high)}, n={entry.get('n_items', 0)})"
            )
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def _win_table(results: Mapping[str, Any], title: str) -> list[str]:
    models = list(results["models"])
    if len(models) < 2:
        return []
    lines = ["", title, "", "| | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for a in models:
        cells = ["-" if a == b else _fmt(results["win_rates"][a][b]["win_rate"]) for b in models]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_report(output_dir: str | os.PathLike, markdown: str, title: str) -> Path:
    path = Path(output_dir) / "report.md"
    atomic_write_text(path, f"# {title}\n\n{markdown}")
    return path


def write_judgement_folder(
    output_dir: str | os.PathLike,
    *,
    scores: Sequence[Mapping[str, Any]],
    judgements: Sequence[Mapping[str, Any]],
    results: dict[str, Any],
    meta: dict[str, Any],
    mimic: bool = False,
    provenance: Provenance | None = None,
) -> Path:
    """The Hub-ready judgement folder: parquet configs, results.json, plots, report.md, card LAST.

    ``provenance`` (the answers', combined) is stamped into every parquet file and the card;
    without it the folder is restricted when ``mimic``, else unknown.
    """
    from datasets import Dataset

    from asclepius.evaluation.cards import JUDGEMENT_TEMPLATE, render_card
    from asclepius.stage.files import mark_unfinished, size_category, write_dataset_configs
    from asclepius.stage.provenance import (
        MIMIC_LICENSE,
        MIMIC_LICENSE_LINK,
        MIMIC_LICENSE_NAME,
        mark_mimic_derived,
    )

    output_dir = Path(output_dir)
    mark_unfinished(output_dir)
    if provenance is None:
        provenance = restricted(str(output_dir), "judged MIMIC-derived answers") if mimic else None
    provenance = provenance or Provenance(UNKNOWN, "answers of unknown provenance")
    configs = write_dataset_configs(
        output_dir,
        {
            "scores": {"test": Dataset.from_list(list(scores))},
            "judgements": {"test": Dataset.from_list(list(judgements))},
        },
        provenance=provenance,
    )
    if mimic:
        mark_mimic_derived(output_dir)
    meta["plots"] = [str(p) for p in write_plots(output_dir, results)]
    write_results_json(output_dir, {"meta": meta, **results})
    markdown = render_markdown(results, meta)
    title = f"Judge scores of {', '.join(results['models'])}"
    write_report(output_dir, markdown, title)
    card_data: dict[str, Any] = {
        "configs": configs,
        "tags": ["asclepius", "clinical", "evaluation", "llm-judge"] + (["mimic"] if mimic else []),
        "language": ["en"],
        "size_categories": [size_category(len(scores))],
    }
    if mimic:
        card_data.update(
            license=MIMIC_LICENSE,
            license_name=MIMIC_LICENSE_NAME,
            license_link=MIMIC_LICENSE_LINK,
            mimic_derived=True,
        )
    context = {
        "title": ", ".join(results["models"]),
        "judge_model": meta["judge_model"],
        "prompt_hash": meta["prompt_hash"],
        "report": markdown,
    }
    return render_card(output_dir, JUDGEMENT_TEMPLATE, card_data, context, provenance=provenance)
