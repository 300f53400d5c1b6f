"""The paper's perplexity analysis: every model scores every corpus, token-level, with intervals.

    python scripts/perplexity.py --models outputs/tiny-pretrain outputs/tiny-sft \
        --corpora real=outputs/hospital-x/notes synthetic=outputs/tiny/notes case-reports=data/demo/case_reports.csv \
        --output_dir outputs/perplexity

Rows of the table are corpora (real notes, synthetic notes, raw case reports...), columns
models, as in the paper. Long documents are scored with a sliding window (stated in the
report). Each finished (model, corpus) pair is kept, so a rerun scores only what is missing.
Writes results.json, report.md, perplexity.png and the card (last).
"""

from __future__ import annotations

import json
import logging

from asclepius.data.corpus import load_texts
from asclepius.errors import run_stage
from asclepius.evaluation.perplexity import (
    PerplexityArguments,
    check_models,
    render_markdown,
    score_pairs,
    write_plot,
)
from asclepius.recipes import parse_recipe
from asclepius.stage import StageFolder, classify
from asclepius.stage.cards import PAPER_CITATION, render_card
from asclepius.stage.files import atomic_write_text, size_category, today

logger = logging.getLogger("perplexity")


def main() -> None:
    (args,) = parse_recipe(PerplexityArguments)
    args: PerplexityArguments
    args.check_required()
    corpora = args.named_corpora()

    # 1. The corpora are read and checked before any model loads; the folder inherits their provenance.
    folder = StageFolder.open(args.output_dir, overwrite=args.overwrite)
    provenance = folder.check([classify(path) for path in corpora.values()])
    if folder.skip_if_finished():
        return
    store = folder.work_dir / "perplexity"
    check_models(args, corpora, store)
    texts = {}
    for name, path in corpora.items():
        texts[name], column = load_texts(path, text_column=args.text_column, split=args.split)
        texts[name] = texts[name][: args.max_documents]
        logger.info("corpus %s: %d documents (column %r)", name, len(texts[name]), column)
    folder.begin()

    # 2. One model at a time; every (model, corpus) pair already scored is read back, not rescored.
    pairs, windows = score_pairs(args, corpora, texts, store)

    # 3. results.json, report.md and the plot; the card last.
    results = {
        "models": list(args.models),
        "corpora": corpora,
        "windows": windows,
        "bootstrap": {"samples": args.bootstrap_samples, "seed": args.bootstrap_seed, "unit": "document"},
        "pairs": pairs,
        "date": today(),
    }
    atomic_write_text(folder.path / "results.json", json.dumps(results, indent=2) + "\n")
    write_plot(folder.path / "perplexity.png", results)
    report = render_markdown(results)
    atomic_write_text(folder.path / "report.md", "# Perplexity analysis\n\n" + report)
    card_data = {
        "tags": ["asclepius", "clinical", "evaluation", "perplexity"],
        "language": ["en"],
        "size_categories": [size_category(len(pairs))],
        "data_provenance": provenance.status,
        **provenance.card_license(),
    }
    context = {
        "title": "Perplexity of " + ", ".join(args.models),
        "summary": "How natural each corpus reads to each model (the Asclepius paper's perplexity analysis).",
        "report": report,
        "citation": PAPER_CITATION,
    }
    folder.finish(lambda: render_card(folder.path, kind="dataset", template="evaluation_card.md",
                                      card_data=card_data, context=context))  # fmt: skip
    print(f"wrote {folder.path / 'report.md'}")


if __name__ == "__main__":
    run_stage(main)
