"""The judge protocol against real OpenAI-compatible servers: shuffles undone, bad replies retried then missing."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from asclepius.engine import Engine, EngineArguments
from asclepius.evaluation.config import JudgeArguments
from asclepius.evaluation.folders import load_answers_folder, with_answers, write_answers_folder
from asclepius.evaluation.judging import (
    collect_items,
    judgement_rows,
    parse_scores,
    plan_judgements,
    run_judge,
    score_rows,
)
from asclepius.evaluation.report import build_results, render_markdown
from asclepius.tasks import TASKS
from asclepius.testing.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
CANDIDATE = re.compile(r"\[Answer ([A-Z]) Begin\]\n(.*?)\n\[Answer \1 End\]", re.S)
NUM_ITEMS = 8


def candidates_in(body: dict) -> list[str]:
    """The answers shown to the judge, in label order (from the first user turn)."""
    first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return [text for _, text in CANDIDATE.findall(first_user)]


def gold_scorer(body: dict) -> str:
    """4 for the gold model's answer wherever it is shown, 1 for every other answer."""
    scores = ["4" if text.startswith("GOLD") else "1" for text in candidates_in(body)]
    return " ".join(scores) + "\nMy answer: the note says so. A is ..."


def item_number(body: dict) -> int:
    return int(re.search(r"Note number (\d+)", body["messages"][1]["content"]).group(1))


def unruly_scorer(body: dict) -> str:
    """Items 0 mod 4 answer well; 1 mod 4 give one score too many, then comply; 2 mod 4 never comply;
    3 mod 4 prefix their scores, then use commas, and comply on the third try."""
    k, n = item_number(body), len(candidates_in(body))
    repair = (
        re.search(r"attempt (\d+) of", body["messages"][-1]["content"]) if len(body["messages"]) > 2 else None
    )
    tries = int(repair.group(1)) if repair else 1
    good = " ".join("4" if text.startswith("GOLD") else "2" for text in candidates_in(body)) + "\nreasons"
    if k % 4 == 0:
        return good
    if k % 4 == 1:
        return good if tries >= 2 else " ".join(["3"] * (n + 1)) + "\nreasons"
    if k % 4 == 2:
        return "I would rather discuss the note in prose."
    return {1: "Scores: " + good, 2: good.replace(" ", ", ", n - 1)}.get(tries, good)


def make_answers(
    root: Path, name: str, prefix: str, *, model_path: str | None = None, skip: int | None = None
) -> str:
    rows = [
        {
            "patient_id": k,
            "note": f"Note number {k}. Pt admitted w/ condition {k}, treated, discharged home.",
            "question": f"What was treated in patient {k}?",
            "answer": f"Condition {k} was treated.",
            "task": TASKS[k % len(TASKS)],
        }
        for k in range(NUM_ITEMS)
        if k != skip
    ]
    dataset = Dataset.from_list(rows)
    answers = [f"{prefix}-{k} condition {k} treated" for k in range(NUM_ITEMS) if k != skip]
    folder = root / name
    provenance = {"model": name, "model_path": model_path, "backend": "transformers", "prompt_style": "asclepius",
                  "prompt_hash": "x", "source": "demo-eval", "split": "test"}  # fmt: skip
    write_answers_folder(folder, with_answers(dataset, name, answers), split="test", provenance=provenance)
    return str(folder)


@pytest.fixture
def answer_folders(tmp_path):
    return [make_answers(tmp_path, "gold", "GOLD"), make_answers(tmp_path, "bad1", "BAD"),
            make_answers(tmp_path, "bad2", "WORSE", skip=5)]  # fmt: skip


def engine_for(base_url: str, ledger: Path, model: str = "judge", max_tokens: int = 64) -> Engine:
    args = EngineArguments(
        base_url=base_url, model=model, max_concurrency=8, max_requests_per_minute=60000,
        max_tokens_per_minute=1e9, request_timeout=30, max_attempts=8, show_progress=False,
    )  # fmt: skip
    engine = Engine(
        args, ledger, default_temperature=0.0, default_max_tokens=max_tokens, description="judgements"
    )
    engine.backoff_base = 0.01  # the test server's injected faults need no real backoff
    return engine


