"""What every data stage does around its own logic: inputs, resumable outputs, provenance, push.

A stage's output folder goes through three states:

- *finished*: the card (README.md) exists. Rerunning says so and exits 0 unless
  ``--overwrite``;
- *unfinished*: a run started (card removed first) but did not write its card. A rerun
  resumes: the engine's ledger in ``.asclepius/`` serves every answer already paid for;
- *absent*.

Rows are staged to a parquet file as results arrive (constant memory, whatever the
input size), then sorted back into input order so a dataset does not depend on the
order in which the API happened to answer.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value

from asclepius import hub
from asclepius.data.loading import load_any
from asclepius.errors import InputError

logger = logging.getLogger(__name__)

SOURCE_ROW = "source_row"  # position of a row's input, used to restore input order

# What every teacher call leaves on its row (shown in the annotated config, counted in the card).
PROVENANCE_FEATURES = {
    "error": Value("string"),
    "finish_reason": Value("string"),
    "prompt_tokens": Value("int64"),
    "completion_tokens": Value("int64"),
    "teacher_model": Value("string"),
    "prompt_hash": Value("string"),
}


def provenance(result: Any, *, teacher_model: str, prompt_hash: str) -> dict[str, Any]:
    """The PROVENANCE_FEATURES values of one engine Result (None: the request was never sent)."""
    usage = (result.usage if result is not None else None) or {}
    return {
        "error": result.error if result is not None else None,
        "finish_reason": result.finish_reason if result is not None else None,
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
        "teacher_model": teacher_model,
        "prompt_hash": prompt_hash,
    }


@dataclass
class SourceInfo:
    """Licence and provenance a stage inherits from its input."""

    license: str
    license_name: str | None = None
    license_link: str | None = None
    mimic_derived: bool = False
    upstream: list[dict[str, Any]] = field(default_factory=list)  # provenance of earlier stages

    @classmethod
    def for_mimic(cls) -> SourceInfo:
        return cls(hub.MIMIC_LICENSE, hub.MIMIC_LICENSE_NAME, hub.MIMIC_LICENSE_LINK, mimic_derived=True)

    @classmethod
    def of_folder(cls, source: str, default_license: str) -> SourceInfo:
        """Read an earlier stage's card: its licence, MIMIC flag and provenance chain."""
        path = Path(source)
        if not path.is_dir():
            return cls(default_license)
        metadata = hub.read_card_metadata(path)
        mimic = hub.is_mimic_derived(path)
        if mimic:
            info = cls.for_mimic()
        else:
            info = cls(
                metadata.get("license") or default_license,
                metadata.get("license_name"),
                metadata.get("license_link"),
            )
        provenance = metadata.get("asclepius") or {}
        info.upstream = list(provenance.get("upstream") or []) + (
            [_without_upstream(provenance)] if provenance else []
        )
        return info


def _without_upstream(provenance: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in provenance.items() if key != "upstream"}


def load_stage_input(source: str, required: Iterable[str], *, split: str = "train") -> Dataset:
    """The default config's ``split`` of an earlier stage's folder (or any dataset), columns checked."""
    path = Path(source)
    if path.is_dir() and (path / hub.WORK_DIR_NAME).is_dir() and not hub.is_finished(path):
        raise InputError(
            path, "this stage folder is unfinished (no README.md); rerun the stage that writes it"
        )
    if not path.exists() and source.startswith((".", "/")):
        raise InputError(path, "no such file or folder")
    splits = load_any(source)
    if split not in splits:
        raise InputError(source, f"no split {split!r}; available: {sorted(splits)}")
    dataset = splits[split]
    for column in required:
        if column not in dataset.column_names:
            raise InputError(source, f"missing column; found {dataset.column_names}", field=column)
    return dataset


def kept_rows(rows: Dataset) -> Dataset:
    """Rows that passed every filter (no ``drop_reason``)."""
    return rows.filter(
        lambda reasons: [reason is None for reason in reasons], input_columns=["drop_reason"], batched=True
    )


class StagingTable:
    """Rows appended as they come, kept on disk in parquet; read back sorted by input order."""

    def __init__(self, path: Path, features: Features, *, batch_rows: int = 256):
        import pyarrow.parquet as pq

        self.path, self.features, self.batch_rows = path, features, batch_rows
        path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(str(path), features.arrow_schema)
        self.count = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self._rows.append({name: row.get(name) for name in self.features})
        self.count += 1
        if len(self._rows) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.features.arrow_schema))
            self._rows = []

    def read_sorted(self, cache_dir: Path) -> Dataset:
        """Close the file and load it (memory-mapped), in input order."""
        self._flush()
        self._writer.close()
        dataset = Dataset.from_parquet(str(self.path), features=self.features, cache_dir=str(cache_dir))
        return dataset.sort(SOURCE_ROW) if SOURCE_ROW in self.features else dataset


