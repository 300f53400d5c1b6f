"""judge_style paper: the original judge's settings, prompt, single try and 0-for-unreadable rule,
reported beside our missing-aware scores (a real OpenAI-compatible test server on 127.0.0.1)."""

from __future__ import annotations

from test_evaluation_judge import NUM_ITEMS, answer_folders, candidates_in, engine_for, item_number  # noqa: F401

from asclepius import prompts
from asclepius.evaluation.config import JudgeArguments
from asclepius.evaluation.folders import load_answers_folder
from asclepius.evaluation.judging import (
    collect_items,
    paper_style_means,
    plan_judgements,
    run_judge,
    score_rows,
)
from asclepius.evaluation.report import build_results, render_markdown
from asclepius.testing.openai_server import OpenAIServer


def test_paper_style_pins_the_original_judge_settings():
    args = JudgeArguments(
        judge_style="paper", judge_temperature=0.7, judge_max_tokens=512, max_parse_attempts=3
    )
    assert (args.judge_temperature, args.judge_max_tokens, args.max_parse_attempts) == (0.0, 2048, 1)
    assert args.judge_model == "gpt-4o"  # the model is whatever the user names (the paper: gpt-4-0314)
    assert JudgeArguments(judge_style="paper", judge_model="gpt-4-0314").judge_model == "gpt-4-0314"
    ours = JudgeArguments(judge_max_tokens=512, max_parse_attempts=3)
    assert (ours.judge_max_tokens, ours.max_parse_attempts) == (512, 3)


def test_paper_prompt_asks_for_scores_alone_and_independent_grading():
    content = prompts.judge_messages("NOTE", "Q?", ["a", "b"], style="paper")[-1]["content"]
    assert "first line holds the 2 scores alone, in the order A, B" in content
    assert "independently of the other candidates" in content and "Do not explain them." in content
    assert "independently" not in prompts.judge_messages("NOTE", "Q?", ["a", "b"])[-1]["content"]
    assert prompts.JUDGE_PAPER_PROMPT_HASH != prompts.JUDGE_PROMPT_HASH


def odd_items_unreadable(body: dict) -> str:
    """Readable scores (4 for GOLD, 2 otherwise) on even items; prose on odd items."""
    if item_number(body) % 2:
        return "Let me think about each answer in turn."
    return " ".join("4" if text.startswith("GOLD") else "2" for text in candidates_in(body)) + "\nreasons"


def test_unreadable_reply_scores_zero_for_every_model_beside_our_missing(answer_folders, tmp_path):  # noqa: F811
    folders = [load_answers_folder(path) for path in answer_folders[:2]]
    items, _, _ = collect_items(folders)
    args = JudgeArguments(judge_style="paper")
    plan = plan_judgements(items, num_shuffles=1, seed=0, style=args.judge_style)
    with OpenAIServer(responder=odd_items_unreadable) as server:
        engine = engine_for(server.base_url, tmp_path / "ledger.sqlite", max_tokens=args.judge_max_tokens)
        run = run_judge(engine, plan, max_parse_attempts=args.max_parse_attempts)
        sent = server.billing.records()
    assert len(sent) == NUM_ITEMS  # one try per item: no repair rounds
    assert all(r["max_tokens"] == 2048 and r["temperature"] == 0.0 for r in sent)
    rows = score_rows(run.judgements)
    unreadable = [row for row in rows if row["score"] is None]
    assert len(unreadable) == 2 * (NUM_ITEMS // 2) and all(row["paper_score"] == 0 for row in unreadable)
    assert all(row["paper_score"] == row["score"] for row in rows if row["score"] is not None)
    means = paper_style_means(rows)
    # The paper's rule: half the items at 0. Ours: those items are missing, the rest keep their scores.
    assert means["gold"] == {"paper_mean": 2.0, "judged": NUM_ITEMS, "zeroed": NUM_ITEMS // 2}
    assert means["bad1"]["paper_mean"] == 1.0
    # The report shows them beside our missing-aware means (which leave those items out).
    results = build_results(rows, items, ["gold", "bad1"], bootstrap_samples=50, bootstrap_seed=0)
    assert results["paper_style"] == means and results["models"]["gold"]["mean_score"] == 4.0
    meta = {"judge_model": "j", "prompt_hash": "h", "judge_temperature": 0.0, "items": len(items),
            "num_shuffles": 1, "shuffle_seed": 0}  # fmt: skip
    assert "| gold | 2.000 | 8 | 4 |" in render_markdown(results, meta)


def test_judge_script_in_paper_style_records_it_and_reports_both(answer_folders, tmp_path, monkeypatch):  # noqa: F811
    import json
    import runpy
    import sys

    from test_evaluation_judge import ROOT

    output = tmp_path / "report"
    with OpenAIServer(responder=odd_items_unreadable) as server:
        argv = ["judge.py", "--inputs", *answer_folders[:2], "--output_dir", str(output),
                "--judge_base_url", server.base_url, "--judge_model", "gpt-4-0314", "--judge_style", "paper",
                "--bootstrap_samples", "50", "--show_progress", "false", "--update_model_cards", "false"]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(str(ROOT / "scripts" / "judge.py"), run_name="__main__")
        assert len(server.billing) == NUM_ITEMS  # one try per item
    results = json.loads((output / "results.json").read_text())
    meta = results["meta"]
    assert meta["judge_style"] == "paper" and meta["prompt_hash"] == prompts.JUDGE_PAPER_PROMPT_HASH
    assert (meta["judge_temperature"], meta["judge_max_tokens"], meta["max_parse_attempts"]) == (0.0, 2048, 1)
    assert (
        results["paper_style"]["gold"]["paper_mean"] == 2.0 and results["models"]["gold"]["mean_score"] == 4.0
    )
    assert "### The paper's scoring rule" in (output / "report.md").read_text()
