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

from asclepius import prompts
from asclepius.data.cards import CardFacts, render_card
from asclepius.data.config import sampling_for
from asclepius.data.questions import QUESTION_FEATURES, QuestionBootstrap, question_configs, validate_notes
from asclepius.data.stage import (
    check_teacher_stage,
    load_stage_input,
    open_stage,
    stage_input,
    subset,
    teacher_provenance,
)
from asclepius.engine import Engine, run_requests
from asclepius.errors import run_stage
from asclepius.recipes import parse_recipe

logger = logging.getLogger("make_questions")


def main() -> None:
    data_args, engine_args = parse_recipe("make_questions")
    output_dir = data_args.output_path(data_args.questions_dir)
    stage = open_stage(output_dir, data_args, engine_args)
    if stage.skip_if_finished():
        stage.push_if_asked()
        return

    # 1. Provenance, endpoint, key and the notes checked before anything is sent or deleted.
    source = data_args.input_path(data_args.notes_dir)
    origin = check_teacher_stage(stage, [stage_input(source, data_args)], data_args, engine_args)
    notes = load_stage_input(source, ["patient_id", "note"])
    validate_notes(notes, source)
    notes = subset(notes, data_args.limit, data_args.seed)
    logger.info("%s: %d notes (%s)", source, notes.num_rows, origin.describe())

    # 2. One question request per note, built from the task's pool as it grows.
    sampling = sampling_for("questions", engine_args)
    table = None if engine_args.dry_run else stage.begin_rows(QUESTION_FEATURES)
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
    engine = Engine(engine_args, stage.ledger_path, default_temperature=sampling.temperature,
                    default_max_tokens=sampling.max_tokens, description="questions")  # fmt: skip
    summary = run_requests(engine, bootstrap.requests(), bootstrap.on_result, total=notes.num_rows)
    if engine_args.dry_run:
        return

    # 3. Default config = kept questions; annotated = every row with its flags. Card last.
    configs, entries = stage.write_configs(question_configs(stage.rows()), drops=bootstrap.drops)
    pools = ", ".join(f"{task}: {len(questions)}" for task, questions in bootstrap.pool.generated.items())
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
            **teacher_provenance(
                engine_args, sampling, prompts.QUESTION_PROMPT_HASH, source, data_args.seed, summary=summary
            ),
            "dedup_threshold": data_args.dedup_threshold,
            "examples_per_request": f"{data_args.num_seed_examples} seed + up to {data_args.num_pool_examples} pool",
            "pool_sizes": pools,
            **dict(bootstrap.tokens),
        },
        length_columns=("note", "question"),
        task_categories=("question-answering", "text-generation"),
        hub_dataset_id=data_args.hub_dataset_id,
    )
    stage.finish_card(lambda: render_card(output_dir, facts))
    print(f"wrote {configs['default']['train'].num_rows} questions to {output_dir}")
    stage.push_if_asked()


if __name__ == "__main__":
    run_stage(main)
