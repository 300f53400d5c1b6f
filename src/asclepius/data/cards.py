"""Dataset cards and quality reports of the data stages.

The card (the package template ``dataset_card.md``, rendered with huggingface_hub's DatasetCard)
carries the Hub metadata (configs, licence, task categories, sizes, tags) and what a
reader needs to trust the data: counts per task, rows dropped per reason, length
statistics, teacher model, prompt hashes, date and citations. The quality report is
a few PNG plots next to it (``quality/``), linked from the card.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from asclepius.data.deid import TAGS
from asclepius.stage.cards import DATASET_TEMPLATE, PAPER_CITATION, PMC_PATIENTS_CITATION
from asclepius.stage.cards import render_card as render_template
from asclepius.stage.files import size_category, today
from asclepius.stage.provenance import CARD_KEY, PMC_PATIENTS_LICENSE, UNKNOWN, Provenance
from asclepius.tasks import TASKS

QUALITY_DIR = "quality"

DROP_MEANINGS = {
    "empty": "the generation (or the cleaned question) was empty",
    "truncated": "the generation hit max_tokens (finish_reason `length`)",
    "content_filter": "the API filtered the generation",
    "failed": "the request failed for good (see the engine summary)",
    "prompt_too_long": "the case report leaves no room for a note within the context length",
    "self_reference": "note, question or answer holds one of the original's 11 self-reference phrases",
    "self_reference_extra": "one of our extra self-reference phrases only (--self_reference_extra; none = the "
    "original's filter)",
    "near_duplicate": "ROUGE-L with a question already in the task's pool above the threshold",
    "answer_is_question": "the answer ends with a question mark",
    "not_discharge_summary": "NOTEEVENTS row of another CATEGORY than `Discharge summary`",
    "excluded": "ROW_ID in the exclusion list (by default the original Asclepius's 517 ROW_IDs)",
}

LICENSE_TEXTS = {
    PMC_PATIENTS_LICENSE: (
        "[CC BY-NC-SA 4.0](https://creativecommons.org/licenses/by-nc-sa/4.0/), inherited from the "
        "case reports of PMC-Patients: non-commercial use, attribution, share alike."
    ),
    "cc0-1.0": "[CC0 1.0](https://creativecommons.org/publicdomain/zero/1.0/), inherited from the source.",
}
MIMIC_LICENSE_TEXT = (
    "[PhysioNet Credentialed Health Data License 1.5.0](https://physionet.org/content/mimiciii/view-license/1.4/), "
    "inherited from MIMIC-III. Access requires PhysioNet credentialing and the signed data use agreement; "
    "this dataset must stay private."
)

RESTRICTED_LICENSE_TEXT = (
    "`{license}`, declared by the user for a restricted (credentialed) source: this dataset must stay "
    "private, and its notes go to allowed endpoints only."
)

UNKNOWN_LICENSE_TEXT = (
    "Unknown: the licence of the source was not declared ({reason}). Until it is, this dataset is "
    "treated as restricted: it is not pushed to public repositories, and its notes go to allowed endpoints only."
)


@dataclass
class CardFacts:
    """Everything a stage knows about its output, turned into card metadata and text."""

    stage: str  # notes | mimic_notes | questions | instructions
    pretty_name: str
    summary: str
    source: Provenance  # the combined provenance of the inputs (unknown = restricted)
    configs: Mapping[str, Mapping[str, Dataset]]
    config_entries: list[dict]
    rows_in: int
    unit_in: str  # "case reports", "notes", "questions", "NOTEEVENTS rows"
    drops: Mapping[str, int] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # teacher_model, prompt_hash, sampling, ...
    length_columns: Sequence[str] = ()
    task_categories: Sequence[str] = ("text-generation",)
    synthetic: bool = True
    extra_sections: list[dict[str, str]] = field(default_factory=list)
    source_datasets: Sequence[str] = ()
    hub_dataset_id: str | None = None


def word_lengths(dataset: Dataset, column: str) -> list[int]:
    """Words per row of one text column, read in batches (notes columns can be large)."""
    lengths: list[int] = []
    for batch in dataset.select_columns([column]).iter(batch_size=2048):
        lengths.extend(len((text or "").split()) for text in batch[column])
    return lengths


def length_summary(column: str, lengths: Sequence[int]) -> dict[str, Any]:
    if not lengths:
        return {"column": column, "rows": 0, "mean": 0.0, "median": 0, "p5": 0, "p95": 0, "max": 0}
    ordered = sorted(lengths)

    def percentile(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]

    return {
        "column": column,
        "rows": len(ordered),
        "mean": statistics.fmean(ordered),
        "median": percentile(0.5),
        "p5": percentile(0.05),
        "p95": percentile(0.95),
        "max": ordered[-1],
    }


def task_counts(splits: Mapping[str, Dataset]) -> list[dict[str, Any]]:
    """Rows per task and split, in the canonical task order (tasks with no rows included)."""
    per_split = {
        name: Counter(split["task"]) for name, split in splits.items() if "task" in split.column_names
    }
    if not per_split:
        return []
    rows = []
    for task in TASKS:
        counts = [per_split[name].get(task, 0) for name in per_split]
        rows.append({"task": task, "counts": counts, "total": sum(counts)})
    return rows


def write_quality_plots(
    output_dir: Path, lengths: Mapping[str, Sequence[int]], tasks: list[dict]
) -> list[dict]:
    """PNG plots of length distributions and the task mix; returns [{title, path}] for the card."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    folder = output_dir / QUALITY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plots = []
    shown = {column: values for column, values in lengths.items() if values}
    if shown:
        fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3.4), squeeze=False)
        for axis, (column, values) in zip(axes[0], shown.items()):
            axis.hist(values, bins=min(40, max(5, len(set(values)))), color="#4C72B0")
            axis.set_title(f"{column} ({len(values):,} rows)")
            axis.set_xlabel("words")
            axis.set_ylabel("rows")
        fig.tight_layout()
        fig.savefig(folder / "lengths.png", dpi=110)
        plt.close(fig)
        plots.append({"title": "Length distributions (words)", "path": f"{QUALITY_DIR}/lengths.png"})
    if tasks:
        fig, axis = plt.subplots(figsize=(7.5, 3.6))
        axis.barh(
            [row["task"] for row in tasks][::-1], [row["total"] for row in tasks][::-1], color="#55A868"
        )
        axis.set_xlabel("rows")
        axis.set_title("Task mix")
        fig.tight_layout()
        fig.savefig(folder / "tasks.png", dpi=110)
        plt.close(fig)
        plots.append({"title": "Task mix", "path": f"{QUALITY_DIR}/tasks.png"})
    return plots


