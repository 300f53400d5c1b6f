"""Stage 4: answer every question from its note; filter, check grounding, split by patient.

    python scripts/make_answers.py --config recipes/tiny/data.yaml \
        --input outputs/tiny/questions --output_dir outputs/tiny/instructions

The default config (train/test, no patient in both) has exactly the published columns
`patient_id, note, question, answer, task`: a drop-in for
starmpcc/Asclepius-Synthetic-Clinical-Notes. The `annotated` config adds the drop
reasons and the grounding flags.
"""

from __future__ import annotations

import logging
import random

from trl import TrlParser

from asclepius import prompts
from asclepius.data.answers import ANSWER_FEATURES, AnswerGeneration, instruction_configs, validate_questions
from asclepius.data.cards import CardFacts, markdown_table, render_card
from asclepius.data.config import RECIPE_CLASSES, DataArguments, sampling_for
from asclepius.data.stage import DatasetStage, SourceInfo, check_push_allowed, load_stage_input, push_if_asked
from asclepius.engine import Engine, EngineArguments, run_requests
from asclepius.errors import run_stage

logger = logging.getLogger("make_answers")


def main() -> None:
    data_args, engine_args = TrlParser(RECIPE_CLASSES).parse_args_and_config()
    data_args: DataArguments
    engine_args: EngineArguments
    output_dir = data_args.output_path(data_args.instructions_dir)
    stage = DatasetStage(output_dir, overwrite=data_args.overwrite)
    push = data_args.push_options
    if stage.already_finished():
        push_if_asked(output_dir, **push)
        return
    source = data_args.input_path(data_args.questions_dir)

    # 1. The questions, checked (task labels included) before anything is sent.
    questions = load_stage_input(source, ["patient_id", "note", "question", "task"])
    validate_questions(questions, source)
    if data_args.limit is not None and data_args.limit < questions.num_rows:
        keep = sorted(random.Random(data_args.seed).sample(range(questions.num_rows), data_args.limit))
        questions = questions.select(keep)
    origin = SourceInfo.of_folder(source, data_args.source_license)
    check_push_allowed(
        output_dir,
        push_to_hub=data_args.push_to_hub,
        private=data_args.private,
        mimic_derived=origin.mimic_derived,
    )
    logger.info(
        "%s: %d questions%s", source, questions.num_rows, " (MIMIC-derived)" if origin.mimic_derived else ""
    )

    # 2. One answer request per question.
    sampling = sampling_for("answers", engine_args)
    table = None if engine_args.dry_run else stage.begin(ANSWER_FEATURES, mimic_derived=origin.mimic_derived)
    generation = AnswerGeneration(
        questions,
        teacher_model=engine_args.model,
        keep_truncated=data_args.keep_truncated,
        sink=table.add if table is not None else None,
    )
    engine = Engine(
        engine_args,
        stage.ledger_path,
        default_temperature=sampling.temperature,
        default_max_tokens=sampling.max_tokens,
        description="answers",
    )
    run_requests(engine, generation.requests(), generation.on_result, total=questions.num_rows)
    if engine_args.dry_run:
        return

    # 3. Split by patient; default = the published columns, annotated = every row with its flags.
    rows = stage.rows()
    configs = instruction_configs(rows, test_ratio=data_args.test_ratio, seed=data_args.seed)
    configs, entries = stage.write_configs(configs, drops=generation.drops)
    kept = sum(split.num_rows for split in configs["default"].values())
    grounding = markdown_table(
        ["rows in the default config", "with a number, dose or date absent from the note"],
        [[kept, generation.ungrounded_rows]],
    )
    facts = CardFacts(
        stage="instructions",
        pretty_name="Asclepius synthetic clinical instructions",
        summary=(
            "Clinical instruction-answer pairs over discharge summaries: each row has a note, an instruction "
            "for one of 8 clinical NLP tasks and the teacher's answer from the note alone. Same columns as "
            "starmpcc/Asclepius-Synthetic-Clinical-Notes; train and test share no patient."
        ),
        source=origin,
        configs=configs,
        config_entries=entries,
        rows_in=questions.num_rows,
        unit_in="questions",
        drops=generation.drops,
        provenance={
            "teacher_model": engine_args.model,
            "base_url": engine_args.base_url,
            "prompt_hash": prompts.ANSWER_PROMPT_HASH,
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
            "source": source,
            "seed": data_args.seed,
            "test_ratio": data_args.test_ratio,
            **dict(generation.tokens),
        },
        length_columns=("note", "question", "answer"),
        task_categories=("question-answering", "text-generation"),
        extra_sections=[
            {
                "title": "Grounding check",
                "body": "Kept rows are flagged, not dropped, when the answer states a number, dose or date "
                "that the note does not contain (`ungrounded_values` in the `annotated` config); an answer can "
                "rightly compute such a value, e.g. a length of stay.\n\n" + grounding,
            }
        ],
        hub_dataset_id=data_args.hub_dataset_id,
    )
    render_card(output_dir, facts)
    stage.cleanup()
    sizes = ", ".join(f"{name}: {split.num_rows}" for name, split in configs["default"].items())
    print(f"wrote the instruction dataset to {output_dir} ({sizes})")
    push_if_asked(output_dir, **push)


if __name__ == "__main__":
    run_stage(main)
