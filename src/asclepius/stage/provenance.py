"""What an input is: public, restricted (MIMIC or any credentialed source) or unknown.

Fail closed: **unknown is treated as restricted**. The provenance travels inside what
this project writes (:mod:`asclepius.stage.stamps`): every parquet file and weights file
carries its stamp, and every card lists the files it vouches for (name and sha256). So:

- a file is what its own stamp says (a copy, a rename or a link keeps it), or what the
  card of its folder says when the card lists it with the same hash; any other file is
  unknown unless the user declares its licence (a raw CSV of case reports);
- a folder is what its card says, combined with every file an upload would send: a
  file dropped in after the card was written makes the folder unknown, not public;
- a table the readers parse into MIMIC NOTEEVENTS columns (``asclepius.data.readers``,
  the one detector) is restricted whatever anyone declares, and so is anything inside
  or below a folder marked restricted, or above a restricted folder;
- a Hub model id is judged by its model card (the local Hugging Face cache offline,
  the Hub online): a card naming MIMIC, PhysioNet or restricted data makes it
  restricted; no readable card, unknown.

Outputs inherit the most restrictive status of their inputs; a stage writes the
``.asclepius/provenance.json`` marker *before* its first row, so even an unfinished
folder (or one of its checkpoints) is recognised downstream.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from huggingface_hub import RepoCard, hf_hub_download, try_to_load_from_cache
from huggingface_hub.utils import filter_repo_objects

from asclepius.data.readers import NOTEEVENTS_COLUMNS, is_noteevents, table_columns
from asclepius.offline import offline_unless_hub_reachable
from asclepius.stage.files import (
    CARD_NAME,
    NEVER_UPLOADED,
    WORK_DIR_NAME,
    atomic_write_text,
    read_card_metadata,
    work_dir,
)
from asclepius.stage.stamps import CARD_FILES_KEY, CARD_STAMP_KEY, read_stamp, sha256_of, stamp_payload

PUBLIC, RESTRICTED, UNKNOWN = "public", "restricted", "unknown"
STATUSES = (PUBLIC, RESTRICTED, UNKNOWN)
MARKER_NAME = "provenance.json"
# Card metadata key every card of this project carries: public | restricted | unknown.
CARD_KEY = "data_provenance"

# Licences by source; MIMIC is under the PhysioNet credentialed data use agreement.
PMC_PATIENTS_LICENSE = "cc-by-nc-sa-4.0"
MIMIC_LICENSE = "other"
MIMIC_LICENSE_NAME = "physionet-credentialed-health-data-license-1.5.0"
MIMIC_LICENSE_LINK = "https://physionet.org/content/mimiciii/view-license/1.4/"

__all__ = ["NOTEEVENTS_COLUMNS", "Provenance", "classify", "combine", "declare_source"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Words of a model card (not ours) that say its model saw credentialed notes.
_RESTRICTED_WORDS = re.compile(r"\b(mimic|physionet|credentialed|restricted)\b", re.IGNORECASE)
# How many files below a folder are checked; a folder with more is unknown (fail closed).
_SCAN_LIMIT = 20_000


@dataclass(frozen=True)
class Provenance:
    """Status and licence of one input (or of a stage's output, combined from its inputs).

    ``restricted_sources`` names every restricted input behind it (a NOTEEVENTS file, a
    restricted folder, a model trained on one), carried through stamps and combinations.
    """

    status: str
    reason: str
    source: str = ""
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    upstream: tuple[dict[str, Any], ...] = field(default=())
    restricted_sources: tuple[str, ...] = ()

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
    source = str(source)
    if license and license != MIMIC_LICENSE:
        return Provenance(RESTRICTED, reason, source, license, restricted_sources=(source,))
    return Provenance(
        RESTRICTED,
        reason,
        source,
        MIMIC_LICENSE,
        MIMIC_LICENSE_NAME,
        MIMIC_LICENSE_LINK,
        restricted_sources=(source,),
    )


def from_stamp(stamp: dict[str, Any] | None, source: str, where: str) -> Provenance:
    """The Provenance a stamp (of a file or a card) records; an unreadable stamp is unknown."""
    status = (stamp or {}).get("status")
    if status not in STATUSES:
        return Provenance(UNKNOWN, f"{where} has an unreadable provenance stamp", source)
    sources = stamp.get("restricted_sources") or []
    return Provenance(
        status,
        f"{where} says {status}",  # not the stamp's own reason: reasons would nest stage after stage
        source,
        stamp.get("license"),
        stamp.get("license_name"),
        stamp.get("license_link"),
        restricted_sources=tuple(str(item) for item in sources) if isinstance(sources, list) else (),
    )


def declare_source(
    source: str | os.PathLike, *, license: str | None, restricted_source: bool | None = None
) -> Provenance:
    """The user's declaration for a raw file or Hub id: its licence, and whether it is credentialed.

    Same as :func:`classify` with the declaration: a stamp, a card or NOTEEVENTS columns
    speak before it, and a declaration never makes restricted data public.
    """
    return classify(source, declared_license=license, declared_restricted=restricted_source)


def _declared(source: str, license: str | None, restricted_source: bool | None) -> Provenance:
    if restricted_source:
        return restricted(source, "declared restricted by the user", license)
    if license:
        return Provenance(PUBLIC, f"licence {license} declared by the user", source, license)
    return Provenance(UNKNOWN, "no stamp or card of this project and no declared licence", source)


def classify(
    source: str | os.PathLike | None,
    *,
    declared_license: str | None = None,
    declared_restricted: bool | None = None,
    kind: str = "data",
) -> Provenance:
    """Classify one input: the single entry point. ``kind``: data (notes, datasets, answers), model or adapter.

    A local file or folder is judged by its stamps, its card's list of files, the readers'
    NOTEEVENTS detector and the markers around it (see the module's doc). A Hub id:
    a model or adapter by its model card; a dataset is unknown unless declared.
    ``declared_*`` apply to what carries no stamp and no card (a raw file), and a
    declared restriction always applies.
    """
    if source is None:
        return Provenance(UNKNOWN, "no input named")
    source = str(source)
    path = Path(source)
    declared = _declared(source, declared_license, declared_restricted)
    if not path.exists():
        if _HUB_ID.match(source) and kind in ("model", "adapter"):
            found = hub_model_provenance(source)
            if found.status == UNKNOWN and declared.status != UNKNOWN:
                return declared  # no readable card: what the user declares
            return combine([found, declared]) if declared.status == RESTRICTED else found
        if _HUB_ID.match(source):
            return declared
        return declared if declared.status != UNKNOWN else Provenance(UNKNOWN, "not found", source)
    found = [
        *_evidence_around(path),
        _file(path, source, declared) if path.is_file() else _folder(path, source, declared),
    ]
    if declared.status == RESTRICTED:
        found.append(declared)
    return replace(combine(found), source=source)


def combine(inputs: Iterable[Provenance | None]) -> Provenance:
    """What an output built from ``inputs`` is: the most restrictive of them (none: unknown).

    Every restricted source behind any input is kept, so the output's stamp names them all.
    """
    inputs = [item for item in inputs if item is not None]
    if not inputs:
        return Provenance(UNKNOWN, "no input")
    sources = tuple(dict.fromkeys(source for item in inputs for source in item.restricted_sources))
    for status in (RESTRICTED, UNKNOWN, PUBLIC):
        for item in inputs:
            if item.status == status:
                return replace(item, restricted_sources=sources)
    return inputs[0]


def mark(output_dir: str | os.PathLike, provenance: Provenance) -> None:
    """Write the folder's marker before its first row: restricted data is recognised even unfinished."""
    payload = {**stamp_payload(provenance), "mimic_derived": provenance.restricted}
    atomic_write_text(work_dir(output_dir) / MARKER_NAME, json.dumps(payload) + "\n")


def read_marker(output_dir: str | os.PathLike) -> Provenance:
    """The provenance a stage marked its folder with (what its weights are stamped with); none: unknown."""
    marker = Path(output_dir) / WORK_DIR_NAME / MARKER_NAME
    try:
        payload = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Provenance(UNKNOWN, f"no readable provenance marker in {output_dir}", str(output_dir))
    if not isinstance(payload, dict):
        payload = {}
    if "status" not in payload and payload.get("mimic_derived"):
        payload["status"] = RESTRICTED
    return from_stamp(payload, str(output_dir), f"the marker of {output_dir}")


def mark_mimic_derived(output_dir: str | os.PathLike) -> None:
    mark(output_dir, restricted(str(output_dir), "MIMIC-derived"))


def is_mimic_derived(folder: str | os.PathLike) -> bool:
    """True when the folder (or a folder above or below it) holds restricted data for certain."""
    return Path(folder).exists() and classify(folder).status == RESTRICTED


def with_upstream(provenance: Provenance, upstream: Iterable[dict[str, Any]]) -> Provenance:
    return replace(provenance, upstream=tuple(upstream))


# -- models on the Hub -------------------------------------------------------------------------


def hub_model_provenance(repo_id: str) -> Provenance:
    """A Hub model by its card: from the local cache (offline) or the Hub (online); no card: unknown."""
    text = _hub_card_text(repo_id)
    if text is None:
        return Provenance(
            UNKNOWN, "no readable model card (not in the Hugging Face cache, Hub not reached)", repo_id
        )
    return card_text_provenance(text, repo_id, where=f"the model card of {repo_id}", public_if_clean=True)


def _hub_card_text(repo_id: str) -> str | None:
    try:
        cached = try_to_load_from_cache(repo_id, CARD_NAME)
        if not isinstance(cached, str) and not offline_unless_hub_reachable():
            cached = hf_hub_download(repo_id, CARD_NAME)
        return Path(cached).read_text(encoding="utf-8", errors="replace") if isinstance(cached, str) else None
    except Exception:  # noqa: BLE001 - no network, no repo, no card: all mean "no readable card"
        return None


def card_text_provenance(text: str, source: str, *, where: str, public_if_clean: bool) -> Provenance:
    """What a card says: its stamp when it is ours; else restricted when it names MIMIC, PhysioNet or
    restricted data, and otherwise public (``public_if_clean``, a Hub model's own card) or unknown."""
    try:
        metadata = RepoCard(text).data.to_dict() if text.startswith("---") else {}
    except Exception:  # noqa: BLE001 - a card whose YAML does not parse is read as plain text
        metadata = {}
    said = _card_says(metadata, source, where)
    if said is not None:
        return said
    if _RESTRICTED_WORDS.search(text):
        return restricted(source, f"{where} names MIMIC, PhysioNet or restricted data")
    if public_if_clean:
        return Provenance(PUBLIC, f"{where} names no restricted data", source, metadata.get("license"))
    return Provenance(UNKNOWN, f"{where} is not a card of this project", source)


def _card_says(metadata: dict[str, Any], source: str, where: str) -> Provenance | None:
    """What a card of this project says about its folder (None: not a card of ours)."""
    if CARD_STAMP_KEY in metadata:
        said = from_stamp(metadata.get(CARD_STAMP_KEY), source, where)
        return replace(said, upstream=tuple(_upstream(metadata))) if said.status == PUBLIC else said
    tags = [str(tag).lower() for tag in metadata.get("tags") or []]
    if "mimic" in tags:
        return restricted(source, f"{where} says MIMIC-derived")
    status = metadata.get(CARD_KEY)
    if metadata.get("mimic_derived") or status == RESTRICTED:
        return restricted(source, f"{where} says restricted", metadata.get("license"))
    if status == UNKNOWN:
        return Provenance(UNKNOWN, f"{where} says unknown provenance", source)
    if status == PUBLIC or _is_ours(metadata):
        return Provenance(
            PUBLIC,
            f"{where} says public",
            source,
            metadata.get("license"),
            metadata.get("license_name"),
            metadata.get("license_link"),
            tuple(_upstream(metadata)),
        )
    return None


def card_provenance(metadata: dict[str, Any], source: str) -> Provenance:
    """What a card of this project with ``metadata`` says about its folder (unknown when it says nothing)."""
    said = _card_says(metadata, source, "its card")
    return said if said is not None else Provenance(UNKNOWN, "its card states no provenance", source)


def _is_ours(metadata: dict[str, Any]) -> bool:
    tags = [str(tag).lower() for tag in metadata.get("tags") or []]
    return "asclepius" in tags and "license" in metadata


def _upstream(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    chain = metadata.get("asclepius") or {}
    if not isinstance(chain, dict) or not chain:
        return []
    return list(chain.get("upstream") or []) + [{k: v for k, v in chain.items() if k != "upstream"}]


# -- local files and folders -------------------------------------------------------------------


def _card_of(folder: Path) -> tuple[Provenance, dict[str, str]] | None:
    """What ``folder``'s card says about the folder, and the files it lists ({name: sha256}); None: no card."""
    card = folder / CARD_NAME
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None  # a plain README (no YAML header) is no card
    said = card_text_provenance(text, str(folder), where=f"the card of {folder}", public_if_clean=False)
    metadata = read_card_metadata(folder)
    listed = {
        str(item["name"]): str(item["sha256"])
        for item in metadata.get(CARD_FILES_KEY) or []
        if isinstance(item, dict) and item.get("name") and item.get("sha256")
    }
    return said, listed


def _folder_says(folder: Path) -> Provenance | None:
    """What the folder's own marker or card says when it is not public, else None."""
    if (folder / WORK_DIR_NAME / MARKER_NAME).is_file():
        said = read_marker(folder)
        if (
            said.status == RESTRICTED and not said.restricted_sources
        ):  # a marker written before sources were kept
            said = replace(said, restricted_sources=(str(folder),))
        if said.status != PUBLIC:
            return said
    said = _card_says(read_card_metadata(folder), str(folder), f"the card of {folder}")
    return said if said is not None and said.status != PUBLIC else None


def _evidence_around(path: Path) -> list[Provenance]:
    """Restricted (or unknown) markers and cards of the folders holding ``path`` (and its own, for a folder)."""
    resolved = path.resolve()
    found = []
    for folder in [resolved, *resolved.parents] if resolved.is_dir() else list(resolved.parents):
        said = _folder_says(folder)
        if said is not None:
            found.append(said)
    return found


def _file(path: Path, source: str, declared: Provenance) -> Provenance:
    """One file: NOTEEVENTS columns, else its own stamp, else the card that lists it, else the declaration."""
    real = path.resolve()
    if is_noteevents(table_columns(real)):
        return restricted(source, f"{path} has MIMIC NOTEEVENTS columns")
    stamp = read_stamp(real)
    if stamp is not None:
        return from_stamp(stamp, source, f"the stamp inside {path.name}")
    for folder in real.parents:
        card = _card_of(folder)
        if card is not None:
            said, listed = card
            name = real.relative_to(folder).as_posix()
            if name in listed:
                if sha256_of(real) == listed[name]:
                    return replace(said, source=source)
                return Provenance(UNKNOWN, f"{name} changed since the card of {folder} was written", source)
            break  # the nearest card does not list it: it says nothing about it
    return declared


def _folder(path: Path, source: str, declared: Provenance) -> Provenance:
    """A folder: its card, combined with every file below it (each vouched, stamped, or declared)."""
    card = _card_of(path)
    said, listed = card if card is not None else (None, {})
    uploaded = set(filter_repo_objects([name for name, _ in _walk(path)], ignore_patterns=NEVER_UPLOADED))
    found: list[Provenance] = [said] if said is not None else []
    count = 0
    for name, real in _walk(path):
        count += 1
        if count > _SCAN_LIMIT:
            return Provenance(UNKNOWN, f"more than {_SCAN_LIMIT} files under {path} to check", source)
        if name == CARD_NAME:
            continue
        if real.is_dir():
            said_below = _folder_says(real)
            if said_below is not None and said_below.status == RESTRICTED:
                found.append(said_below)
            continue
        if is_noteevents(table_columns(real)):
            return restricted(source, f"{path / name} has MIMIC NOTEEVENTS columns")
        stamp = read_stamp(real)
        if stamp is not None:
            found.append(from_stamp(stamp, source, f"the stamp inside {name}"))
        elif name not in uploaded:
            continue  # working state, checkpoints' optimizer files: never loaded as the folder, never pushed
        elif name in listed:
            if sha256_of(real) != listed[name]:
                found.append(
                    Provenance(UNKNOWN, f"{name} changed since the card of {path} was written", source)
                )
        elif card is not None:
            found.append(
                Provenance(UNKNOWN, f"{name} is not one of the files the card of {path} vouches for", source)
            )
        else:
            found.append(declared)
    if not found:
        return declared
    return combine(found)


def _walk(path: Path) -> Iterator[tuple[str, Path]]:
    """(relative '/'-name, resolved path) of every file and folder below ``path``, symlinks followed once."""
    seen = {path.resolve()}
    for root, dirs, files in os.walk(path, followlinks=True):
        root_path = Path(root)
        kept = []
        for name in sorted(dirs):
            real = (root_path / name).resolve()
            if real in seen:
                continue  # a link back up (or twice to one folder): checked once
            seen.add(real)
            kept.append(name)
            yield (root_path / name).relative_to(path).as_posix(), real
        dirs[:] = kept
        for name in sorted(files):
            yield (root_path / name).relative_to(path).as_posix(), (root_path / name).resolve()
