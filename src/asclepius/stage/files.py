"""The files of a stage folder: the card that marks it finished, its working state, atomic writes.

Every stage's ``--output_dir`` is a folder that ``datasets.load_dataset(folder)`` or
``from_pretrained(folder)`` loads as it is, and that the push uploads unchanged. A
folder is *finished* when its card (``README.md``) exists: stages write the card last
and remove it first, so a crash never leaves a folder that looks complete. Working
state (the request ledger, staging files, the lock, the provenance marker) lives in
``.asclepius/`` inside the folder and is never uploaded.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asclepius.stage.stamps import write_parquet

WORK_DIR_NAME = ".asclepius"
CARD_NAME = "README.md"

# fnmatch patterns as huggingface_hub applies them to paths relative to the folder ('*' also
# matches '/'): each excluded name is excluded at any depth (a stage folder nested in the
# pushed one has its own .asclepius/ and checkpoints).
NEVER_UPLOADED = [
    f"{WORK_DIR_NAME}/*",
    f"*/{WORK_DIR_NAME}/*",
    "checkpoint-*/*",
    "*/checkpoint-*/*",
    "*.tmp",
    "training_args.bin",
    "*/training_args.bin",
    "*.pkl",
    "*.pickle",
]


def uploaded_files(folder: str | os.PathLike) -> list[str]:
    """The paths (relative, '/'-separated) an upload of ``folder`` sends: huggingface_hub's own filter."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    paths = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=NEVER_UPLOADED))


def work_dir(output_dir: str | os.PathLike) -> Path:
    """The stage's private working folder inside its output folder (ledger, staging, lock)."""
    path = Path(output_dir) / WORK_DIR_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_finished(output_dir: str | os.PathLike) -> bool:
    return (Path(output_dir) / CARD_NAME).exists()


def mark_unfinished(output_dir: str | os.PathLike) -> None:
    """Remove the card so a folder being rewritten never looks finished."""
    card = Path(output_dir) / CARD_NAME
    if card.exists():
        card.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_card_metadata(folder: str | os.PathLike) -> dict:
    """The YAML metadata of a folder's card, or {} when it has none (or it does not parse)."""
    from huggingface_hub import RepoCard

    path = Path(folder) / CARD_NAME
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        if handle.readline().strip() != "---":
            return {}  # a plain README (no YAML header) is no card of ours
    try:
        return RepoCard.load(path).data.to_dict()
    except Exception:  # noqa: BLE001 - a README that is not a card is no card of ours
        return {}


def size_category(n: int) -> str:
    for bound, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < bound:
            return label
    return "1M<n<10M"


def today() -> str:
    return _dt.date.today().isoformat()


def write_dataset_configs(
    output_dir: str | os.PathLike, configs: Mapping[str, Mapping[str, Any]], *, provenance
) -> list[dict]:
    """Write ``{config: {split: Dataset}}`` as ``data/<config>/<split>-00000-of-00001.parquet``.

    Each file carries ``provenance`` (a :class:`~asclepius.stage.provenance.Provenance`)
    in its schema metadata, so a copy of it is recognised anywhere. Each is written under
    a temporary name and renamed, so a crash leaves no truncated parquet. Returns the
    ``configs`` YAML entries for the card (the first config is the default).
    """
    output_dir = Path(output_dir)
    entries = []
    for index, (config_name, splits) in enumerate(configs.items()):
        folder = output_dir / "data" / config_name
        folder.mkdir(parents=True, exist_ok=True)
        data_files = []
        for split, dataset in splits.items():
            write_parquet(dataset, folder / f"{split}-00000-of-00001.parquet", provenance)
            data_files.append({"split": split, "path": f"data/{config_name}/{split}-*.parquet"})
        entry = {"config_name": config_name, "data_files": data_files}
        if index == 0:
            entry["default"] = True
        entries.append(entry)
    return entries
