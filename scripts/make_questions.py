"""Stage 3: one task and one new, brief question per note, bootstrapped from seed questions.

    python scripts/make_questions.py --config recipes/tiny/data.yaml \
        --input outputs/tiny/notes --output_dir outputs/tiny/questions

Takes a notes folder (synthetic, or MIMIC from prepare_mimic), assigns each note one of
the 8 tasks, and asks the teacher for a new question shown 3 seed questions and up to 2
from the task's growing pool. Near-duplicates (ROUGE-L) and chatter are removed.
MIMIC-derived input gives MIMIC-derived output (private only).
"""

from __future__ import annotations

import logging
import random

from trl import TrlParser

from asclepius import prompts
from asclepius.data.cards import CardFacts, render_card
from asclepius.data.config import RECIPE_CLASSES, DataArguments, sampling_for
from asclepius.data.questions import QUESTION_FEATURES, QuestionBootstrap, question_configs, validate_notes
from asclepius.data.stage import DatasetStage, SourceInfo, check_push_allowed, load_stage_input, push_if_asked
from asclepius.engine import Engine, EngineArguments, run_requests
from asclepius.errors import run_stage

logger = logging.getLogger("make_questions")


def main() -> None:
    data_args, engine_args = TrlParser(RECIPE_CLASSES).parse_args_and_config()
    data_args: DataArguments
    engine_args: EngineArguments
    output_dir = data_args.output_path(data_args.questions_dir)
    stage = DatasetStage(output_dir, overwrite=data_args.overwrite)
    push = data_args.push_options
    if stage.already_finished():
        push_if_asked(output_dir, **push)
        return
    source = data_args.input_path(data_args.notes_dir)

    # 1. The notes, checked before anything is sent; licence and MIMIC status carry over.
    notes = load_stage_input(source, ["patient_id", "note"])
    validate_notes(notes, source)
    if data_args.limit is not None and data_args.limit < notes.num_rows:
        notes = notes.select(
            sorted(random.Random(data_args.seed).sample(range(notes.num_rows), data_args.limit))
        )
    origin = SourceInfo.of_folder(source, data_args.source_license)
    check_push_allowed(
        output_dir,
        push_to_hub=data_args.push_to_hub,
        private=data_args.private,
        mimic_derived=origin.mimic_derived,
    )
    logger.info("%s: %d notes%s", source, notes.num_rows, " (MIMIC-derived)" if origin.mimic_derived else "")

    # 2. One question request per note, built from the task's pool as it grows.
    sampling = sampling_for("questions", engine_args)
    table = (
        None if engine_args.dry_run else stage.begin(QUESTION_FEATURES, mimic_derived=origin.mimic_derived)
    )
    bootstrap = QuestionBootstrap(
        notes,
        seed=data_args.seed,
        teacher_model=engine_args.model,
        dedup_threshold=data_args.dedup_threshold,
        num_seed_examples=data_args.num_seed_examples,
        num_pool_examples=data_args.num_pool_examples,
        keep_truncated=data_args.keep_truncated,
        sink=table.add if table is not None else None,
    )
    engine = Engine(
        engine_args,
        stage.ledger_path,
        default_temperature=sampling.temperature,
        default_max_tokens=sampling.max_tokens,
        description="questions",
    )
    run_requests(engine, bootstrap.requests(), bootstrap.on_result, total=notes.num_rows)
    if engine_args.dry_run:
        return

    # 3. Default config = kept questions; annotated = every row with its flags. Card last.
    rows = stage.rows()
    configs = question_configs(rows)
    configs, entries = stage.write_configs(configs, drops=bootstrap.drops)
    pool_sizes = ", ".join(
        f"{task}: {len(questions)}" for task, questions in bootstrap.pool.generated.items()
    )
    facts = CardFacts(
        stage="questions",
        pretty_name="Asclepius clinical instructions (questions)",
        summary=(
            "One clinical instruction per discharge summary, for one of 8 clinical NLP tasks, written by a "
            "teacher LLM shown seed questions and questions it wrote before for the same task."
        ),
        source=origin,
        configs=configs,
        config_entries=entries,
        rows_in=notes.num_rows,
        unit_in="notes",
        drops=bootstrap.drops,
        provenance={
            "teacher_model": engine_args.model,
            "base_url": engine_args.base_url,
            "prompt_hash": prompts.QUESTION_PROMPT_HASH,
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
            "source": source,
            "seed": data_args.seed,
            "dedup_threshold": data_args.dedup_threshold,
            "examples_per_request": f"{data_args.num_seed_examples} seed + up to {data_args.num_pool_examples} pool",
            "pool_sizes": pool_sizes,
            **dict(bootstrap.tokens),
        },
        length_columns=("note", "question"),
        task_categories=("question-answering", "text-generation"),
        hub_dataset_id=data_args.hub_dataset_id,
    )
    render_card(output_dir, facts)
    stage.cleanup()
    print(f"wrote {configs['default']['train'].num_rows} questions to {output_dir}")
    push_if_asked(output_dir, **push)


if __name__ == "__main__":
    run_stage(main)
