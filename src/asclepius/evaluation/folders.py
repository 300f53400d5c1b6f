"""The evaluation set in, and the answers folder out (and back in, for the judge).

An answers folder is Hub-ready: parquet under ``data/default/`` plus a card whose YAML
metadata (``asclepius_evaluation``) records how the answers were made, so the judge can
name the model, find its local model card, and a reader can reproduce the run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from asclepius.data.loading import load_any, load_split
from asclepius.errors import InputError, reading
from asclepius.evaluation.cards import ANSWERS_TEMPLATE, render_card
from asclepius.redaction import redact
from asclepius.stage.files import (
    atomic_write_text,
    read_card_metadata,
    size_category,
    work_dir,
    write_dataset_configs,
)
from asclepius.stage.provenance import CARD_KEY, PUBLIC, UNKNOWN, Provenance, classify

REQUIRED_COLUMNS = ("note", "question")
ADDED_COLUMNS = ("model", "generated")
PROVENANCE_KEY = "asclepius_evaluation"


def load_evaluation_set(
    source: str,
    *,
    split: str = "test",
    config: str | None = None,
    test_ratio: float | None = None,
    split_seed: int = 0,
    max_samples: int | None = None,
) -> Dataset:
    """The rows to answer; an unreadable file, a missing column or an empty note/question is a one-line error."""
    with reading(source):
        dataset = load_split(source, split, config=config, test_ratio=test_ratio, seed=split_seed)
    for column in REQUIRED_COLUMNS:
        if column not in dataset.column_names:
            raise InputError(
                source,
                f"missing column {column!r}; an evaluation set needs note, question (answer, task optional)",
            )
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    for row_number, (note, question) in enumerate(zip(dataset["note"], dataset["question"]), start=1):
        for field, value in (("note", note), ("question", question)):
            if not isinstance(value, str) or not value.strip():
                raise InputError(source, "empty or not text", row=row_number, field=field)
    if len(dataset) == 0:
        raise InputError(source, f"split {split!r} has no rows")
    return dataset


def with_answers(dataset: Dataset, model_name: str, answers: list[str | None]) -> Dataset:
    """The evaluation rows plus ``model`` and ``generated`` (replacing any earlier ones)."""
    stale = [c for c in ADDED_COLUMNS if c in dataset.column_names]
    dataset = dataset.remove_columns(stale) if stale else dataset
    dataset = dataset.add_column("model", [model_name] * len(dataset))
    return dataset.add_column("generated", [a if a is not None else "" for a in answers])


def local_model_folder(model: str) -> str | None:
    """The absolute path of a local model folder, or None for a Hub id / API model name."""
    path = Path(model)
    return str(path.resolve()) if path.is_dir() else None


def model_provenance(model: str, *, api: bool) -> Provenance:
    """What a model's answers inherit from it: a local folder by its stamps and card, a Hub id by its
    model card (a MIMIC-trained model's answers are restricted); a hosted API model's bare name
    (``gpt-4o``) holds nothing of this project's."""
    if api and "/" not in model and not Path(model).exists():
        return Provenance(PUBLIC, f"{model} is a hosted model's name, no weights of this project", model)
    return classify(model, kind="model")


def write_answers_folder(
    output_dir: str | os.PathLike,
    dataset: Dataset,
    *,
    split: str,
    provenance: dict[str, Any],
    origin: Provenance | None = None,
) -> Path:
    """Parquet, provenance (credentials redacted), then the card LAST; returns the card's path.

    ``origin`` is the evaluation set's provenance: the answers inherit its licence and
    status (restricted data stays restricted; unknown when not given).
    """
    output_dir = Path(output_dir)
    origin = origin or Provenance(UNKNOWN, "evaluation set of unknown provenance")
    provenance = redact(provenance)
    configs = write_dataset_configs(output_dir, {"default": {split: dataset}}, provenance=origin)
    atomic_write_text(work_dir(output_dir) / "generation.json", json.dumps(provenance, indent=2) + "\n")
    tags = ["asclepius", "clinical", "evaluation", "synthetic"] + (["mimic"] if origin.mimic_derived else [])
    card_data: dict[str, Any] = {
        "configs": configs,
        "tags": tags,
        "language": ["en"],
        "size_categories": [size_category(len(dataset))],
        **origin.card_license(),
        "mimic_derived": origin.mimic_derived,
        CARD_KEY: origin.status,
        PROVENANCE_KEY: provenance,
    }
    decoding = provenance.get("decoding", {})
    context = {
        "model": provenance["model"],
        "source": provenance["source"],
        "split": split,
        "backend": provenance["backend"],
        "prompt_style": provenance["prompt_style"],
        "prompt_hash": provenance["prompt_hash"],
        "decoding": ", ".join(f"{k}={v}" for k, v in decoding.items() if v is not None),
        "rows": len(dataset),
        "failed": provenance.get("failed", 0),
        # How often a note was cut to fit the prompt budget (never the instruction), and by how much.
        "truncation": provenance.get("truncation") or {},
        "folder_hint": str(output_dir),
        "status": origin.status,
    }
    return render_card(output_dir, ANSWERS_TEMPLATE, card_data, context, provenance=origin)


@dataclass
class AnswersFolder:
    """One candidate for the judge: its rows and where they came from."""

    path: str
    dataset: Dataset
    provenance: dict[str, Any]
    origin: Provenance

    @property
    def mimic(self) -> bool:
        return self.origin.mimic_derived

    @property
    def model_name(self) -> str:
        names = set(self.dataset["model"]) if "model" in self.dataset.column_names else set()
        if len(names) == 1:
            return str(names.pop())
        return str(self.provenance.get("model") or Path(self.path).name)


def load_answers_folder(path: str) -> AnswersFolder:
    """A folder (or file) written by scripts/generate.py: one split with note, question, generated."""
    with reading(path):
        splits = load_any(path)
    if len(splits) != 1:
        raise InputError(path, f"expected one split of answers, found {sorted(splits)}")
    dataset = next(iter(splits.values()))
    for column in (*REQUIRED_COLUMNS, "generated"):
        if column not in dataset.column_names:
            raise InputError(
                path, f"missing column {column!r}; is this a folder written by scripts/generate.py?"
            )
    metadata = read_card_metadata(path) if Path(path).is_dir() else {}
    provenance = dict(metadata.get(PROVENANCE_KEY) or {})
    return AnswersFolder(path=path, dataset=dataset, provenance=provenance, origin=classify(path))
