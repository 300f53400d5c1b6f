"""Grade the answers of one or more models with an LLM judge, the paper's way, and report.

    python scripts/judge.py --config recipes/asclepius-llama-7b/eval.yaml \
        --inputs outputs/eval/asclepius outputs/eval/llama2-chat --output_dir outputs/eval/report \
        --train_dataset outputs/instructions --num_shuffles 2

For each (note, question) the judge sees every model's answer at once, shuffled and
labelled A, B, C..., works out its own answer, then scores each from 1 (Unacceptable) to
4 (Excellent). Unreadable replies are asked again, then counted as missing. The output
folder holds the scores and raw replies (parquet), results.json, report.md, plots/, and
the results go into the model-index of the local models this project trained (any other card
only when named with --model_card). Reruns cost nothing: every
reply is in the engine's ledger.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from asclepius.data.loading import load_split
from asclepius.data.stage import engine_preflight
from asclepius.engine import Engine
from asclepius.engine.client import resolve_base_url
from asclepius.errors import InputError, reading, run_stage
from asclepius.evaluation.decontamination import check_contamination
from asclepius.evaluation.folders import load_answers_folder
from asclepius.evaluation.judging import (
    JUDGE_REPAIR_PROMPT_HASH,
    REFERENCE_NAME,
    collect_items,
    judge_prompt_hash,
    judgement_rows,
    plan_judgements,
    run_judge,
    score_rows,
)
from asclepius.evaluation.model_index import model_cards_to_update, update_model_index
from asclepius.evaluation.report import build_results, write_judgement_folder
from asclepius.recipes import parse_recipe
from asclepius.redaction import redact_url
from asclepius.stage import StageFolder
from asclepius.stage.files import WORK_DIR_NAME, today

logger = logging.getLogger("judge")
# Engine flags the judge does not use (they describe generate's model): the judge's own names.
JUDGE_FLAGS = {
    "--base_url": "--judge_base_url",
    "--model": "--judge_model",
    "--api_key_env": "--judge_api_key_env",
    "--azure_api_version": "--judge_azure_api_version",
    "--temperature": "--judge_temperature",
    "--max_tokens": "--judge_max_tokens",
}


def main() -> None:
    reject_generate_flags(sys.argv[1:])
    args, engine_args = parse_recipe("judge")
    if not args.inputs or not args.output_dir:
        raise InputError(
            "--inputs/--output_dir", "both are required (answers folders in, a report folder out)"
        )
    judge_args = args.judge_engine_arguments(engine_args)
    # A finished report folder (its card exists) is left as it is unless --overwrite.
    folder = StageFolder.open(args.output_dir, overwrite=args.overwrite, dry_run=judge_args.dry_run)
    if folder.skip_if_finished():
        return

    # 1. The candidates: items every answers folder holds, each model's answer to each; restricted
    #    notes go to allowed judges only, and the key is read, before any call is paid for.
    folders = [load_answers_folder(path) for path in args.inputs]
    items, names, dropped = collect_items(folders, include_reference=args.include_reference)
    if not items:
        raise InputError(args.inputs[0], "no (note, question) is shared by every answers folder")
    origin = folder.check(
        [answers.origin for answers in folders],
        endpoints=[resolve_base_url(judge_args)],
        allowed_endpoints=args.allowed_endpoints or (),
        preflight=[judge_flags(step) for step in engine_preflight(judge_args)],
    )
    logger.info(
        "%d items, candidates: %s (%d items not in every folder)", len(items), ", ".join(names), dropped
    )

    # 2. Decontamination, before any judge call is paid for.
    items, decontamination = decontaminate(args, items)

    # 3. The judge: every candidate in one prompt, shuffled; unreadable replies repaired, then missing.
    if not judge_args.dry_run:
        folder.begin()
    engine = Engine(judge_args, Path(args.output_dir) / WORK_DIR_NAME / "ledger.sqlite",
                    default_temperature=args.judge_temperature, default_max_tokens=args.judge_max_tokens,
                    description="judgements")  # fmt: skip
    plan = plan_judgements(
        items, num_shuffles=args.num_shuffles, seed=args.shuffle_seed, style=args.judge_style,
        reply_format=args.judge_reply_format,
    )  # fmt: skip
    run = run_judge(engine, plan, max_parse_attempts=args.max_parse_attempts)
    if judge_args.dry_run:
        print(run.rounds[0]["dry_run_summary"] if run.rounds else "nothing to judge")
        print(f"(first tries only: up to {args.max_parse_attempts - 1} repair round(s) may follow)")
        return

    # 4. Numbers, report, plots and the Hub-ready folder (card last).
    scores = score_rows(run.judgements)
    results = build_results(
        scores, items, names, bootstrap_samples=args.bootstrap_samples, bootstrap_seed=args.bootstrap_seed
    )
    meta = judge_meta(args, judge_args, items=len(items), dropped=dropped, names=names, run=run)
    card = folder.finish(
        lambda: write_judgement_folder(
            args.output_dir,
            scores=scores,
            judgements=judgement_rows(run.judgements, seed=args.shuffle_seed),
            results=results,
            meta={**meta, "decontamination": decontamination},
            mimic=origin.mimic_derived,
            provenance=origin,
        )
    )

    # 5. The means in the log, and into the card (model-index) of each local model trained here.
    report_models(args, names, folders, results)
    logger.info("report written to %s", card.parent / "report.md")


def reject_generate_flags(argv: list[str]) -> None:
    """``--base_url``/``--model``... describe generate's model; the judge would silently ignore them."""
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in JUDGE_FLAGS:
            raise InputError(
                flag, f"the judge does not use it (it is generate's); pass {JUDGE_FLAGS[flag]} for the judge"
            )


