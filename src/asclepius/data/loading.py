"""Load a dataset the same way in every stage: a Hub-ready folder, a file, or a Hub id."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_dataset_builder, load_from_disk

from asclepius.data.splits import split_by_patient
from asclepius.errors import InputError

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# What ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` leave in a folder.
SAVED_TO_DISK_MARKERS = ("state.json", "dataset_dict.json")


def is_saved_to_disk(folder: Path) -> bool:
    return any((folder / name).is_file() for name in SAVED_TO_DISK_MARKERS)


def load_any(path_or_id: str, config: str | None = None) -> DatasetDict:
    """All splits of a folder (``load_dataset(folder)``, or ``load_from_disk`` for a ``save_to_disk`` folder),
    a json/jsonl/csv/parquet file, or a Hub dataset."""
    path = Path(path_or_id)
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise InputError(
                path, f"unsupported file type {path.suffix!r}; expected one of {sorted(FILE_BUILDERS)}"
            )
        return load_dataset(builder, data_files={"train": str(path)})
    if path.is_dir() and is_saved_to_disk(path):
        saved = load_from_disk(str(path))
        return saved if isinstance(saved, DatasetDict) else DatasetDict({"train": saved})
    if path.is_dir():
        return _load_folder(path, config)
    if path_or_id.startswith((".", "/")) or path.suffix.lower() in FILE_BUILDERS:
        raise InputError(path, "no such file or folder")
    return load_dataset(path_or_id, config)


def _load_folder(path: Path, config: str | None) -> DatasetDict:
    """A local folder through its file builder (parquet, json...) with the files its card lists.

    ``load_dataset(folder)`` on a folder whose card has YAML ``configs`` caches under a key
    that ignores where the files are and when they changed (datasets 5.2): two folders
    with the same name, or one folder rewritten by a rerun, would read stale rows. A file
    builder given the resolved files keys its cache on their paths and modification times.
    """
    builder = load_dataset_builder(str(path), config)
    data_files = {str(split): list(files) for split, files in (builder.config.data_files or {}).items()}
    if not data_files:
        return load_dataset(str(path), config)
    module = type(builder).__module__.rsplit(".", 1)[-1]  # datasets.packaged_modules.parquet.parquet
    return load_dataset(module, data_files=data_files)


def load_split(
    path_or_id: str,
    split: str,
    *,
    config: str | None = None,
    test_ratio: float | None = None,
    seed: int = 0,
) -> Dataset:
    """One split; when the source has only ``train`` and ``test_ratio`` is given, split it by patient.

    This lets the training and evaluation stages share one held-out view of a plain
    file (for example the bundled ``data/demo/synthetic_notes.jsonl``).
    """
    splits = load_any(path_or_id, config)
    # Checked first: a plain file loads as one "train" split, and asking it for "train"
    # with a test_ratio must return the patients NOT held out, not every row.
    if set(splits) == {"train"} and test_ratio:
        return split_by_patient(splits["train"], test_ratio, seed)[split]
    if split in splits:
        return splits[split]
    raise InputError(path_or_id, f"no split {split!r}; available: {sorted(splits)}")