def test_parse_scores_is_strict():
    assert parse_scores("4 2 3\nbecause...", 3) == [4, 2, 3]
    assert parse_scores("\n\n  1 4  \nwhy", 2) == [1, 4]
    for reply in (
        "4 2\n",
        "4 2 3 1",
        "Scores: 4 2 3",
        "4, 2, 3",
        "4 2 5",
        "0 2 3",
        "4 2 3.",
        "",
        None,
        "4/4 2 3",
    ):
        assert parse_scores(reply, 3) is None, reply


def test_shuffle_is_undone(answer_folders, tmp_path):
    folders = [load_answers_folder(path) for path in answer_folders]
    items, names, dropped = collect_items(folders)
    # "bad2" has no row for item 5: the item is left out of every model's score.
    assert names == ["gold", "bad1", "bad2"] and len(items) == NUM_ITEMS - 1 and dropped == 1
    plan = plan_judgements(items, num_shuffles=3, seed=7)
    with OpenAIServer(responder=gold_scorer) as server:
        run = run_judge(engine_for(server.base_url, tmp_path / "ledger.sqlite"), plan, max_parse_attempts=2)
    scores = score_rows(run.judgements)
    gold_positions = {row["position"] for row in scores if row["model"] == "gold"}
    assert gold_positions == {0, 1, 2}  # shown first, second and third: the orders really differ
    results = build_results(scores, items, names, bootstrap_samples=200, bootstrap_seed=0)
    assert results["models"]["gold"]["mean_score"] == 4.0
    assert results["models"]["bad1"]["mean_score"] == results["models"]["bad2"]["mean_score"] == 1.0
    assert results["win_rates"]["gold"]["bad1"]["win_rate"] == 1.0
    # The recorded order reproduces: the same seed plans the same orders.
    assert [j.order for j in plan_judgements(items, num_shuffles=3, seed=7)] == [j.order for j in plan]


def test_unreadable_replies_are_retried_then_missing(answer_folders, tmp_path):
    folders = [load_answers_folder(path) for path in answer_folders[:2]]
    items, names, _ = collect_items(folders)
    plan = plan_judgements(items, num_shuffles=2, seed=0)
    ledger = tmp_path / "ledger.sqlite"
    # Also broken HTTP bodies and server errors: the engine retries those, the protocol the rest.
    with OpenAIServer(responder=unruly_scorer, rate_malformed=0.1, rate_500=0.1, seed=3) as server:
        run = run_judge(engine_for(server.base_url, ledger), plan, max_parse_attempts=3)
        billed = len(server.billing)
        by_item = {}
        for judgement in run.judgements:
            by_item.setdefault(int(judgement.item.note.split()[2].rstrip(".")), []).append(judgement)
        for k, judgements in by_item.items():
            for judgement in judgements:
                tries = len(judgement.replies)
                if k % 4 == 2:
                    assert (
                        judgement.scores is None and judgement.missing_reason == "unparseable" and tries == 3
                    )
                else:
                    assert judgement.scores is not None and tries == {0: 1, 1: 2, 3: 3}[k % 4]
                    assert judgement.scores_by_model()["gold"] == 4
        scores = score_rows(run.judgements)
        missing = [row for row in scores if row["score"] is None]
        assert len(missing) == 2 * 2 * sum(1 for k in by_item if k % 4 == 2)  # 2 models x 2 shuffles
        assert all(row["missing_reason"] == "unparseable" for row in missing)
        assert 0 not in {row["score"] for row in scores}  # missing is never a score
        results = build_results(scores, items, names, bootstrap_samples=200, bootstrap_seed=0)
        assert (
            results["models"]["gold"]["mean_score"] == 4.0 and results["models"]["bad1"]["mean_score"] == 2.0
        )
        assert results["missing"]["missing"] == 2 * 2 and results["missing"]["by_reason"] == {
            "unparseable": 4
        }
        rows = judgement_rows(run.judgements, seed=0)
        assert all(len(r["replies"]) == r["attempts"] for r in rows)
        # A rerun is served by the ledger: nothing is sent or paid again, the outcome is the same.
        again = run_judge(
            engine_for(server.base_url, ledger),
            plan_judgements(items, num_shuffles=2, seed=0),
            max_parse_attempts=3,
        )
        assert len(server.billing) == billed
        assert [j.scores for j in again.judgements] == [j.scores for j in run.judgements]
        assert not server.billing.double_billed()


