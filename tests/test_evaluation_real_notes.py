"""End to end on the bundled data (issue 14): the fictional demo notes declared as a real corpus.

prepare_notes (source=demo-real) -> questions and answers (the test server as teacher) ->
answers of two tiny models -> judge (test server, JSON-schema replies) -> per-source report;
perplexity of two models on two corpora; blinded packets, scripted ratings, agreement table.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import runpy
import sys
from pathlib import Path

from asclepius import prompts
from asclepius.data.loading import load_any
from asclepius.evaluation import expert
from asclepius.testing.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
CANDIDATE = re.compile(r"\[Answer ([A-Z]) Begin\]\n(.*?)\n\[Answer \1 End\]", re.S)


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def teacher_and_judge(body: dict) -> str:
    """Questions and answers grounded in the note; judge scores from the answer's digest."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system == prompts.QUESTION_SYSTEM_PROMPT:
        note = between(user, "[Discharge Summary Begin]", "[Discharge Summary End]")
        words = sorted(set(re.findall(r"[a-z]{6,}", note.lower())))
        return f"What does the note say about {words[digest(note) % len(words)]}?"
    if system == prompts.ANSWER_SYSTEM_PROMPT:
        note = between(user, "[Discharge Summary Begin]", "[Discharge Summary End]")
        return "According to the note: " + re.split(r"(?<=\.)\s+", note)[0]
    first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    answers = CANDIDATE.findall(first_user)
    scores = {label: 1 + digest(text) % 4 for label, text in answers}
    if body.get("response_format"):
        return json.dumps({"own_answer": "from the note", **scores})
    return " ".join(str(s) for s in scores.values()) + "\nreasons"


def run(script: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")


def test_real_notes_evaluation_end_to_end(tiny_model_path, decisive_tiny_model_path, tmp_path, monkeypatch):
    notes, questions, instructions = tmp_path / "notes", tmp_path / "questions", tmp_path / "instructions"
    run("prepare_notes.py", ["--input", "data/demo/synthetic_notes.jsonl", "--text_column", "note",
                             "--patient_column", "patient_id", "--where", "task=Summarization", "--limit", "6",
                             "--source", "demo-real", "--source_license", "cc0-1.0", "--source_restricted", "false",
                             "--output_dir", str(notes)], monkeypatch)  # fmt: skip
    models = {"tiny": str(tiny_model_path), "decisive": str(decisive_tiny_model_path)}
    with OpenAIServer(responder=teacher_and_judge) as server:
        teacher = ["--config", "recipes/tiny/data.yaml", "--base_url", server.base_url, "--model", "teacher",
                   "--max_tokens", "200", "--keep_truncated", "false", "--show_progress", "false"]  # fmt: skip
        run(
            "make_questions.py",
            [*teacher, "--input", str(notes), "--output_dir", str(questions)],
            monkeypatch,
        )
        run("make_answers.py", [*teacher, "--input", str(questions), "--output_dir", str(instructions),
                                "--test_ratio", "0"], monkeypatch)  # fmt: skip
        rows = load_any(str(instructions))["train"]
        assert set(rows["source"]) == {"demo-real"} and len(rows) == 6  # the corpus name travelled
        answers = []
        for name, path in models.items():
            answers.append(str(tmp_path / f"answers-{name}"))
            run("generate.py", ["--input", str(instructions), "--split", "train", "--model", path, "--model_name",
                                name, "--output_dir", answers[-1], "--max_tokens", "8", "--batch_size", "6",
                                "--device", "cpu", "--dtype", "float32"], monkeypatch)  # fmt: skip
        report = tmp_path / "report"
        run("judge.py", ["--inputs", *answers, "--output_dir", str(report), "--judge_base_url", server.base_url,
                         "--judge_model", "judge", "--judge_reply_format", "json_schema",
                         "--bootstrap_samples", "100", "--show_progress", "false"], monkeypatch)  # fmt: skip
    results = json.loads((report / "results.json").read_text())
    assert results["meta"]["judge_reply_format"] == "json_schema" and results["missing"]["missing"] == 0
    assert set(results["by_source"]) == {"demo-real"}
    assert results["by_source"]["demo-real"]["models"]["tiny"]["n_items"] == 6
    text = (report / "report.md").read_text()
    assert "### Source `demo-real`" in text and "answer rate" in text

    # Perplexity: two models, two corpora (the real-notes folder, the raw case reports).
    ppl = tmp_path / "perplexity"
    run("perplexity.py", ["--models", *models.values(), "--corpora", f"demo-real={notes}",
                          "case-reports=data/demo/case_reports.csv", "--max_documents", "2", "--window", "64",
                          "--stride", "32", "--bootstrap_samples", "100", "--output_dir", str(ppl)], monkeypatch)  # fmt: skip
    table = (ppl / "report.md").read_text()
    assert "| demo-real |" in table and "| case-reports |" in table and (ppl / "README.md").exists()

    # Clinicians: blinded packets, scripted ratings (rater 1 agrees with the judge), agreement.
    packets = tmp_path / "packets"
    run("expert_eval.py", ["export", "--inputs", *answers, "--output_dir", str(packets), "--raters", "2",
                           "--items", "4"], monkeypatch)  # fmt: skip
    key = json.loads((packets / ".asclepius" / expert.KEY_NAME).read_text())
    shown = {}
    for entry in key["entries"]:
        for label, target in entry["labels"].items():
            shown[(entry["rater"], entry["item_id"], label)] = target
    judged = load_any(str(report), "scores")
    judge = {(r["item_id"], r["model"]): r["score"] for r in next(iter(judged.values()))}
    files = []
    for path in sorted(packets.glob("packets/rater_*/ratings.csv")):
        rows = list(csv.DictReader(path.open()))
        for row in rows:
            target = shown[(int(row["rater"]), row["item_id"], row["label"])]
            score = judge[(row["item_id"], target["model"])] if target["answered"] else 1  # no answer: 1
            row["score"] = score if row["rater"] == "1" else max(1, score - 1)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))  # the export's columns, notice included
            writer.writeheader()
            writer.writerows(rows)
        files.append(str(path))
    agreement = tmp_path / "agreement"
    run("expert_eval.py", ["import", "--ratings", *files, "--judgements", str(report), "--output_dir",
                           str(agreement), "--bootstrap_samples", "100"], monkeypatch)  # fmt: skip
    compared = json.loads((agreement / "results.json").read_text())
    pairs = {row["pair"]: row for row in compared["agreement"]}
    assert pairs["rater_1 vs judge"]["kappa"]["value"] == 1.0
    assert "| rater_1 vs rater_2 |" in (agreement / "report.md").read_text()