def _columns_text(dataset: Dataset) -> str:
    return ", ".join(f"`{name}`" for name in dataset.column_names)


def _provenance_rows(provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    labels = {
        "stage": "stage",
        "teacher_model": "teacher model",
        "base_url": "API",
        "prompt_hash": "prompt hash",
        "temperature": "temperature",
        "max_tokens": "max_tokens",
        "source": "input",
        "prompt_tokens": "prompt tokens (all rows)",
        "completion_tokens": "completion tokens (all rows)",
        "seed": "seed",
        "date": "date",
    }
    rows = []
    for key, value in provenance.items():
        if key == "endpoints" and value:  # every endpoint whose answers are rows of this folder
            rows.append(("answered by", ", ".join(value)))
            continue
        if value is None or isinstance(value, (dict, list)):
            continue
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        rows.append((labels.get(key, key.replace("_", " ")), f"`{shown}`" if key == "prompt_hash" else shown))
    return rows


def render_card(output_dir: Path, facts: CardFacts) -> Path:
    """Quality plots, then the card itself, written LAST (the folder is finished once it exists)."""
    default_splits = next(iter(facts.configs.values()))
    lengths = {}
    for column in facts.length_columns:
        merged: list[int] = []
        for split in default_splits.values():
            if column in split.column_names:
                merged.extend(word_lengths(split, column))
        lengths[column] = merged
    tasks = task_counts(default_splits)
    plots = write_quality_plots(output_dir, lengths, tasks)
    rows_kept = sum(split.num_rows for split in default_splits.values())

    source = facts.source
    provenance = {"stage": facts.stage, **facts.provenance, "date": today()}
    provenance["upstream"] = list(source.upstream)
    tags = ["clinical", "medical", "asclepius"]
    if facts.synthetic:
        tags.insert(0, "synthetic")
    if source.physionet:
        tags += ["mimic", "private"]
    elif source.restricted:
        tags += ["private"]
    card_data: dict[str, Any] = {
        "pretty_name": facts.pretty_name,
        **source.card_license(),
        "language": ["en"],
        "task_categories": list(facts.task_categories),
        "size_categories": [size_category(rows_kept)],
        "tags": tags,
        "configs": facts.config_entries,
        "mimic_derived": source.mimic_derived,
        CARD_KEY: source.status,
        "asclepius": provenance,
    }
    if facts.source_datasets:
        card_data["source_datasets"] = list(facts.source_datasets)

    configs_rows = [
        {"config": config, "split": split, "rows": dataset.num_rows, "columns_text": _columns_text(dataset)}
        for config, splits in facts.configs.items()
        for split, dataset in splits.items()
    ]
    config_names = list(facts.configs)
    configs_note = (
        "The default config holds the rows that passed every filter; `annotated` holds every row with "
        "its flags (`drop_reason` and the stage's checks)."
        if "annotated" in facts.configs
        else ""
    )
    if source.physionet:
        license_text = MIMIC_LICENSE_TEXT
    elif source.mimic_derived:
        license_text = RESTRICTED_LICENSE_TEXT.format(license=source.license)
    elif source.status == UNKNOWN:
        license_text = UNKNOWN_LICENSE_TEXT.format(reason=source.reason)
    else:
        license_text = LICENSE_TEXTS.get(
            source.license, f"`{source.license}`, inherited from the source data."
        )
    # PMC-Patients is cited for data built from case reports, not for MIMIC-derived data.
    citations = [PAPER_CITATION] + ([] if source.mimic_derived else [PMC_PATIENTS_CITATION])
    context = {
        "pretty_name": facts.pretty_name,
        "summary": facts.summary,
        "mimic_derived": source.physionet,
        "restricted": source.mimic_derived,
        "usage_path": facts.hub_dataset_id or str(output_dir),
        "extra_configs": config_names[1:],
        "configs_rows": configs_rows,
        "configs_note": configs_note,
        "provenance_rows": _provenance_rows(provenance),
        "upstream_rows": [
            {
                "stage": row.get("stage", "?"),
                "teacher_model": row.get("teacher_model") or "-",
                "prompt_hash": f"`{row['prompt_hash']}`" if row.get("prompt_hash") else "-",
                "date": row.get("date", "-"),
            }
            for row in source.upstream
        ],
        "task_rows": tasks,
        "split_names": list(default_splits),
        "rows_in": facts.rows_in,
        "unit_in": facts.unit_in,
        "rows_kept": rows_kept,
        "drop_rows": [
            {"reason": reason, "count": count, "meaning": DROP_MEANINGS.get(reason, "")}
            for reason, count in sorted(facts.drops.items(), key=lambda item: -item[1])
            if count
        ],
        "extra_sections": facts.extra_sections,
        "length_rows": [length_summary(column, values) for column, values in lengths.items()],
        "plots": plots,
        "license_text": license_text,
        "citations": citations,
        "date": today(),
    }
    return render_template(
        output_dir,
        kind="dataset",
        template=DATASET_TEMPLATE,
        card_data=card_data,
        context=context,
        provenance=source,
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A small markdown table for the card's extra sections."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |")
    return "\n".join(lines)


def grounding_section(kept: int, ungrounded: int) -> dict[str, str]:
    """The instruction card's section on answers stating values the note does not contain."""
    table = markdown_table(
        ["rows in the default config", "with a number, dose or date absent from the note"],
        [[kept, ungrounded]],
    )
    return {
        "title": "Grounding check",
        "body": "Kept rows are flagged, not dropped, when the answer states a number, dose or date that the note "
        "does not contain (`ungrounded_values` in the `annotated` config); an answer can rightly compute such a "
        "value, e.g. a length of stay.\n\n" + table,
    }


def deid_sections(deid, style_note: str) -> list[dict[str, str]]:
    """The MIMIC notes card's sections: brackets per tag, and labels no rule recognised."""
    tags = markdown_table(["tag", "brackets"], [[tag, deid.tags.get(tag, 0)] for tag in TAGS])
    unknown = markdown_table(["bracket label", "count"], deid.unknown_labels.most_common(20))
    return [
        {"title": "De-identification tags", "body": style_note + "\n\n" + tags},
        {
            "title": "Unrecognised bracket labels",
            "body": "Rewritten as `[Redacted]`:\n\n" + unknown if deid.unknown_labels else "None.",
        },
    ]
