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

from asclepius.data.stage import engine_preflight
from asclepius.engine.client import resolve_base_url
from asclepius.errors import InputError, run_stage
from asclepius.evaluation.folders import (
    load_evaluation_set,
    local_model_folder,
    model_provenance,
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
from asclepius.evaluation.prompting import TruncationLog, style_for_model, style_prompt_hash
from asclepius.recipes import check_model_path, parse_recipe
from asclepius.redaction import redact_url
from asclepius.stage import StageFolder, classify
from asclepius.stage.files import WORK_DIR_NAME, today

logger = logging.getLogger("generate")


def main() -> None:
    args, engine_args = parse_recipe("generate")
    engine_args = args.engine_arguments(engine_args)  # --backend batch: the engine's Batch API mode
    if not args.input:  # never a default set: the paper-eval recipes leave it to be named (real notes)
        raise InputError(
            "--input",
            "name the evaluation set (INPUT=... with make, or input: in the recipe); to build one from real notes "
            "see recipes/asclepius-paper-eval/README.md",
        )
    if not args.output_dir:
        raise InputError("--output_dir", "is required (on the command line or in the recipe)")
    api = args.backend != "transformers"
    # A finished answers folder (its card exists) is left as it is unless --overwrite.
    folder = StageFolder.open(args.output_dir, overwrite=args.overwrite, dry_run=engine_args.dry_run)
    if folder.skip_if_finished():
        return

    # 1. The rows to answer (the held-out split of a plain file with --test_ratio), and every
    #    refusal before any work: restricted notes only to allowed endpoints, the key, the model path.
    dataset = load_evaluation_set(args.input, split=args.split, config=args.dataset_config,
                                  test_ratio=args.test_ratio, split_seed=args.split_seed,
                                  max_samples=args.max_samples)  # fmt: skip
    origin = folder.check(
        [classify(args.input)],
        endpoints=[resolve_base_url(engine_args)] if api else [],
        allowed_endpoints=args.allowed_endpoints or (),
        preflight=engine_preflight(engine_args) if api else [],
    )
    # The answers inherit the model's provenance too (a MIMIC-trained model's answers are restricted);
    # the endpoint was checked for the notes alone.
    origin = folder.check([origin, model_provenance(engine_args.model, api=api)])
    if not api:
        check_model_path(engine_args.model, flag="--model")
    decoding = Decoding.from_arguments(
        args, max_tokens=engine_args.max_tokens, temperature=engine_args.temperature
    )
    model_name = args.model_name or engine_args.model
    logger.info(
        "%d rows of %s (%s) -> %s with %s", len(dataset), args.input, args.split, model_name, args.backend
    )

    # 2. The answers: batched local generation, or the endpoint through the engine.
    answer = answer_with_api if api else answer_locally
    outcome = answer(args, engine_args, decoding, dataset, folder)
    if outcome is None:  # a dry run: counted, nothing sent, nothing written
        return
    answers, failed, truncation, sampling, prompt_style, endpoints = outcome

    # 3. The Hub-ready answers folder, its card last.
    provenance = {
        "model": model_name,
        "model_path": None if api else local_model_folder(engine_args.model),
        "backend": args.backend,
        "base_url": redact_url(resolve_base_url(engine_args)) if api else None,
        "endpoints": endpoints or None,  # every endpoint whose answers are rows here (ledger included)
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
        "date": today(),
    }
    rows = with_answers(dataset, model_name, answers)
    card = folder.finish(
        lambda: write_answers_folder(
            args.output_dir, rows, split=args.split, provenance=provenance, origin=origin
        )
    )
    logger.info("answers of %s written to %s", model_name, card.parent)


def answer_locally(args, engine_args, decoding, dataset, folder):
    """Batched local generation; finished batches of an earlier run are reused; None for a dry run."""
    if engine_args.dry_run:  # nothing loaded, nothing generated, nothing written
        print(
            f"dry run: {len(dataset)} rows would be answered by {engine_args.model} (transformers, "
            f"{args.prompt_style} prompts, {decoding.max_new_tokens} new tokens at most); nothing loaded or written"
        )
        return None
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
    folder.begin()
    answers, reused = generate_local(
        generator,
        dataset["note"],
        dataset["question"],
        shard_dir=folder.work_dir / "generate" / fingerprint,
        batch_size=args.batch_size,
        show_progress=engine_args.show_progress,
    )
    logger.info("%d answers generated, %d reused from an earlier run", len(answers) - reused, reused)
    return answers, 0, generator.truncation, asdict(decoding), prompt_style, []


def answer_with_api(args, engine_args, decoding, dataset, folder):
    """The endpoint through the request engine (resumable from its ledger); None for a dry run."""
    if not engine_args.dry_run:
        folder.begin()
    truncation = TruncationLog()
    # auto: the original evaluation's choice by the served model's name.
    prompt_style = (
        style_for_model(args.prompt_style, engine_args.model)
        if args.prompt_style == "auto"
        else args.prompt_style
    )
    answers, errors, summary = generate_api(
        engine_args,
        dataset["note"],
        dataset["question"],
        prompt_style=prompt_style,
        decoding=decoding,
        ledger_path=Path(args.output_dir) / WORK_DIR_NAME / "ledger.sqlite",
        max_prompt_tokens=args.max_prompt_tokens,
        truncation=truncation,
    )
    if engine_args.dry_run:
        print(summary.format())
        return None
    failed = sum(a is None for a in answers)
    if failed:
        logger.warning("%d rows got no answer (%s)", failed, sorted({e for e in errors if e}))
    sampling = {"temperature": decoding.api_temperature(), "max_tokens": decoding.max_new_tokens}
    return answers, failed, truncation, sampling, prompt_style, summary.endpoints


if __name__ == "__main__":
    run_stage(main)
