"""What data stages add to the stage folder (:mod:`asclepius.stage`): inputs, staged rows, configs.

The folder's states, lock, provenance checks, card and push are the stage layer's; a
rerun of an unfinished folder resumes because the engine's ledger in ``.asclepius/``
serves every answer already paid for.

Rows are staged to a parquet file as results arrive (constant memory, whatever the
input size), then sorted back into input order so a dataset does not depend on the
order in which the API happened to answer.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value

from asclepius.data.loading import load_any
from asclepius.engine.client import Secret, build_client, read_api_key, resolve_base_url
from asclepius.errors import InputError, reading
from asclepius.redaction import redact_text, redact_url
from asclepius.stage import UNKNOWN, Provenance, StageFolder, classify
from asclepius.stage.files import WORK_DIR_NAME, is_finished, write_dataset_configs
from asclepius.stage.stamps import parquet_schema

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


def stage_input(source: str, data_args) -> Provenance:
    """What a data stage's input is: an earlier stage's folder by its card, a raw file or Hub id as declared."""
    return classify(
        source, declared_license=data_args.source_license, declared_restricted=data_args.source_restricted
    )


def open_stage(output_dir: Path, data_args, engine_args=None) -> DatasetStage:
    """The stage's output folder, locked for this run (a dry run takes no lock and writes nothing)."""
    return DatasetStage.open(
        output_dir,
        overwrite=data_args.overwrite,
        dry_run=bool(engine_args is not None and engine_args.dry_run),
        push=data_args.push_request,
    )


def check_teacher_stage(stage: DatasetStage, inputs: list[Provenance], data_args, engine_args) -> Provenance:
    """Every refusal of a stage that sends notes to a teacher, before any work or deletion.

    No public push of restricted data; restricted notes only to allowed endpoints (the
    endpoint resolved as the client will, ``OPENAI_BASE_URL`` included); the key present.
    """
    return stage.check(
        inputs,
        endpoints=[resolve_base_url(engine_args)],
        allowed_endpoints=data_args.allowed_endpoints or (),
        preflight=engine_preflight(engine_args),
    )


def engine_preflight(engine_args) -> list:
    """The engine's own refusals, made before any work or deletion: the flags the client is built
    from (``--azure_api_version`` needs ``--base_url``), and the key (not needed by a dry run).

    The client is built exactly as the engine builds it (no connection is made), so every
    combination it refuses is refused here, while a finished folder is still intact.
    """

    def client_flags() -> None:
        build_client(engine_args, Secret("EMPTY"))

    return [client_flags] if engine_args.dry_run else [client_flags, lambda: read_api_key(engine_args)]


def teacher_provenance(
    engine_args, sampling, prompt_hash: str, source: str, seed: int, *, summary=None
) -> dict[str, Any]:
    """What the card records about the teacher of a stage (the endpoint without credentials).

    ``summary`` (the engine's run summary) adds how the requests ran: backend, batch rounds
    and the pool policy they imply, and the run's cost.
    """
    return {
        **(summary.card_facts() if summary is not None else {}),
        "teacher_model": engine_args.model,
        "base_url": redact_url(resolve_base_url(engine_args)),
        "prompt_hash": prompt_hash,
        "temperature": sampling.temperature,
        "max_tokens": sampling.max_tokens,
        "source": redact_text(source),
        "seed": seed,
    }


def load_stage_input(source: str, required: Iterable[str], *, split: str = "train") -> Dataset:
    """The default config's ``split`` of an earlier stage's folder (or any dataset), columns checked."""
    path = Path(source)
    if path.is_dir() and (path / WORK_DIR_NAME).is_dir() and not is_finished(path):
        raise InputError(
            path, "this stage folder is unfinished (no README.md); rerun the stage that writes it"
        )
    if not path.exists() and source.startswith((".", "/")):
        raise InputError(path, "no such file or folder")
    with reading(source):  # a corrupt file (parquet, JSON) is one line naming it
        splits = load_any(source)
    if split not in splits:
        raise InputError(source, f"no split {split!r}; available: {sorted(splits)}")
    dataset = splits[split]
    for column in required:
        if column not in dataset.column_names:
            raise InputError(source, f"missing column; found {dataset.column_names}", field=column)
    return dataset


def subset(rows: Dataset, limit: int | None, seed: int) -> Dataset:
    """A reproducible subset of ``limit`` rows chosen by ``seed``, in input order (all rows without a limit)."""
    if limit is None or limit >= rows.num_rows:
        return rows
    return rows.select(sorted(random.Random(seed).sample(range(rows.num_rows), limit)))


def kept_rows(rows: Dataset) -> Dataset:
    """Rows that passed every filter (no ``drop_reason``)."""
    return rows.filter(
        lambda reasons: [reason is None for reason in reasons], input_columns=["drop_reason"], batched=True
    )


class StagingTable:
    """Rows appended as they come, kept on disk in parquet; read back sorted by input order."""

    def __init__(self, path: Path, features: Features, *, provenance: Provenance, batch_rows: int = 256):
        import pyarrow.parquet as pq

        self.path, self.features, self.batch_rows = path, features, batch_rows
        path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: list[dict[str, Any]] = []
        # Stamped too: staged rows copied out of .asclepius/ keep their provenance.
        self._writer = pq.ParquetWriter(str(path), parquet_schema(features.arrow_schema, provenance))
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


class DatasetStage(StageFolder):
    """A data stage's output folder: the stage folder, plus staged rows and parquet configs."""

    table: StagingTable | None = None

    @property
    def output_provenance(self) -> Provenance:
        """What every file of the folder is stamped with: the inputs' combined provenance (unchecked: unknown)."""
        return self.provenance or Provenance(UNKNOWN, "inputs not checked")

    @property
    def ledger_path(self) -> Path:
        return self.path / WORK_DIR_NAME / "ledger.sqlite"

    @property
    def staging_dir(self) -> Path:
        return self.path / WORK_DIR_NAME / "staging"

    def begin_rows(self, features: Features) -> StagingTable:
        """Make the folder unfinished and marked (before any row exists), clear stale outputs, stage rows."""
        self.begin()
        for stale in ("data", "quality"):
            shutil.rmtree(self.path / stale, ignore_errors=True)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        self.table = StagingTable(
            self.staging_dir / "rows.parquet", features, provenance=self.output_provenance
        )
        return self.table

    def rows(self) -> Dataset:
        if self.table is None:
            raise RuntimeError("begin_rows() was not called")
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
                write_dataset_configs(self.path, others, provenance=self.output_provenance)
            reasons = ", ".join(f"{reason}: {count}" for reason, count in (drops or {}).items() if count)
            where = f"; every row and its drop reason is in data/{next(iter(others))}/" if others else ""
            raise InputError(
                self.path,
                f"no usable rows: every row was dropped ({reasons or 'no input rows'}){where}",
            )
        written = {name: splits for name, splits in written.items() if splits}
        return written, write_dataset_configs(self.path, written, provenance=self.output_provenance)

    def finish_card(self, write_card) -> Path:
        """The card last, then the staging files go (the ledger stays for reruns)."""
        path = self.finish(write_card)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        return path
