"""Any note corpus -> a notes folder, to build an evaluation set over real notes (or measure perplexity).

    python scripts/prepare_notes.py --input /secure/clinic_notes.csv --text_column note_text \
        --id_column note_id --source hospital-x --source_license other --source_restricted true \
        --output_dir outputs/hospital-x/notes

Streams a CSV, JSON, JSON Lines or parquet file, a dataset folder or a Hub dataset id,
checks every note, and writes ``patient_id, note_id, note, source``: the folder feeds
``make questions`` / ``make answers`` unchanged and ``source`` travels down to the
judge's report. You state the licence and whether the notes are restricted; MIMIC's
NOTEEVENTS layout is restricted whatever you state. Restricted notes are never pushed
publicly and later stages send them only to allowed endpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path

from asclepius.data.cards import CardFacts, render_card
from asclepius.data.corpus import (
    CORPUS_COLUMNS,
    CORPUS_FEATURES,
    CorpusArguments,
    CorpusCounts,
    corpus_columns,
    corpus_provenance,
    iter_corpus,
)
from asclepius.data.stage import DatasetStage
from asclepius.errors import reading, run_stage
from asclepius.recipes import parse_recipe

logger = logging.getLogger("prepare_notes")


def main() -> None:
    (args,) = parse_recipe(CorpusArguments)
    args: CorpusArguments
    args.check_required()

    # 1. What the corpus is, and every refusal, before a note is read or anything deleted.
    stage = DatasetStage.open(args.output_dir, overwrite=args.overwrite, push=args.push_request)
    if stage.skip_if_finished():
        stage.push_if_asked()
        return
    with reading(args.input):  # a corrupt file is one line naming it, not a pyarrow traceback
        columns = corpus_columns(args)
    origin = stage.check([corpus_provenance(args, columns)], preflight=[lambda: check_corpus(args, stage)])
    logger.info("%s", origin.describe())

    # 2. Stream the notes into the staging table (the folder is marked before any row exists).
    table = stage.begin_rows(CORPUS_FEATURES)
    counts = CorpusCounts()
    with reading(args.input):
        for row in iter_corpus(args, counts):
            table.add(row)
    logger.info("%s: %d rows read, %d notes kept", args.input, counts.rows_read, counts.kept)

    # 3. One config of notes; the card (last) says where they come from and who may see them.
    configs = {"default": {"train": stage.rows().select_columns(CORPUS_COLUMNS)}}
    configs, entries = stage.write_configs(configs, drops=counts.drops)
    facts = CardFacts(
        stage="notes",
        pretty_name=f"Clinical notes: {args.source}",
        summary=f"Notes of the corpus `{args.source}`, prepared for evaluating clinical language models.",
        source=origin,
        configs=configs,
        config_entries=entries,
        rows_in=counts.rows_read,
        unit_in="records",
        drops=counts.drops,
        provenance={
            "source": args.source,
            "input": args.input,
            "text_column": args.text_column,
            "id_column": args.id_column or "row number",
            "patient_column": args.patient_column or "none (each note its own patient)",
            "declared_license": args.source_license,
            "declared_restricted": args.source_restricted,
        },
        length_columns=("note",),
        synthetic=False,
        hub_dataset_id=args.hub_dataset_id,
    )
    stage.finish_card(lambda: render_card(Path(args.output_dir), facts))
    print(f"wrote {counts.kept} notes of {args.source} to {args.output_dir} ({origin.status})")
    stage.push_if_asked()


def check_corpus(args: CorpusArguments, stage: DatasetStage) -> None:
    """--overwrite of a finished folder: every row is read and checked before its notes are deleted."""
    if stage.state == "finished":
        with reading(args.input):
            for _ in iter_corpus(args, CorpusCounts()):
                pass


if __name__ == "__main__":
    run_stage(main)
