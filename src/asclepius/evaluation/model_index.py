"""Write evaluation results into a model card's ``model-index`` metadata.

The Hub shows ``model-index`` as the model's evaluation results. Results of this
evaluation (same dataset and metric) replace the previous ones; others are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from asclepius.errors import InputError
from asclepius.hub import CARD_NAME, atomic_write_text

JUDGE_METRIC = "llm_judge_score"
ROUGE_METRIC = "rougeL"


def dataset_reference(source: str) -> str:
    """A Hub id stays as it is; a local path becomes its folder/file name."""
    path = Path(source)
    return path.name if path.exists() else source


def update_model_index(
    model_dir: str | os.PathLike,
    *,
    dataset_source: str,
    dataset_split: str,
    judge_model: str,
    mean_score: float | None,
    ci95: list[float | None] | None = None,
    rouge_l: float | None = None,
) -> Path:
    """Set the judge score (and ROUGE-L) of ``dataset_source`` in ``model_dir/README.md``."""
    from huggingface_hub import EvalResult, ModelCard

    path = Path(model_dir) / CARD_NAME
    card = ModelCard.load(path)
    data = card.data
    dataset_type = dataset_reference(dataset_source)
    dataset_name = f"Asclepius evaluation ({dataset_type})"
    ours = {JUDGE_METRIC, ROUGE_METRIC}
    kept = [
        r
        for r in (data.eval_results or [])
        if not (r.dataset_type == dataset_type and r.dataset_split == dataset_split and r.metric_type in ours)
    ]
    common = dict(
        task_type="text-generation",
        task_name="Clinical note instruction following",
        dataset_type=dataset_type,
        dataset_name=dataset_name,
        dataset_split=dataset_split,
    )
    new = []
    if mean_score is not None:
        args = {"judge": judge_model, "scale": "1-4"}
        if ci95 and None not in ci95:
            args["ci95_low"], args["ci95_high"] = ci95
        new.append(
            EvalResult(
                metric_type=JUDGE_METRIC,
                metric_name=f"LLM judge score (1-4, {judge_model})",
                metric_value=mean_score,
                metric_args=args,
                **common,
            )
        )
    if rouge_l is not None:
        new.append(
            EvalResult(metric_type=ROUGE_METRIC, metric_name="ROUGE-L F1", metric_value=rouge_l, **common)
        )
    data.eval_results = kept + new
    if data.eval_results and not data.model_name:
        data.model_name = Path(model_dir).resolve().name  # model-index needs a name
    atomic_write_text(path, str(card))
    return path


def model_cards_to_update(
    candidates: dict[str, dict], entries: list[str], *, automatic: bool = True
) -> dict[str, tuple[str, dict]]:
    """candidate -> (model folder, its answers' provenance) of the cards to write results into.

    ``candidates`` maps each candidate to the provenance of its answers. Automatic: every
    candidate generated from a local folder that has a card. ``entries`` (``--model_card``)
    add ``CANDIDATE=DIR``, or a bare ``DIR``: the candidate generated from it, or the only one.
    """
    targets = {}
    if automatic:
        for name, provenance in candidates.items():
            folder = provenance.get("model_path")
            if folder and (Path(folder) / CARD_NAME).exists():
                targets[name] = (folder, provenance)
    names = list(candidates)
    for entry in entries:
        name, _, folder = entry.rpartition("=")
        if not name:
            made_from = [
                n for n, p in candidates.items() if p.get("model_path") == str(Path(folder).resolve())
            ]
            name = made_from[0] if made_from else (names[0] if len(names) == 1 else "")
        if name not in candidates:
            raise InputError(
                "--model_card", f"{entry!r}: name the candidate as CANDIDATE=DIR (one of {names})"
            )
        if not (Path(folder) / CARD_NAME).exists():
            raise InputError(folder, f"no {CARD_NAME} model card to add the results to")
        targets[name] = (folder, candidates[name])
    return targets
