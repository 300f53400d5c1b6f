"""Stage 1: rewrite case reports as synthetic discharge summaries with a teacher LLM.

    python scripts/make_notes.py --config recipes/tiny/data.yaml \
        --input data/demo/case_reports.csv --output_dir outputs/tiny/notes

Reads PMC-Patients (CSV or JSON, streamed), any dataset with a text column, or the demo
CSV; sends one request per case report through the engine (resumable: a rerun sends
only what the ledger lacks); writes a Hub-ready dataset folder with a card.
"""

from __future__ import annotations

import logging
from pathlib import Path

from asclepius import prompts
from asclepius.data.cards import CardFacts, render_card
from asclepius.data.case_reports import iter_case_reports, scan_case_reports
from asclepius.data.config import sampling_for
from asclepius.data.notes import NOTE_FEATURES, NoteSynthesis, note_configs
from asclepius.data.stage import check_teacher_stage, open_stage, stage_input, teacher_provenance
from asclepius.engine import Engine, run_requests
from asclepius.errors import run_stage
from asclepius.recipes import parse_recipe

logger = logging.getLogger("make_notes")
PMC_PATIENTS_HUB_ID = "zhengyun21/PMC-Patients"


def main() -> None:
    data_args, engine_args = parse_recipe("make_notes")
    output_dir = data_args.output_path(data_args.notes_dir)
    stage = open_stage(output_dir, data_args, engine_args)
    if stage.skip_if_finished():
        stage.push_if_asked()
        return

    # 1. Provenance, endpoint, key and every case report checked before anything is sent or deleted.
    source = data_args.input_path(data_args.case_reports)
    origin = check_teacher_stage(stage, [stage_input(source, data_args)], data_args, engine_args)
    reading = dict(
        text_column=data_args.text_column,
        id_column=data_args.id_column,
        uid_column=data_args.uid_column,
        chunk_size=data_args.chunk_size,
        split=data_args.dataset_split,
    )
    scan = scan_case_reports(source, limit=data_args.limit, seed=data_args.seed, **reading)
    logger.info("%s: %d case reports, %d selected (%s)", source, scan.total, scan.count, origin.status)

    # 2. One note-synthesis request per case report; max_tokens fits the teacher's context.
    sampling = sampling_for("notes", engine_args)
    table = None if engine_args.dry_run else stage.begin_rows(NOTE_FEATURES)
    synthesis = NoteSynthesis(
        teacher_model=engine_args.model,
        context_length=data_args.context_length,
        max_tokens_cap=sampling.max_tokens,
        keep_truncated=data_args.keep_truncated,
        sink=table.add if table is not None else None,
    )
    engine = Engine(engine_args, stage.ledger_path, default_temperature=sampling.temperature,
                    default_max_tokens=sampling.max_tokens, description="notes")  # fmt: skip
    case_reports = iter_case_reports(source, scan, **reading)
    summary = run_requests(engine, synthesis.requests(case_reports), synthesis.on_result, total=scan.count)
    if engine_args.dry_run:
        return

    # 3. Default config = usable notes; annotated = every row with its flag. Card last.
    configs, entries = stage.write_configs(note_configs(stage.rows()), drops=synthesis.drops)
    provenance = teacher_provenance(
        engine_args, sampling, prompts.NOTE_PROMPT_HASH, source, data_args.seed, summary=summary
    )
    provenance["max_tokens"] = f"min({sampling.max_tokens}, {data_args.context_length} - prompt tokens)"
    facts = CardFacts(
        stage="notes",
        pretty_name="Asclepius synthetic discharge summaries",
        summary=(
            "Synthetic discharge summaries written by a teacher LLM from published case reports "
            "(PMC-Patients schema), one per case report, in the style of an electronic health record."
        ),
        source=origin,
        configs=configs,
        config_entries=entries,
        rows_in=scan.count,
        unit_in="case reports",
        drops=synthesis.drops,
        provenance={**provenance, **dict(synthesis.tokens)},
        length_columns=("case_report", "note"),
        source_datasets=[PMC_PATIENTS_HUB_ID] if Path(source).name.lower().startswith("pmc-patients") else [],
        hub_dataset_id=data_args.hub_dataset_id,
    )
    card = stage.finish_card(lambda: render_card(output_dir, facts))
    print(f"wrote {configs['default']['train'].num_rows} notes to {output_dir} ({card.name} last)")
    stage.push_if_asked()


if __name__ == "__main__":
    run_stage(main)
