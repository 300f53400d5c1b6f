"""Clinician evaluation: blinded packets for raters, then their scores beside the judge's.

    python scripts/expert_eval.py export --inputs outputs/eval/asclepius outputs/eval/llama2-chat \
        --output_dir outputs/expert --raters 3 --items 40
    # each rater fills outputs/expert/packets/rater_N/ratings.csv (rubric.md explains the scale)
    python scripts/expert_eval.py import --ratings outputs/expert/packets/rater_*/ratings.csv \
        --judgements outputs/eval/report --output_dir outputs/expert-results

``export`` samples items stratified by task and source and writes per rater the note,
the instruction and the candidates shuffled (recorded seed) under labels A, B, C...,
without model names. ``import`` validates every score, unblinds, and reports the human
means per model with intervals beside the judge's, and agreement (quadratic kappa,
ordinal Krippendorff's alpha, Spearman) of each rater with the judge and among raters.
"""

from __future__ import annotations

import json
import logging
import sys

from trl import TrlParser

from asclepius.errors import InputError, run_stage
from asclepius.evaluation import expert
from asclepius.evaluation.folders import load_answers_folder
from asclepius.evaluation.judging import collect_items
from asclepius.recipes import parse_recipe
from asclepius.stage import StageFolder, classify
from asclepius.stage.cards import PAPER_CITATION, render_card
from asclepius.stage.files import atomic_write_text, today

logger = logging.getLogger("expert_eval")
COMMANDS = ("export", "import")


def export(args: expert.ExportArguments) -> None:
    args.check_required()
    folder = StageFolder.open(args.output_dir, overwrite=args.overwrite)
    provenance = folder.check([classify(path) for path in args.inputs])
    if folder.skip_if_finished():
        return
    folders = [load_answers_folder(path) for path in args.inputs]
    items, names, _ = collect_items(folders, include_reference=args.include_reference)
    sample = expert.stratified_sample(items, args.items, args.seed)
    logger.info(
        "%d of %d items sampled for %d raters; candidates: %s", len(sample), len(items), args.raters, names
    )
    folder.begin()
    packets, key = expert.build_packets(sample, raters=args.raters, seed=args.seed)
    expert.write_packets(
        folder.path,
        packets,
        {**key, "inputs": dict(zip(names, args.inputs)), "date": today()},
        provenance=provenance,  # restricted notes: a fixed notice in every file a rater gets
    )
    summary = (
        f"Blinded rating packets: {len(sample)} items (stratified by task and source), {len(names)} candidates "
        f"per item, {args.raters} raters, seed {args.seed}. Give each rater `packets/rater_N/` and `rubric.md` "
        f"only; the key that unblinds the labels is in `.asclepius/{expert.KEY_NAME}`."
    )
    write_card(folder, provenance, "Clinician rating packets", summary, expert.RUBRIC)
    print(f"wrote packets for {args.raters} raters to {folder.path / 'packets'}")


def import_ratings(args: expert.ImportArguments) -> None:
    args.check_required()
    from asclepius.data.loading import load_any

    key_path = expert.find_key(args.ratings, args.packets)
    folder = StageFolder.open(args.output_dir, overwrite=args.overwrite)
    provenance = folder.check([classify(str(key_path.parents[1])), classify(args.judgements)])
    if folder.skip_if_finished():
        return
    key = json.loads(key_path.read_text(encoding="utf-8"))
    ratings = expert.read_ratings(args.ratings, key, allow_incomplete=args.allow_incomplete)
    if ratings.attrs["unrated_items"]:
        print(f"--allow_incomplete: {ratings.attrs['unrated_items']} of {ratings.attrs['items']} sheeted items "
              "are not fully rated; their rated answers are imported, the rest left out")  # fmt: skip
    splits = load_any(args.judgements, "scores")
    judge = next(iter(splits.values())).to_pandas()
    folder.begin()
    results = expert.compare(ratings, judge, samples=args.bootstrap_samples, seed=args.bootstrap_seed)
    results["meta"] = {
        "key": str(key_path),
        "judgements": args.judgements,
        "ratings": list(args.ratings),
        "unrated_items": ratings.attrs["unrated_items"],
        "date": today(),
    }
    atomic_write_text(folder.path / "results.json", json.dumps(results, indent=2) + "\n")
    report = expert.render_markdown(results)
    atomic_write_text(folder.path / "report.md", "# Clinician ratings and the judge\n\n" + report)
    write_card(
        folder,
        provenance,
        "Clinician ratings and the judge",
        "Human 1-4 scores, unblinded, beside the LLM judge's.",
        report,
    )
    print(report)


def write_card(folder: StageFolder, provenance, title: str, summary: str, report: str) -> None:
    card_data = {"tags": ["asclepius", "clinical", "evaluation", "human-evaluation"], "language": ["en"],
                 "data_provenance": provenance.status, **provenance.card_license()}  # fmt: skip
    context = {"title": title, "summary": summary, "report": report, "citation": PAPER_CITATION}
    folder.finish(lambda: render_card(folder.path, kind="dataset", template="evaluation_card.md",
                                      card_data=card_data, context=context))  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        for command, arguments in (("export", expert.ExportArguments), ("import", expert.ImportArguments)):
            print(f"expert_eval.py {command}:")
            TrlParser((arguments,)).print_help()
        return
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise InputError(
            "expert_eval.py", f"first argument must be one of {', '.join(COMMANDS)} (then --help)"
        )
    command = sys.argv.pop(1)
    if command == "export":
        (args,) = parse_recipe(expert.ExportArguments)
        export(args)
    else:
        (args,) = parse_recipe(expert.ImportArguments)
        import_ratings(args)


if __name__ == "__main__":
    run_stage(main)
