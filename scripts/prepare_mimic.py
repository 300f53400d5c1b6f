"""Real-note variant: MIMIC-III discharge summaries as a notes folder, de-identification tags rewritten.

    python scripts/prepare_mimic.py --config recipes/tiny/data.yaml \
        --input /secure/mimic-iii/NOTEEVENTS.csv --exclude_ids excluded_row_ids.txt \
        --output_dir outputs/mimic/notes

Keeps CATEGORY == "Discharge summary", drops the excluded ROW_IDs, rewrites `[**...**]`
brackets into short tags ([Name], [Company], [Reg#], ...). The folder feeds
make_questions / make_answers like synthetic notes, and everything built from it is
MIMIC-derived: under the PhysioNet credentialed licence, pushed to private repositories only.
"""

from __future__ import annotations

import logging

from asclepius.data.cards import CardFacts, deid_sections, render_card
from asclepius.data.mimic import (
    DEID_STYLE_NOTES,
    MIMIC_COLUMNS,
    MIMIC_FEATURES,
    MimicCounts,
    deid_facts,
    exclusion_ids,
    iter_discharge_summaries,
    mimic_row,
)
from asclepius.data.stage import open_stage
from asclepius.errors import run_stage
from asclepius.recipes import parse_recipe
from asclepius.stage import declare_source

logger = logging.getLogger("prepare_mimic")


def main() -> None:
    (data_args,) = parse_recipe("prepare_mimic")
    output_dir = data_args.output_path(data_args.mimic_notes_dir)
    stage = open_stage(output_dir, data_args)
    if stage.skip_if_finished():
        stage.push_if_asked()
        return
    source = data_args.input_path(None)
    # MIMIC data never goes public: refuse a public push now, before reading 4 GB.
    origin = stage.check([declare_source(source, license=None, restricted_source=True)])

    # 1. The exclusion list is checked first: a bad line fails before the big read.
    # Default: the original Asclepius's 517 ROW_IDs, shipped with the package.
    excluded, exclusion_source = exclusion_ids(data_args.exclude_ids)

    # 2. Stream NOTEEVENTS.csv in chunks; the folder is marked MIMIC-derived before any row is written.
    table = stage.begin_rows(MIMIC_FEATURES)
    counts = MimicCounts()
    for note in iter_discharge_summaries(
        source,
        exclude_ids=excluded,
        chunk_size=data_args.chunk_size,
        counts=counts,
        deid_style=data_args.deid_style,
    ):
        table.add(mimic_row(note))
        if data_args.limit is not None and counts.kept >= data_args.limit:
            logger.info("stopping at --limit %d discharge summaries", data_args.limit)
            break
    logger.info("%s: %d rows read, %d discharge summaries kept", source, counts.rows_read, counts.kept)

    # 3. One config of notes, with the de-identification counts in the card. Card last.
    configs = {"default": {"train": stage.rows().select_columns(MIMIC_COLUMNS)}}
    discharge = counts.by_category.get("Discharge summary", 0)
    drops = {"not_discharge_summary": counts.rows_read - discharge, "excluded": counts.excluded}
    configs, entries = stage.write_configs(configs, drops=drops)
    facts = CardFacts(
        stage="mimic_notes",
        pretty_name="MIMIC-III discharge summaries (Asclepius-R notes)",
        summary=(
            "Real discharge summaries from MIMIC-III NOTEEVENTS, with de-identification brackets rewritten as "
            "short tags, ready for the question and answer stages of the Asclepius recipe."
        ),
        source=origin,
        configs=configs,
        config_entries=entries,
        rows_in=counts.rows_read,
        unit_in="NOTEEVENTS rows",
        drops=drops,
        provenance={
            "source": source,
            **deid_facts(counts, data_args.deid_style, exclusion_source, len(excluded)),
        },
        length_columns=("note",),
        synthetic=False,
        extra_sections=deid_sections(counts.deid, DEID_STYLE_NOTES[data_args.deid_style]),
        hub_dataset_id=data_args.hub_dataset_id,
    )
    stage.finish_card(lambda: render_card(output_dir, facts))
    print(f"wrote {counts.kept} MIMIC discharge summaries to {output_dir} (MIMIC-derived: private use only)")
    stage.push_if_asked()


if __name__ == "__main__":
    run_stage(main)
