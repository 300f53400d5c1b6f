"""Perplexity: sliding windows score every token once, batching changes nothing, the script resumes per pair."""

from __future__ import annotations

import json
import math
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asclepius.evaluation.perplexity import CorpusScore, score_texts, sliding_windows

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["Pt admitted w/ CAP. Tx abx. D/c home in stable condition.", "Chest pain, trop neg x2, stress test neg.",
         "HTN, DM2 on metformin; A1c 7.9. F/u PCP 2 wks. " * 6]  # fmt: skip


@pytest.mark.parametrize(
    ("length", "window", "stride"), [(10, 4, 2), (10, 4, 3), (10, 16, 8), (7, 3, 1), (1, 4, 2)]
)
def test_sliding_windows_score_every_token_but_the_first_once(length, window, stride):
    spans = sliding_windows(length, window, stride)
    scored = [t for begin, end, n in spans for t in range(end - n, end)]
    assert sorted(scored) == list(range(1, length))  # token 0 has no context; every other exactly once
    assert all(end - begin <= window and n <= end - begin - 1 for begin, end, n in spans)


def reference_nll(model, tokenizer, text: str) -> tuple[float, int]:
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    return float(loss) * (ids.shape[1] - 1), ids.shape[1] - 1


def test_full_window_matches_the_model_loss_and_batching_changes_nothing(decisive_tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(decisive_tiny_model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(decisive_tiny_model_path)
    one = score_texts(model, tokenizer, TEXTS, window=512, stride=256, batch_size=1)
    batched = score_texts(model, tokenizer, TEXTS, window=512, stride=256, batch_size=3)
    for k, text in enumerate(TEXTS):
        nll, tokens = reference_nll(model, tokenizer, text)
        assert one.tokens[k] == tokens and one.nll[k] == pytest.approx(nll, rel=1e-4)
        assert batched.nll[k] == pytest.approx(one.nll[k], rel=1e-4) and batched.tokens[k] == tokens
    # A window shorter than the long note: same tokens scored, each with less context.
    short = score_texts(model, tokenizer, TEXTS, window=16, stride=8, batch_size=4)
    assert short.tokens == one.tokens and short.nll[2] != pytest.approx(one.nll[2], rel=1e-6)
    assert one.perplexity() == pytest.approx(math.exp(sum(one.nll) / sum(one.tokens)))


def test_bootstrap_interval_contains_the_corpus_perplexity():
    score = CorpusScore(nll=[10.0, 30.0, 12.0, 50.0], tokens=[10, 12, 9, 20])
    low, high = score.bootstrap(samples=500, seed=0)
    assert low <= score.perplexity() <= high and (low, high) == score.bootstrap(samples=500, seed=0)


def run(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["perplexity.py", *argv])
    runpy.run_path(str(ROOT / "scripts" / "perplexity.py"), run_name="__main__")


def test_script_writes_the_paper_table_and_resumes_per_pair(tiny_model_path, decisive_tiny_model_path, tmp_path,
                                                           monkeypatch, capsys):  # fmt: skip
    notes = tmp_path / "real.jsonl"
    notes.write_text("".join(json.dumps({"note": t}) + "\n" for t in TEXTS))
    reports = tmp_path / "reports.csv"
    reports.write_text("patient\n" + "\n".join(f'"{t.upper()}"' for t in TEXTS) + "\n")
    copy = tmp_path / "model-b"
    shutil.copytree(decisive_tiny_model_path, copy)
    out = tmp_path / "ppl"
    argv = ["--models", str(tiny_model_path), str(copy), "--corpora", f"real={notes}", f"case-reports={reports}",
            "--output_dir", str(out), "--window", "32", "--stride", "16", "--bootstrap_samples", "100"]  # fmt: skip
    run(argv, monkeypatch)
    results = json.loads((out / "results.json").read_text())
    assert len(results["pairs"]) == 4 and results["windows"][str(copy)] == {"window": 32, "stride": 16}
    table = (out / "report.md").read_text()
    assert f"| corpus | `{tiny_model_path}` | `{copy}` |" in table
    assert (
        table.count("| real |") == 3 and table.count("| case-reports |") == 3
    )  # perplexity, bits per byte and counts tables
    assert "Every model uses the same tokenizer" in table  # model B is a copy: same vocabulary
    for pair in results["pairs"]:
        expected = sum(pair["per_document"]["nll"]) / (math.log(2) * pair["bytes"])
        assert pair["bits_per_byte"] == pytest.approx(expected, abs=1e-4)
        low, high = pair["bits_per_byte_ci95"]
        assert low <= pair["bits_per_byte"] <= high
    assert (out / "perplexity.png").stat().st_size > 1000 and (out / "README.md").exists()
    # Resume: with the card gone and model B deleted, a rerun reads every pair back instead of rescoring.
    (out / "README.md").unlink()
    shutil.rmtree(copy)
    run(argv, monkeypatch)
    assert json.loads((out / "results.json").read_text())["pairs"] == results["pairs"]
    # Bad input: a corpus without a text column, a model folder that does not exist.
    with pytest.raises(SystemExit) as exit_info:
        run(
            ["--models", str(copy), "--corpora", str(notes), "--output_dir", str(tmp_path / "p2")],
            monkeypatch,
        )
    assert exit_info.value.code == 2 and f"{copy}: no such model folder" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("id,body\n1,text\n")
    with pytest.raises(SystemExit):
        run(
            ["--models", str(tiny_model_path), "--corpora", str(bad), "--output_dir", str(tmp_path / "p3")],
            monkeypatch,
        )
    assert "no text column" in capsys.readouterr().err


def test_bits_per_byte_count_the_bytes_of_the_scored_tokens(tiny_model_path):
    from asclepius.evaluation.perplexity import scored_bytes

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    score = score_texts(model, tokenizer, TEXTS, window=64, stride=32, batch_size=2)
    for text, size in zip(TEXTS, score.bytes):
        ids = tokenizer(text)["input_ids"]
        first = 0 if ids[0] in tokenizer.all_special_ids else len(tokenizer.decode(ids[:1]).encode())
        assert size == len(text.encode()) - first == scored_bytes(tokenizer, text, ids)
    assert score.bits_per_byte() == pytest.approx(sum(score.nll) / (math.log(2) * sum(score.bytes)))


def test_the_report_says_when_tokenizers_differ():
    from asclepius.evaluation.perplexity import render_markdown

    def pair(model, fingerprint):
        return {"model": model, "corpus": "notes", "documents": 2, "tokens": 10, "bytes": 40, "perplexity": 5.0,
                "ci95": [4.0, 6.0], "bits_per_byte": 0.58, "bits_per_byte_ci95": [0.5, 0.66],
                "tokenizer": fingerprint}  # fmt: skip

    results = {"models": ["llama", "llama-cpt", "mistral"], "corpora": {"notes": "x"},
               "pairs": [pair("llama", "aaa"), pair("llama-cpt", "aaa"), pair("mistral", "bbb")],
               "windows": {m: {"window": 8, "stride": 4} for m in ("llama", "llama-cpt", "mistral")},
               "bootstrap": {"samples": 10, "seed": 0}}  # fmt: skip
    report = render_markdown(results)
    assert "different tokenizers** (`llama`, `llama-cpt`; `mistral`" in report
    assert "| notes | 0.5800 (0.5000-0.6600) |" in report
