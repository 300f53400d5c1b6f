"""Real discharge summaries from MIMIC-III ``NOTEEVENTS.csv`` (the Asclepius-R variant).

The file is ~4 GB: it is read in chunks of the five columns used. Only
``CATEGORY == "Discharge summary"`` rows are kept, ROW_IDs of an exclusion list are
dropped (by default the original Asclepius's 517 ROW_IDs, shipped with the package:
:data:`DEFAULT_EXCLUSION_LIST`), and de-identification brackets become short tags
(:mod:`asclepius.data.deid`, in the original's style by default).
The result has the columns of a notes folder (``patient_id`` = SUBJECT_ID, ``note``)
plus ``row_id`` and ``hadm_id``, so the question and answer stages take it unchanged.

MIMIC-III is under the PhysioNet credentialed data use agreement: everything built
from it is marked MIMIC-derived and can only be pushed to a private repository.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from datasets import Features, Value

from asclepius.data.deid import DEFAULT_DEID_STYLE, DeidStats, rewrite_brackets
from asclepius.data.readers import check_int, check_text, iter_csv
from asclepius.data.stage import SOURCE_ROW
from asclepius.errors import InputError

NOTEEVENTS_COLUMNS = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CATEGORY", "TEXT"]
DISCHARGE_CATEGORY = "Discharge summary"
# The original Asclepius's exclusion list (MIT licence, starmpcc/Asclepius): 517 ROW_IDs
# of notes left out of Asclepius-R's training. Package data, so any install has it.
DEFAULT_EXCLUSION_LIST = "mimiciii_excluded_row_ids.txt"
NO_EXCLUSION = "none"


def default_exclusion_list() -> Path:
    return Path(str(files("asclepius.data") / "resources" / DEFAULT_EXCLUSION_LIST))


def exclusion_ids(exclude_ids: str | None) -> tuple[set[int], str]:
    """The ROW_IDs to drop and where they came from: the shipped list when unset, none for "none", else the file."""
    if exclude_ids is None:
        return read_exclusion_list(
            default_exclusion_list()
        ), "original Asclepius list (starmpcc/Asclepius, MIT)"
    if exclude_ids.strip().lower() == NO_EXCLUSION:
        return set(), "none"
    return read_exclusion_list(exclude_ids), str(exclude_ids)


def read_exclusion_list(path: str | Path) -> set[int]:
    """ROW_IDs to drop: one integer per line; blank lines, '#' comments and a ROW_ID header allowed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file (the exclusion list of ROW_IDs)")
    ids: set[int] = set()
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line_number, line in enumerate(handle, start=1):
            value = line.split("#", 1)[0].strip().strip(",")
            if not value:
                continue
            if line_number == 1 and value.lower() in {"row_id", "rowid", "id"}:
                continue
            try:
                ids.add(int(value))
            except ValueError:
                raise InputError(
                    path, f"expected an integer ROW_ID, got {value[:40]!r}", row=line_number
                ) from None
    return ids


@dataclass
class MimicCounts:
    rows_read: int = 0
    by_category: Counter = field(default_factory=Counter)
    excluded: int = 0
    kept: int = 0
    deid: DeidStats = field(default_factory=DeidStats)


@dataclass(frozen=True)
class MimicNote:
    row: int
    row_id: int
    patient_id: int
    hadm_id: int | None
    note: str


def iter_discharge_summaries(
    path: str | Path,
    *,
    exclude_ids: set[int] | None = None,
    chunk_size: int = 10_000,
    counts: MimicCounts | None = None,
    deid_style: str = DEFAULT_DEID_STYLE,
) -> Iterator[MimicNote]:
    """Discharge summaries of NOTEEVENTS.csv, excluded ROW_IDs dropped, brackets rewritten in ``deid_style``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file (expected MIMIC-III NOTEEVENTS.csv)")
    counts = counts if counts is not None else MimicCounts()
    exclude_ids = exclude_ids or set()
    for row, record in iter_csv(path, chunk_size=chunk_size, usecols=NOTEEVENTS_COLUMNS):
        counts.rows_read += 1
        category = (record["CATEGORY"] or "").strip()
        counts.by_category[category] += 1
        if category != DISCHARGE_CATEGORY:
            continue
        row_id = check_int(path, record["ROW_ID"], row=row, field="ROW_ID")
        if row_id in exclude_ids:
            counts.excluded += 1
            continue
        subject_id = check_int(path, record["SUBJECT_ID"], row=row, field="SUBJECT_ID")
        hadm = (record["HADM_ID"] or "").strip()
        hadm_id = check_int(path, hadm, row=row, field="HADM_ID") if hadm else None
        text = check_text(path, record["TEXT"], row=row, field="TEXT")
        note_stats = DeidStats()
        note = rewrite_brackets(text, note_stats, deid_style)
        # Ours trims the note; the original's output is kept exactly as its rewriting left it.
        note = note if deid_style == "original" else note.strip()
        counts.deid.update(note_stats)
        counts.kept += 1
        yield MimicNote(row=row, row_id=row_id, patient_id=subject_id, hadm_id=hadm_id, note=note)


MIMIC_COLUMNS = ["patient_id", "row_id", "hadm_id", "note"]
MIMIC_FEATURES = Features(
    {
        "patient_id": Value("int64"),
        "row_id": Value("int64"),
        "hadm_id": Value("int64"),  # empty for the few notes without an admission
        "note": Value("string"),
        SOURCE_ROW: Value("int64"),
    }
)


def mimic_row(note: MimicNote) -> dict:
    return {
        "patient_id": note.patient_id,
        "row_id": note.row_id,
        "hadm_id": note.hadm_id,
        "note": note.note,
        SOURCE_ROW: note.row,
    }


# --- what the card says about the rewriting --------------------------------------------------
DEID_STYLE_NOTES = {
    "original": (
        "De-identification brackets were rewritten in the original Asclepius code's style (`deid_style: "
        "original`): its category list and order, its fallbacks, and one space on each side of every "
        "replacement, so the notes are byte for byte those the released Asclepius-R was trained on. Spans the "
        "original code would have stopped on are tagged `[Redacted]` and counted below."
    ),
    "ours": (
        "De-identification brackets were rewritten in this project's style (`deid_style: ours`): keyword rules, "
        "most specific first (a hospital ward is a place, not a company), the note's own spacing kept, shifted "
        "dates and bare years kept as dates. It reads more naturally than the original's rewriting (no doubled "
        "spaces, no year turned into a record number), but a model trained on it sees other bytes than the "
        "released Asclepius-R; use `deid_style: original` to reproduce the paper."
    ),
}


def deid_facts(counts: MimicCounts, deid_style: str, exclusion_source: str, excluded_ids: int) -> dict:
    """Provenance of the rewriting and the exclusion list, for the card's YAML and text."""
    return {
        "deid_style": deid_style,
        "exclusion_list": exclusion_source,
        "excluded_row_ids": excluded_ids,
        "literal_dates_kept": counts.deid.dates_kept,
        "spans_rejected_by_original": counts.deid.rejected,
        "fallbacks": dict(sorted(counts.deid.fallbacks.items())),
    }
