"""Write evaluation results into a model card's ``model-index`` metadata.

The Hub shows ``model-index`` as the model's evaluation results. Results of this
evaluation (same dataset and metric) replace the previous ones; others are kept.

Only cards of models this project trained are written automatically (the judge must
not add its verdict to a base model's or someone else's card); any other card only when
named with ``--model_card``. The dataset of a result is a Hub id only when the
evaluation set is one: a local folder or file is named as local, never as a Hub id.
"""

from __future__ import annotations

import os
from pathlib import Path

from asclepius.errors import InputError
from asclepius.stage.files import CARD_NAME, atomic_write_text, read_card_metadata

JUDGE_METRIC = "llm_judge_score"
ROUGE_METRIC = "rougeL"
# ``dataset.type`` of a result on an evaluation set that is not on the Hub (the field wants a Hub id).
LOCAL_DATASET_TYPE = "local"
LOCAL_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".gz", ".txt")
# Tags the training stages put on their model cards (asclepius.training.card.card_data).
TRAINED_HERE_TAGS = frozenset({"continued-pretraining", "sft"})


def dataset_reference(source: str) -> tuple[str, str]:
    """(``dataset.type``, ``dataset.name``) of a result: a Hub id as it is; a local path as local.

    A local folder's name written as ``type`` would read as a Hub dataset id (and could
    name someone else's dataset); it goes into the name instead.
    """
    path = Path(source)
    # Recorded as given at generation, maybe relative to another folder: a path also by its looks.
    looks_local = (
        source.startswith((".", "/", "~")) or len(path.parts) > 2 or path.parts[0] in ("outputs", "data")
    )
    if path.exists() or looks_local or path.suffix.lower() in LOCAL_SUFFIXES:
        return LOCAL_DATASET_TYPE, f"Asclepius evaluation (local dataset {path.name}, not on the Hub)"
    return source, f"Asclepius evaluation ({source})"


def trained_here(model_dir: str | os.PathLike) -> bool:
    """Does the folder's card say a training stage of this project made the model?"""
    tags = {str(tag).lower() for tag in read_card_metadata(model_dir).get("tags") or []}
    return "asclepius" in tags and bool(tags & TRAINED_HERE_TAGS)


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
    dataset_type, dataset_name = dataset_reference(dataset_source)
    ours = {JUDGE_METRIC, ROUGE_METRIC}
    kept = [
        r
        for r in (data.eval_results or [])
        if not (
            r.dataset_type == dataset_type
            and r.dataset_name == dataset_name
            and r.dataset_split == dataset_split
            and r.metric_type in ours
        )
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
    candidate generated from a local folder whose card says this project trained it (a
    base model's card, the tiny model's or a downloaded one's is left alone). ``entries``
    (``--model_card``, the user asking) add any card: ``CANDIDATE=DIR``, or a bare ``DIR``:
    the candidate generated from it, or the only one.
    """
    targets = {}
    if automatic:
        for name, provenance in candidates.items():
            folder = provenance.get("model_path")
            if folder and trained_here(folder):
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
