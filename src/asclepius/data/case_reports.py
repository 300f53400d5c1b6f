"""Case reports in: PMC-Patients as published, any dataset with a text column, or the demo CSV.

Reading is two passes over the source so that nothing is held in memory and nothing is
sent before the whole input is known to be good:

1. :func:`scan_case_reports` checks every row (text column present, non-empty UTF-8 text,
   integer id) and, with ``limit``, keeps only the ranks of a reproducible subset;
2. :func:`iter_case_reports` reads the source again and yields the chosen rows.

The subset is the ``limit`` rows with the smallest hash of (seed, case id): a pure
function of the data, so a larger ``limit`` extends a smaller one instead of
reshuffling it, and rerunning with the same flags picks the same rows.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from asclepius.data.readers import check_int, check_text, iter_records, read_columns
from asclepius.errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseReport:
    row: int  # 1-based row in the source
    patient_id: int
    patient_uid: str
    text: str


@dataclass(frozen=True)
class CaseReportScan:
    total: int  # rows in the source
    selected: frozenset[int] | None  # rows of the subset; None = every row

    @property
    def count(self) -> int:
        return self.total if self.selected is None else len(self.selected)


def _subset_rank(seed: int, case_id: str) -> int:
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _case_reports(
    source: str, *, text_column: str, id_column: str, uid_column: str, chunk_size: int, split: str
) -> Iterator[CaseReport]:
    """Every row of the source as a checked CaseReport (InputError at the first bad row)."""
    columns = read_columns(source, split=split)
    if columns is not None and text_column not in columns:
        raise InputError(
            source, f"missing column; found {columns} (choose another with --text_column)", field=text_column
        )
    has_id = columns is None or id_column in columns
    if not has_id:
        logger.warning("%s has no %r column: the row number is used as patient_id", source, id_column)
    for row, record in iter_records(source, chunk_size=chunk_size, split=split):
        if text_column not in record:
            raise InputError(
                source, "missing field (choose another with --text_column)", row=row, field=text_column
            )
        text = check_text(source, record[text_column], row=row, field=text_column)
        if has_id and id_column in record:
            patient_id = check_int(source, record[id_column], row=row, field=id_column)
        elif columns is None:
            # JSON records carry their own keys: a record without the id is an error, as in a CSV.
            raise InputError(source, "missing field", row=row, field=id_column)
        else:
            patient_id = row
        uid = record.get(uid_column)
        patient_uid = (str(uid).strip() if uid is not None else "") or str(patient_id)
        yield CaseReport(row=row, patient_id=patient_id, patient_uid=patient_uid, text=text)


def scan_case_reports(
    source: str,
    *,
    text_column: str = "patient",
    id_column: str = "patient_id",
    uid_column: str = "patient_uid",
    limit: int | None = None,
    seed: int = 42,
    chunk_size: int = 10_000,
    split: str = "train",
) -> CaseReportScan:
    """First pass: check every row, and choose the subset when ``limit`` is set."""
    heap: list[tuple[int, int]] = []  # (-rank, row): the `limit` smallest ranks seen so far
    total = 0
    for report in _case_reports(
        source,
        text_column=text_column,
        id_column=id_column,
        uid_column=uid_column,
        chunk_size=chunk_size,
        split=split,
    ):
        total += 1
        if limit is None:
            continue
        item = (-_subset_rank(seed, report.patient_uid), report.row)
        if len(heap) < limit:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    if total == 0:
        raise InputError(source, "no case reports: the source has no rows")
    selected = None if limit is None or limit >= total else frozenset(row for _, row in heap)
    return CaseReportScan(total=total, selected=selected)


def iter_case_reports(
    source: str,
    scan: CaseReportScan,
    *,
    text_column: str = "patient",
    id_column: str = "patient_id",
    uid_column: str = "patient_uid",
    chunk_size: int = 10_000,
    split: str = "train",
) -> Iterator[CaseReport]:
    """Second pass: the chosen rows, in source order."""
    for report in _case_reports(
        source,
        text_column=text_column,
        id_column=id_column,
        uid_column=uid_column,
        chunk_size=chunk_size,
        split=split,
    ):
        if scan.selected is None or report.row in scan.selected:
            yield report
