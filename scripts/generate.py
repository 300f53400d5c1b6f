"""Answer an evaluation set with one model: a local/Hub checkpoint, or an OpenAI-compatible endpoint.

    # A local or Hub model, batched greedy decoding (the default)
    python scripts/generate.py --config recipes/tiny/eval.yaml \
        --model outputs/demo/sft --input data/demo/synthetic_notes.jsonl --test_ratio 0.15 \
        --output_dir outputs/eval/tiny-sft

    # The paper's decoding (5-beam sampling, 400 new tokens), a baseline in its own prompt format
    python scripts/generate.py --model medalpaca/medalpaca-7b --prompt_style medalpaca --decoding paper ...

    # An API model or a vLLM / transformers serve endpoint, through the request engine
    python scripts/generate.py --backend openai --base_url http://127.0.0.1:8000/v1 --model NAME ...

The output folder holds the evaluation rows plus ``model`` and ``generated``; it is the
input of scripts/judge.py. Rerunning the same command resumes: finished batches (local)
or ledger answers (API) are not generated again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from trl import TrlParser

from asclepius import hub
from asclepius.errors import InputError, run_stage
from asclepius.evaluation.config import RECIPE_CLASSES
from asclepius.evaluation.folders import (
    check_mimic_endpoint,
    load_evaluation_set,
    local_model_folder,
    source_is_mimic,
    with_answers,
    write_answers_folder,
)
from asclepius.evaluation.generation import (
    Decoding,
    LocalGenerator,
    generate_api,
    generate_local,
    generation_fingerprint,
)
from asclepius.evaluation.prompting import TruncationLog, style_prompt_hash

logger = logging.getLogger("generate")


def main() -> None:
    args, engine_args = TrlParser(RECIPE_CLASSES).parse_args_and_config()
    for flag in ("input", "output_dir"):
        if not getattr(args, flag):
            raise InputError(f"--{flag}", "is required (on the command line or in the recipe)")

    # 1. The rows to answer (the held-out split of a plain file with --test_ratio).
    dataset = load_evaluation_set(
        args.input,
        split=args.split,
        config=args.dataset_config,
        test_ratio=args.test_ratio,
        split_seed=args.split_seed,
        max_samples=args.max_samples,
    )
    notes, questions = dataset["note"], dataset["question"]
    mimic = source_is_mimic(args.input)
    decoding = Decoding.from_arguments(
        args, max_tokens=engine_args.max_tokens, temperature=engine_args.temperature
    )
    model_name = args.model_name or engine_args.model
    logger.info(
        "%d rows of %s (%s) -> %s with %s", len(dataset), args.input, args.split, model_name, args.backend
    )

    # 2. The answers: batched local generation, or the endpoint through the engine.
    if args.backend == "transformers":
        generator = LocalGenerator(
            engine_args.model,
            prompt_style=args.prompt_style,
            decoding=decoding,
            device=args.device,
            dtype=args.dtype,
            attn_implementation=args.attn_implementation,
            cache_implementation=args.cache_implementation,
            max_prompt_tokens=args.max_prompt_tokens,
            subfolder=args.model_subfolder,
        )
        prompt_style = generator.prompt_style  # as the model's card says it was trained
        fingerprint = generation_fingerprint(
            engine_args.model, prompt_style, decoding, generator.max_prompt_tokens, args.model_subfolder
        )
        answers, reused = generate_local(
            generator,
            notes,
            questions,
            shard_dir=hub.work_dir(args.output_dir) / "generate" / fingerprint,
            batch_size=args.batch_size,
            show_progress=engine_args.show_progress,
        )
        failed, truncation, sampling = 0, generator.truncation, asdict(decoding)
        logger.info("%d answers generated, %d reused from an earlier run", len(answers) - reused, reused)
    else:
        check_mimic_endpoint(
            mimic,
            engine_args.base_url,
            engine_args.azure_api_version,
            allow=args.allow_mimic_to_api,
            what=args.input,
        )
        prompt_style, truncation = args.prompt_style, TruncationLog()
        answers, errors, summary = generate_api(
            engine_args,
            notes,
            questions,
            prompt_style=prompt_style,
            decoding=decoding,
            ledger_path=hub.work_dir(args.output_dir) / "ledger.sqlite",
            max_prompt_tokens=args.max_prompt_tokens,
            truncation=truncation,
        )
        if engine_args.dry_run:
            print(summary.format())
            return
        failed = sum(a is None for a in answers)
        sampling = {"temperature": decoding.api_temperature(), "max_tokens": decoding.max_new_tokens}
        if failed:
            logger.warning("%d rows got no answer (%s)", failed, sorted({e for e in errors if e}))

    # 3. The Hub-ready answers folder, its card last.
    provenance = {
        "model": model_name,
        "model_path": local_model_folder(engine_args.model) if args.backend == "transformers" else None,
        "backend": args.backend,
        "base_url": engine_args.base_url if args.backend == "openai" else None,
        "model_subfolder": args.model_subfolder,
        "prompt_style": prompt_style,
        "prompt_hash": style_prompt_hash(prompt_style),
        "decoding": {"preset": args.decoding, **sampling},
        "source": args.input,
        "split": args.split,
        "test_ratio": args.test_ratio,
        "split_seed": args.split_seed,
        "rows": len(dataset),
        "failed": failed,
        "truncated_prompts": truncation.prompts_cut,
        "truncation": truncation.as_dict(),
        "date": hub.today(),
    }
    source_license = hub.read_card_metadata(args.input).get("license") if Path(args.input).is_dir() else None
    card = write_answers_folder(
        args.output_dir,
        with_answers(dataset, model_name, answers),
        split=args.split,
        provenance=provenance,
        license=source_license,
        mimic=mimic,
    )
    logger.info("answers of %s written to %s", model_name, card.parent)


if __name__ == "__main__":
    run_stage(main)
