"""The provenance stamp inside the files this project writes, so a copy or a rename keeps it.

Three carriers, one payload (status, reason, licence, restricted sources):

- parquet: the schema metadata key ``asclepius.provenance`` (a JSON string);
- safetensors: the ``__metadata__`` key ``asclepius.provenance`` of the header;
- cards: the YAML key ``asclepius_provenance``, plus ``asclepius_files``, the files the
  card vouches for (name and sha256). A file dropped into the folder later is not
  listed, so the card says nothing about it.

A file is recognised by its bytes (parquet's ``PAR1`` magic, safetensors' JSON header),
not by its name: a weights file renamed to ``weights.bin`` still carries its stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

STAMP_KEY = "asclepius.provenance"  # parquet schema metadata and safetensors __metadata__
CARD_STAMP_KEY = "asclepius_provenance"  # card YAML: the stamp of the folder
CARD_FILES_KEY = "asclepius_files"  # card YAML: [{name, sha256}] of the files it vouches for
STAMP_FIELDS = ("status", "reason", "license", "license_name", "license_link", "restricted_sources")

_PARQUET_MAGIC = b"PAR1"
# A safetensors header larger than this is not one (the length prefix is then something else).
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_COPY_CHUNK = 16 * 1024 * 1024


def stamp_payload(provenance) -> dict[str, Any]:
    """The JSON-able stamp of a :class:`~asclepius.stage.provenance.Provenance`."""
    return {
        "status": provenance.status,
        "reason": provenance.reason,
        "license": provenance.license,
        "license_name": provenance.license_name,
        "license_link": provenance.license_link,
        "restricted_sources": list(provenance.restricted_sources),
    }


def stamp_text(provenance) -> str:
    return json.dumps(stamp_payload(provenance), sort_keys=True)


def parse_stamp(value: Any) -> dict[str, Any] | None:
    """The stamp as a dict (from bytes, a JSON string or a dict); None when absent, {} when unreadable."""
    if value is None:
        return None
    try:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if isinstance(value, str):
            value = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(value) if isinstance(value, Mapping) else {}


# -- reading a file's own stamp ------------------------------------------------------------


def file_kind(path: str | os.PathLike) -> str | None:
    """ "parquet" or "safetensors" from the file's bytes (whatever it is called), else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
            if head[:4] == _PARQUET_MAGIC:
                handle.seek(-4, os.SEEK_END)
                return "parquet" if handle.read(4) == _PARQUET_MAGIC else None
            if len(head) == 9 and head[8:9] == b"{":
                (length,) = struct.unpack("<Q", head[:8])
                return "safetensors" if 0 < length <= _MAX_SAFETENSORS_HEADER else None
    except OSError:
        return None
    return None


def read_safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))


def read_stamp(path: str | os.PathLike) -> dict[str, Any] | None:
    """The stamp a parquet or safetensors file carries: None when it carries none, {} when unreadable."""
    kind = file_kind(path)
    try:
        if kind == "parquet":
            metadata = pq.read_schema(path).metadata or {}
            return parse_stamp(metadata.get(STAMP_KEY.encode()))
        if kind == "safetensors":
            metadata = read_safetensors_header(path).get("__metadata__") or {}
            return parse_stamp(metadata.get(STAMP_KEY))
    except Exception:  # noqa: BLE001 - a damaged file of a stamped kind is unknown, not public
        return {}
    return None


# -- writing stamps ------------------------------------------------------------------------


def write_parquet(dataset, path: str | os.PathLike, provenance, *, batch_rows: int = 10_000) -> Path:
    """``dataset`` as a parquet file whose schema carries the stamp; written under a temporary name."""
    path = Path(path)
    schema = parquet_schema(dataset.features.arrow_schema, provenance)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pq.ParquetWriter(str(tmp), schema) as writer:
        for batch in dataset.with_format("arrow").iter(batch_size=batch_rows):
            writer.write_table(batch.cast(schema))
    os.replace(tmp, path)
    return path


def parquet_schema(schema, provenance):
    """``schema`` with the stamp in its metadata (for a ``pyarrow.parquet.ParquetWriter``)."""
    return schema.with_metadata(
        {**(schema.metadata or {}), STAMP_KEY.encode(): stamp_text(provenance).encode()}
    )


def stamp_safetensors(path: str | os.PathLike, provenance) -> bool:
    """Put the stamp into a safetensors file's ``__metadata__``; False when it already carries it.

    The header grows, so the tensors are copied after it into a new file that replaces
    the old one (a crash leaves the old file, never a half-written one).
    """
    path = Path(path)
    text = stamp_text(provenance)
    with open(path, "rb") as source:
        (length,) = struct.unpack("<Q", source.read(8))
        header = json.loads(source.read(length))
        metadata = dict(header.get("__metadata__") or {})
        if metadata.get(STAMP_KEY) == text:
            return False
        metadata[STAMP_KEY] = text
        header["__metadata__"] = metadata
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # safetensors keeps the tensor data 8-byte aligned
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as target:
            target.write(struct.pack("<Q", len(encoded)))
            target.write(encoded)
            shutil.copyfileobj(source, target, _COPY_CHUNK)
    os.replace(tmp, path)
    return True


def stamp_weights(folder: str | os.PathLike, provenance) -> list[Path]:
    """Stamp every ``*.safetensors`` file directly in ``folder`` (a model, adapter or checkpoint)."""
    stamped = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        if path.is_file() and not path.is_symlink():
            stamp_safetensors(path, provenance)
            stamped.append(path)
    return stamped


# -- the files a card vouches for ----------------------------------------------------------


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def vouched_files(folder: str | os.PathLike, names: list[str]) -> list[dict[str, str]]:
    """``[{name, sha256}]`` for ``names`` (relative, '/'-separated) in ``folder``."""
    folder = Path(folder)
    return [{"name": name, "sha256": sha256_of(folder / name)} for name in names]