class DatasetStage:
    """One stage's output folder: finished check, resume, staging, configs, card, push."""

    def __init__(self, output_dir: str | Path, *, overwrite: bool = False):
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.table: StagingTable | None = None

    @property
    def ledger_path(self) -> Path:
        return hub.work_dir(self.output_dir) / "ledger.sqlite"

    @property
    def staging_dir(self) -> Path:
        return self.output_dir / hub.WORK_DIR_NAME / "staging"

    def already_finished(self) -> bool:
        """True (and says so) when the folder is finished and --overwrite was not given."""
        if hub.is_finished(self.output_dir) and not self.overwrite:
            message = f"{self.output_dir} is already finished (its README.md exists); pass --overwrite to rebuild it"
            print(message)
            return True
        return False

    def begin(self, features: Features, *, mimic_derived: bool = False) -> StagingTable:
        """Make the folder unfinished, mark MIMIC data before any row exists, start staging rows."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        hub.mark_unfinished(self.output_dir)
        if mimic_derived:
            hub.mark_mimic_derived(self.output_dir)
        for stale in ("data", "quality"):
            shutil.rmtree(self.output_dir / stale, ignore_errors=True)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        self.table = StagingTable(self.staging_dir / "rows.parquet", features)
        return self.table

    def rows(self) -> Dataset:
        if self.table is None:
            raise RuntimeError("begin() was not called")
        return self.table.read_sorted(self.staging_dir / "cache")

    def write_configs(
        self, configs: Mapping[str, Mapping[str, Dataset]], *, drops: Mapping[str, int] | None = None
    ) -> tuple[dict[str, dict[str, Dataset]], list[dict]]:
        """Write the non-empty splits; returns (what was written, the card's ``configs`` entries).

        ``load_dataset`` refuses a split with no rows, so empty splits are left out (a
        tiny run may put no patient in ``test``). When the default config (the first) has
        no row at all, the other configs are written for inspection and the stage stops
        unfinished with a one-line error: the next stage would have nothing to read.
        """
        written = {
            name: {split: dataset for split, dataset in splits.items() if dataset.num_rows}
            for name, splits in configs.items()
        }
        default = next(iter(configs))
        if not written[default]:
            others = {name: splits for name, splits in written.items() if splits}
            if others:
                hub.write_dataset_configs(self.output_dir, others)
            reasons = ", ".join(f"{reason}: {count}" for reason, count in (drops or {}).items() if count)
            where = f"; every row and its drop reason is in data/{next(iter(others))}/" if others else ""
            raise InputError(
                self.output_dir,
                f"no usable rows: every row was dropped ({reasons or 'no input rows'}){where}",
            )
        written = {name: splits for name, splits in written.items() if splits}
        return written, hub.write_dataset_configs(self.output_dir, written)

    def cleanup(self) -> None:
        """Drop the staging files once the configs are written (the ledger stays for reruns)."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)


def push_if_asked(
    output_dir: str | Path, *, push_to_hub: bool, hub_dataset_id: str | None, private: bool
) -> str | None:
    """Upload a finished folder when --push_to_hub is set (MIMIC-derived data: private only)."""
    if not push_to_hub:
        return None
    check_push_allowed(output_dir, push_to_hub=push_to_hub, private=private)
    url = hub.push_folder(output_dir, hub_dataset_id, repo_type="dataset", private=private)
    print(f"pushed {output_dir} to {url}")
    return url


def check_push_allowed(
    folder: str | Path, *, push_to_hub: bool, private: bool, mimic_derived: bool = False
) -> None:
    """Refuse a public push of MIMIC-derived data as bad input (one line, exit 2), before any work."""
    if not push_to_hub or private:
        return
    try:
        if mimic_derived:
            raise hub.MimicPublicPushError(
                f"{folder}: refusing to push MIMIC-derived data to a public repository"
            )
        hub.check_push_allowed(folder, private=private)
    except hub.MimicPublicPushError:
        raise InputError(
            folder,
            "MIMIC-derived data can never be pushed to a public repository (PhysioNet credentialed licence); "
            "add --private to push to a private one",
            field="push_to_hub",
        ) from None