def judge_flags(check):
    """``check``, its errors naming the judge's flags (--judge_base_url) rather than generate's."""

    def checked() -> None:
        try:
            check()
        except InputError as error:
            message = str(error)
            for flag, judge_flag in JUDGE_FLAGS.items():
                message = re.sub(rf"{re.escape(flag)}\b", judge_flag, message)
            where, _, what = message.partition(": ")
            raise InputError(where, what) from None

    return checked


def decontaminate(args, items):
    """Flag (and with --drop_contaminated drop) items whose note overlaps the training data."""
    if not args.train_dataset:
        return items, None
    with reading(args.train_dataset):
        train = load_split(
            args.train_dataset, args.train_split, test_ratio=args.test_ratio, seed=args.split_seed
        )
    report = check_contamination(
        [(item.key, item.note, item.patient_id) for item in items],
        (row for row in train["note"]) if "note" in train.column_names else (),
        train["patient_id"] if "patient_id" in train.column_names else (),
        n=args.decontamination_ngram,
        threshold=args.decontamination_threshold,
    )
    logger.info("decontamination: %d of %d items overlap the training data", len(report.flagged), len(items))
    if args.drop_contaminated:
        items = [item for item in items if item.key not in report.flagged]
    summary = {**report.summary(), "train_dataset": args.train_dataset, "dropped": args.drop_contaminated}
    return items, summary


def judge_meta(args, judge_args, *, items: int, dropped: int, names: list[str], run) -> dict:
    """How the judgements were made, for results.json and the card (the endpoint without credentials)."""
    return {
        "judge_model": args.judge_model,
        "judge_base_url": redact_url(resolve_base_url(judge_args)),
        "judge_temperature": args.judge_temperature,
        "judge_max_tokens": args.judge_max_tokens,
        "judge_style": args.judge_style,
        "prompt_hash": judge_prompt_hash(args.judge_style),
        "repair_prompt_hash": JUDGE_REPAIR_PROMPT_HASH,
        "max_parse_attempts": args.max_parse_attempts,
        "judge_reply_format": args.judge_reply_format,
        "num_shuffles": args.num_shuffles,
        "shuffle_seed": args.shuffle_seed,
        "items": items,
        "dropped_items": dropped,
        "inputs": dict(zip(names, args.inputs)),
        "rounds": run.rounds,
        "date": today(),
    }


def report_models(args, names: list[str], folders, results: dict) -> None:
    """Log each candidate's mean; write the results into the model-index of the models trained here."""
    for name, model in results["models"].items():
        low, high = model["ci95"]
        logger.info(
            "%-30s mean %s [%s, %s] over %d items", name, model["mean_score"], low, high, model["n_items"]
        )
    candidates = dict(zip([n for n in names if n != REFERENCE_NAME], (f.provenance for f in folders)))
    targets = model_cards_to_update(candidates, args.model_card or [], automatic=args.update_model_cards)
    for name, (folder, provenance) in targets.items():
        model = results["models"][name]
        path = update_model_index(
            folder,
            dataset_source=provenance.get("source") or args.inputs[0],
            dataset_split=provenance.get("split") or "test",
            judge_model=args.judge_model,
            mean_score=model["mean_score"],
            ci95=model["ci95"],
            rouge_l=model["rougeL"],
        )
        logger.info("model-index of %s updated in %s", name, path)


if __name__ == "__main__":
    run_stage(main)
