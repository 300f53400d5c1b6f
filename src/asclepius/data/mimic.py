"""Real discharge summaries from MIMIC-III ``NOTEEVENTS.csv`` (the Asclepius-R variant).

The file is ~4 GB: it is read in chunks of the five columns used. Only
``CATEGORY == "Discharge summary"`` rows are kept, ROW_IDs of an exclusion list are
dropped, and de-identification brackets become short tags (:mod:`asclepius.data.deid`).
The result has the columns of a notes folder (``patient_id`` = SUBJECT_ID, ``note``)
plus ``row_id`` and ``hadm_id``, so the question and answer stages take it unchanged.

MIMIC-III is under the PhysioNet credentialed data use agreement: everything built
from it is marked MIMIC-derived and can only be pushed to a private repository.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Features, Value

from asclepius.data.deid import DeidStats, rewrite_brackets
from asclepius.data.readers import check_int, check_text, iter_csv
from asclepius.data.stage import SOURCE_ROW
from asclepius.errors import InputError

NOTEEVENTS_COLUMNS = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CATEGORY", "TEXT"]
DISCHARGE_CATEGORY = "Discharge summary"


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
) -> Iterator[MimicNote]:
    """Discharge summaries of NOTEEVENTS.csv, excluded ROW_IDs dropped, brackets rewritten."""
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
        note = rewrite_brackets(text, note_stats).strip()
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