def test_judge_script_reports_and_updates_the_model_card(answer_folders, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    model_dir, base_dir = tmp_path / "gold-model", tmp_path / "base-model"
    model_dir.mkdir()
    base_dir.mkdir()
    # The gold model was trained here (its card's tags say so); the base model's card is someone else's.
    (model_dir / "README.md").write_text(
        "---\nlicense: apache-2.0\ntags: [asclepius, sft]\n---\n# Gold model\n\nIt knows.\n"
    )
    base_card = "---\nlicense: apache-2.0\ntags: [asclepius, tiny]\n---\n# A base model\n"
    (base_dir / "README.md").write_text(base_card)
    gold = make_answers(tmp_path / "with-card", "gold", "GOLD", model_path=str(model_dir))
    base = make_answers(tmp_path / "base-answers", "base", "BASE", model_path=str(base_dir))
    train = tmp_path / "train.jsonl"
    with train.open("w") as handle:  # item 1's note pasted into a longer one, item 2's patient
        handle.write(json.dumps({"patient_id": 100, "note": "Prior text. Note number 1. Pt admitted w/ condition 1, "
                                 "treated, discharged home. More text."}) + "\n")  # fmt: skip
        handle.write(json.dumps({"patient_id": 2, "note": "An unrelated note about a fracture."}) + "\n")
    output = tmp_path / "report"
    with OpenAIServer(responder=gold_scorer) as server:
        argv = ["judge.py", "--inputs", gold, answer_folders[1], base, "--output_dir", str(output),
                "--judge_base_url", server.base_url, "--judge_model", "judge", "--num_shuffles", "2",
                "--include_reference", "true", "--train_dataset", str(train), "--decontamination_ngram", "8",
                "--bootstrap_samples", "100", "--show_progress", "false"]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(str(ROOT / "scripts" / "judge.py"), run_name="__main__")
    results = json.loads((output / "results.json").read_text())
    assert (
        results["models"]["gold"]["mean_score"] == 4.0 and results["models"]["reference"]["mean_score"] == 1.0
    )
    assert results["meta"]["decontamination"]["flagged"] == 2
    assert results["meta"]["decontamination"]["by_patient_id"] == 1
    report = (output / "report.md").read_text()
    assert "2 of 8 evaluation items overlap the training data" in report and "| gold | 4.000 |" in report
    for plot in ("scores", "distribution", "by_task", "position_bias"):
        assert (output / "plots" / f"{plot}.png").stat().st_size > 1000
    assert (output / "README.md").exists() and (output / "data" / "scores").is_dir()
    card = ModelCard.load(model_dir / "README.md")
    [judge_result] = [r for r in card.data.eval_results if r.metric_type == "llm_judge_score"]
    assert judge_result.metric_value == 4.0 and judge_result.dataset_type == "demo-eval"
    assert card.data.license == "apache-2.0" and "It knows." in card.text
    assert (base_dir / "README.md").read_text() == base_card, "a card not trained here is left alone"


def test_tiny_model_judge_gives_missing_judgements(tiny_serve, answer_folders, tmp_path):
    base_url, model_path = tiny_serve
    folders = [load_answers_folder(path) for path in answer_folders[:2]]
    items, names, _ = collect_items(folders)
    plan = plan_judgements(items[:3], num_shuffles=1, seed=0)
    # A few tokens are enough to be unreadable; the tiny model on a CPU is slow with long prompts.
    engine = engine_for(base_url, tmp_path / "ledger.sqlite", model=str(model_path), max_tokens=12)
    run = run_judge(engine, plan, max_parse_attempts=2)
    # A random model writes nonsense: every judgement is asked twice, then counted as missing.
    assert all(
        j.scores is None and j.missing_reason == "unparseable" and len(j.replies) == 2 for j in run.judgements
    )
    results = build_results(
        score_rows(run.judgements), items[:3], names, bootstrap_samples=50, bootstrap_seed=0
    )
    assert results["missing"]["rate"] == 1.0 and results["missing"]["judge_calls"] == 3
    assert results["models"]["gold"]["mean_score"] is None and results["models"]["gold"]["n_items"] == 0
    # The report says so in words and shows what needs no judge, not tables of n/a.
    meta = {"judge_model": "tiny", "prompt_hash": "x", "judge_temperature": 0.0, "items": 3,
            "num_shuffles": 1, "shuffle_seed": 0}  # fmt: skip
    markdown = render_markdown(results, meta)
    assert "no readable judgement" in markdown and "ROUGE-L (95% CI)" in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert table_rows and not any(set(line.split("|")[2:-1]) <= {" n/a ", " - "} for line in table_rows)
    assert "### Score distribution" not in markdown and "Pairwise win rates" not in markdown


def test_judge_arguments_override_the_endpoint_but_keep_pacing():
    engine_args = EngineArguments(
        base_url="http://127.0.0.1:9/v1", model="candidate", max_concurrency=3, temperature=0.7
    )
    judge = JudgeArguments(judge_model="gpt-4o", judge_temperature=0.0).judge_engine_arguments(engine_args)
    assert (judge.model, judge.base_url, judge.temperature, judge.max_tokens) == ("gpt-4o", None, 0.0, 1024)
    assert judge.max_concurrency == 3


def test_structured_scores_parse_json_and_fall_back_to_the_first_line():
    from asclepius.evaluation.judging import parse_structured_scores, score_schema

    labels = ["A", "B", "C"]
    assert parse_structured_scores('{"own_answer": "x", "A": 4, "B": 1, "C": 3}', labels) == [4, 1, 3]
    assert parse_structured_scores('```json\n{"own_answer": "", "A": 2, "B": 2, "C": 2}\n```', labels) == [
        2,
        2,
        2,
    ]
    assert (
        parse_structured_scores('{"own_answer": "x", "A": 5, "B": 1, "C": 3}', labels) is None
    )  # out of range
    assert parse_structured_scores('{"own_answer": "x", "A": 4, "B": 1}', labels) is None  # a label missing
    assert parse_structured_scores('{"A": true, "B": 1, "C": 1}', labels) is None
    assert parse_structured_scores("4 1 3\nbecause", labels) == [4, 1, 3]  # endpoint ignored the schema
    assert parse_structured_scores("Scores: 4 1 3", labels) is None  # the fallback is as strict as ever
    schema = score_schema(labels)["json_schema"]["schema"]
    assert schema["required"] == ["own_answer", *labels] and schema["additionalProperties"] is False


def structured_scorer(body: dict) -> str:
    """Scores only as the JSON the request's schema asks for; prose to anything else."""
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    if not schema:
        return "I would rather discuss the note in prose."
    labels = [key for key in schema["properties"] if key != "own_answer"]
    assert "JSON object" in body["messages"][-1]["content"]
    scores = {label: 4 if text.startswith("GOLD") else 1 for label, text in zip(labels, candidates_in(body))}
    return json.dumps({"own_answer": "the note says so", **scores})


def test_json_schema_replies_are_requested_and_read(answer_folders, tmp_path):
    folders = [load_answers_folder(p) for p in answer_folders[:2]]
    items, names, _ = collect_items(folders)
    with OpenAIServer(responder=structured_scorer) as server:
        plan = plan_judgements(items, num_shuffles=1, seed=0, reply_format="json_schema")
        run = run_judge(engine_for(server.base_url, tmp_path / "a.sqlite"), plan, max_parse_attempts=2)
        assert all(j.scores is not None for j in run.judgements)
        assert {j.scores_by_model()["gold"] for j in run.judgements} == {4}
        # The default asks for the first line and sends no schema: this judge only writes prose then.
        plain = plan_judgements(items, num_shuffles=1, seed=0)
        run = run_judge(engine_for(server.base_url, tmp_path / "b.sqlite"), plain, max_parse_attempts=1)
        assert all(j.scores is None and j.missing_reason == "unparseable" for j in run.judgements)
    # An endpoint that ignores response_format and answers on the first line is still read.
    with OpenAIServer(responder=gold_scorer) as server:
        plan = plan_judgements(items, num_shuffles=1, seed=0, reply_format="json_schema")
        run = run_judge(engine_for(server.base_url, tmp_path / "c.sqlite"), plan, max_parse_attempts=1)
        assert {j.scores_by_model()["gold"] for j in run.judgements} == {4}
