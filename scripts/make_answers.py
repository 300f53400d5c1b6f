"""Stage 4: answer every question from its note; filter, check grounding, split by patient.

    python scripts/make_answers.py --config recipes/tiny/data.yaml \
        --input outputs/tiny/questions --output_dir outputs/tiny/instructions

The default config (train/test, no patient in both) has exactly the published columns
`patient_id, note, question, answer, task`: a drop-in for
starmpcc/Asclepius-Synthetic-Clinical-Notes. The `annotated` config adds the drop
reasons and the grounding flags; `prompt_completion` the rows in TRL's prompt-completion
format (`trl sft --dataset_name FOLDER --dataset_config prompt_completion` trains on it).
"""

from __future__ import annotations

import logging

from asclepius import prompts
from asclepius.data.answers import (
    ANSWER_FEATURES,
    AnswerGeneration,
    instruction_configs,
    prompt_completion_section,
    validate_questions,
)
from asclepius.data.cards import CardFacts, grounding_section, render_card
from asclepius.data.config import sampling_for
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

logger = logging.getLogger("make_answers")


def main() -> None:
    data_args, engine_args = parse_recipe("make_answers")
    output_dir = data_args.output_path(data_args.instructions_dir)
    stage = open_stage(output_dir, data_args, engine_args)
    if stage.skip_if_finished():
        stage.push_if_asked()
        return

    # 1. Provenance, endpoint, key and the questions (task labels included) checked before anything is sent.
    source = data_args.input_path(data_args.questions_dir)
    origin = check_teacher_stage(stage, [stage_input(source, data_args)], data_args, engine_args)
    questions = load_stage_input(source, ["patient_id", "note", "question", "task"])
    validate_questions(questions, source)
    questions = subset(questions, data_args.limit, data_args.seed)
    logger.info("%s: %d questions (%s)", source, questions.num_rows, origin.describe())

    # 2. One answer request per question.
    sampling = sampling_for("answers", engine_args)
    table = None if engine_args.dry_run else stage.begin_rows(ANSWER_FEATURES)
    generation = AnswerGeneration(
        questions,
        teacher_model=engine_args.model,
        keep_truncated=data_args.keep_truncated,
        sink=table.add if table is not None else None,
        extra_self_reference_phrases=data_args.self_reference_extra,
    )
    engine = Engine(engine_args, stage.ledger_path, default_temperature=sampling.temperature,
                    default_max_tokens=sampling.max_tokens, description="answers")  # fmt: skip
    summary = run_requests(engine, generation.requests(), generation.on_result, total=questions.num_rows)
    if engine_args.dry_run:
        return

    # 3. Split by patient; default = the published columns, annotated = every row with its flags,
    #    prompt_completion = the default rows as TRL's prompt and completion.
    configs = instruction_configs(stage.rows(), test_ratio=data_args.test_ratio, seed=data_args.seed)
    configs, entries = stage.write_configs(configs, drops=generation.drops)
    kept = sum(split.num_rows for split in configs["default"].values())
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
            **teacher_provenance(
                engine_args, sampling, prompts.ANSWER_PROMPT_HASH, source, data_args.seed, summary=summary
            ),
            "test_ratio": data_args.test_ratio,
            **dict(generation.tokens),
        },
        length_columns=("note", "question", "answer"),
        task_categories=("question-answering", "text-generation"),
        extra_sections=[grounding_section(kept, generation.ungrounded_rows), prompt_completion_section()],
        hub_dataset_id=data_args.hub_dataset_id,
    )
    stage.finish_card(lambda: render_card(output_dir, facts))
    sizes = ", ".join(f"{name}: {split.num_rows}" for name, split in configs["default"].items())
    print(f"wrote the instruction dataset to {output_dir} ({sizes})")
    stage.push_if_asked()


if __name__ == "__main__":
    run_stage(main)
