"""What an input is: public, restricted (MIMIC or any credentialed source) or unknown.

Fail closed: **unknown is treated as restricted**. An input is public only when a card
written by this project says so, or when the user declares the licence of a raw file or
Hub id explicitly. It is restricted when anything about it points to credentialed
notes: our cards or markers (in the folder, in a folder above it, or in one below it),
or a table with MIMIC's NOTEEVENTS columns, whatever flags say. Everything else (a
folder with no card, a Hub dataset id, a training checkpoint, a Hub adapter) is unknown.

Outputs inherit the most restrictive status of their inputs; a stage writes the
``.asclepius/provenance.json`` marker *before* its first row, so even an unfinished
folder (or one of its parquet files, or a checkpoint) is recognised downstream.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from asclepius.stage.files import CARD_NAME, WORK_DIR_NAME, atomic_write_text, read_card_metadata, work_dir

PUBLIC, RESTRICTED, UNKNOWN = "public", "restricted", "unknown"
MARKER_NAME = "provenance.json"
# Card metadata key every card of this project carries: public | restricted | unknown.
CARD_KEY = "data_provenance"

# Licences by source; MIMIC is under the PhysioNet credentialed data use agreement.
PMC_PATIENTS_LICENSE = "cc-by-nc-sa-4.0"
MIMIC_LICENSE = "other"
MIMIC_LICENSE_NAME = "physionet-credentialed-health-data-license-1.5.0"
MIMIC_LICENSE_LINK = "https://physionet.org/content/mimiciii/view-license/1.4/"

# MIMIC-III NOTEEVENTS: a table with these columns is credentialed notes, whatever it is called.
NOTEEVENTS_COLUMNS = frozenset({"ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "TEXT"})
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".jsonl", ".json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")
# How deep below a folder to look for restricted data (a parent of MIMIC folders), and how much.
_SCAN_DEPTH, _SCAN_LIMIT = 4, 5000
_HEAD_CHARS = 1 << 16


@dataclass(frozen=True)
class Provenance:
    """Status and licence of one input (or of a stage's output, combined from its inputs)."""

    status: str
    reason: str
    source: str = ""
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    upstream: tuple[dict[str, Any], ...] = field(default=())

    @property
    def restricted(self) -> bool:
        """True for restricted AND unknown data: what we cannot show to be public is not."""
        return self.status != PUBLIC

    @property
    def mimic_derived(self) -> bool:
        """Credentialed for certain (MIMIC or another PhysioNet source), not merely unknown."""
        return self.status == RESTRICTED

    @property
    def physionet(self) -> bool:
        """Restricted under PhysioNet's licence (MIMIC), not under a licence the user declared."""
        return self.status == RESTRICTED and self.license in (None, MIMIC_LICENSE)

    def describe(self) -> str:
        return f"{self.source or 'input'} is {self.status} ({self.reason})"

    def card_license(self, default: str | None = None) -> dict[str, str]:
        """The card's licence fields: PhysioNet's for MIMIC data, else the known (declared) licence."""
        if self.physionet:
            return {
                "license": MIMIC_LICENSE,
                "license_name": MIMIC_LICENSE_NAME,
                "license_link": MIMIC_LICENSE_LINK,
            }
        fields = {"license": self.license or default or "other"}
        if self.license_name:
            fields["license_name"] = self.license_name
        if self.license_link:
            fields["license_link"] = self.license_link
        return fields


def restricted(source: str, reason: str, license: str | None = None) -> Provenance:
    """Restricted data: under PhysioNet's licence unless the user declared its own (an institution's notes)."""
    if license and license != MIMIC_LICENSE:
        return Provenance(RESTRICTED, reason, str(source), license)
    return Provenance(RESTRICTED, reason, str(source), MIMIC_LICENSE, MIMIC_LICENSE_NAME, MIMIC_LICENSE_LINK)


def declare_source(
    source: str | os.PathLike, *, license: str | None, restricted_source: bool | None = None
) -> Provenance:
    """The user's declaration for a raw file or Hub id: its licence, and whether it is credentialed.

    ``license`` None and ``restricted_source`` not False: nothing is declared, the source is
    unknown. ``restricted_source`` True: restricted, whatever the licence. A table with
    MIMIC's NOTEEVENTS columns is restricted whatever is declared.
    """
    source = str(source)
    found = _evidence(source)
    if found is not None:
        return replace(found, source=source)
    if restricted_source:
        return restricted(source, "declared restricted by the user", license)
    if license:
        return Provenance(PUBLIC, f"licence {license} declared by the user", source, license)
    return Provenance(UNKNOWN, "no card of this project and no declared licence", source)


def classify(
    source: str | os.PathLike | None,
    *,
    declared_license: str | None = None,
    declared_restricted: bool | None = None,
    kind: str = "data",
) -> Provenance:
    """Classify one input. ``kind``: data (notes, datasets, answers), model (base weights) or adapter.

    A folder or file is judged by the nearest card of this project at or above it, after
    a search for restricted evidence at, above and below it. A Hub id cannot be checked
    offline: data and adapters are unknown unless declared; a base model's weights hold
    no notes of ours and are public as their owner published them.
    """
    if source is None:
        return Provenance(UNKNOWN, "no input named")
    source = str(source)
    path = Path(source)
    if not path.exists():
        if kind == "model" and _HUB_ID.match(source):
            return Provenance(PUBLIC, "Hub model weights, published by their owner", source)
        if _HUB_ID.match(source) or kind != "data":
            return declare_source(source, license=declared_license, restricted_source=declared_restricted)
        return Provenance(UNKNOWN, "not found", source)
    found = _evidence(source)
    if found is not None:
        return replace(found, source=source)
    card_folder = _nearest_card(path)
    if card_folder is not None:
        metadata = read_card_metadata(card_folder)
        status = metadata.get(CARD_KEY) or (PUBLIC if _is_ours(metadata) else None)
        if status == PUBLIC:
            where = "its card" if card_folder == path.resolve() else f"the card of {card_folder}"
            return Provenance(
                PUBLIC,
                f"{where} says public",
                source,
                metadata.get("license"),
                metadata.get("license_name"),
                metadata.get("license_link"),
                tuple(_upstream(metadata)),
            )
        if status in (RESTRICTED, UNKNOWN):
            return Provenance(status, f"the card of {card_folder} says {status}", source)
    if _CHECKPOINT.match(path.name):
        return Provenance(UNKNOWN, "a training checkpoint of an unfinished run", source)
    return declare_source(source, license=declared_license, restricted_source=declared_restricted)


def combine(inputs: Iterable[Provenance]) -> Provenance:
    """What an output built from ``inputs`` is: the most restrictive of them (none: unknown)."""
    inputs = list(inputs)
    for status in (RESTRICTED, UNKNOWN):
        for item in inputs:
            if item.status == status:
                return item
    if not inputs:
        return Provenance(UNKNOWN, "no input")
    return inputs[0]


def mark(output_dir: str | os.PathLike, provenance: Provenance) -> None:
    """Write the folder's marker before its first row: restricted data is recognised even unfinished."""
    payload = {
        "status": provenance.status,
        "reason": provenance.reason,
        "mimic_derived": provenance.restricted,
        "license": provenance.license,
    }
    atomic_write_text(work_dir(output_dir) / MARKER_NAME, json.dumps(payload) + "\n")


def mark_mimic_derived(output_dir: str | os.PathLike) -> None:
    mark(output_dir, restricted(str(output_dir), "MIMIC-derived"))


def is_mimic_derived(folder: str | os.PathLike) -> bool:
    """True when the folder (or a folder above or below it) holds restricted data for certain."""
    found = _evidence(str(folder))
    return found is not None and found.status == RESTRICTED


def _is_ours(metadata: dict[str, Any]) -> bool:
    tags = [str(tag).lower() for tag in metadata.get("tags") or []]
    return "asclepius" in tags and "license" in metadata


def _upstream(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    chain = metadata.get("asclepius") or {}
    if not isinstance(chain, dict) or not chain:
        return []
    return list(chain.get("upstream") or []) + [{k: v for k, v in chain.items() if k != "upstream"}]


def _nearest_card(path: Path) -> Path | None:
    """The folder whose card speaks for ``path``: its own, or the nearest above when ``path`` is a
    file or checkpoint directly inside it, or under its ``data/`` (a stage's parquet). A card does
    not vouch for whatever else someone copies deeper into its folder."""
    path = path.resolve()
    for folder in [path, *path.parents] if path.is_dir() else list(path.parents):
        if (folder / CARD_NAME).is_file() and read_card_metadata(folder):
            inside = path.relative_to(folder).parts
            return folder if len(inside) <= 1 or inside[0] == "data" else None
    return None


def _folder_says(folder: Path) -> Provenance | None:
    """What the folder's own marker or card says when it is not public, else None."""
    marker = folder / WORK_DIR_NAME / MARKER_NAME
    if marker.is_file():
        try:
            payload = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return Provenance(UNKNOWN, f"{marker} is unreadable", str(folder))
        status = payload.get("status") or (RESTRICTED if payload.get("mimic_derived") else PUBLIC)
        if status == RESTRICTED:
            return restricted(str(folder), f"{folder} is marked restricted", payload.get("license"))
        if status == UNKNOWN:
            return Provenance(UNKNOWN, f"{folder} is marked unknown ({payload.get('reason')})", str(folder))
    if (folder / CARD_NAME).is_file():
        metadata = read_card_metadata(folder)
        tags = [str(tag).lower() for tag in metadata.get("tags") or []]
        if "mimic" in tags:
            return restricted(str(folder), f"the card of {folder} says MIMIC-derived")
        if metadata.get("mimic_derived") or metadata.get(CARD_KEY) == RESTRICTED:
            # Restricted under its own declared licence (an institution's notes), or PhysioNet's.
            return restricted(str(folder), f"the card of {folder} says restricted", metadata.get("license"))
        if metadata.get(CARD_KEY) == UNKNOWN:
            return Provenance(UNKNOWN, f"the card of {folder} says unknown provenance", str(folder))
    return None


def _evidence(source: str) -> Provenance | None:
    """Why ``source`` is not public: markers at/above/below it, NOTEEVENTS columns (restricted first)."""
    path = Path(source)
    if not path.exists():
        return None
    resolved = path.resolve()
    found: list[Provenance] = []
    for folder in [resolved, *resolved.parents] if path.is_dir() else list(resolved.parents):
        said = _folder_says(folder)
        if said is not None:
            found.append(said)
    if path.is_file():
        said = _noteevents_table(path)
        found += [said] if said is not None else []
    else:
        found += _scan_below(path)
    if not found:
        return None
    return next((item for item in found if item.status == RESTRICTED), found[0])


def _scan_below(path: Path) -> list[Provenance]:
    """Restricted evidence inside a folder (a parent of MIMIC folders, a NOTEEVENTS file)."""
    seen = 0
    for root, dirs, files in os.walk(path):
        depth = len(Path(root).relative_to(path).parts)
        dirs[:] = [d for d in dirs if depth < _SCAN_DEPTH]
        for name in dirs:
            said = _folder_says(Path(root) / name)
            if said is not None and said.status == RESTRICTED:
                return [said]
        for name in files:
            seen += 1
            if seen > _SCAN_LIMIT:
                return [Provenance(UNKNOWN, f"too many files under {path} to check", str(path))]
            said = _noteevents_table(Path(root) / name) if name.lower().endswith(_TABLE_SUFFIXES) else None
            if said is not None:
                return [said]
    return []


def _noteevents_table(path: Path) -> Provenance | None:
    columns = {column.upper() for column in table_columns(path)}
    if NOTEEVENTS_COLUMNS <= columns or ("TEXT" in columns and {"ROW_ID", "HADM_ID"} <= columns):
        return restricted(str(path), f"{path} has MIMIC NOTEEVENTS columns")
    return None


def table_columns(path: Path) -> list[str]:
    """Column names of a CSV/TSV/parquet/JSON-lines file, read from its head only ([] if unreadable)."""
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if name.endswith((".csv", ".tsv", ".csv.gz")):
            import csv
            import gzip

            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
                return next(csv.reader(handle, delimiter="\t" if name.endswith(".tsv") else ","), [])
        if name.endswith((".jsonl", ".json")):
            with path.open(encoding="utf-8", errors="replace") as handle:
                first = handle.readline(_HEAD_CHARS).strip()  # a one-line tokenizer.json is not read whole
            record = json.loads(first.rstrip(",").lstrip("[")) if first else {}
            return list(record) if isinstance(record, dict) else []
    except (OSError, ValueError, StopIteration):
        return []
    except Exception:  # noqa: BLE001 - a file we cannot parse is judged by the rest of the rules
        return []
    return []


def with_upstream(provenance: Provenance, upstream: Iterable[dict[str, Any]]) -> Provenance:
    return replace(provenance, upstream=tuple(upstream))
