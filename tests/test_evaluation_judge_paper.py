"""judge_style paper: the original judge's settings, prompt, single try and 0-for-unreadable rule,
reported beside our missing-aware scores (a real OpenAI-compatible test server on 127.0.0.1)."""

from __future__ import annotations

import re

import pytest
from test_evaluation_judge import NUM_ITEMS, answer_folders, engine_for  # noqa: F401

from asclepius import prompts
from asclepius.evaluation.config import JudgeArguments
from asclepius.evaluation.folders import load_answers_folder
from asclepius.evaluation.judging import (
    collect_items,
    paper_score_tokens,
    paper_scores,
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


def test_paper_prompt_is_one_user_message_in_the_originals_shape():
    messages = prompts.judge_messages("\nNOTE\n", "Q?", ["a", "b"], style="paper")
    assert [message["role"] for message in messages] == ["user"]  # no system turn
    content = messages[0]["content"]
    assert content.startswith("You are an intelligent clinical language model.\n")
    assert "[Agent A's Answer Begin]\na\n[Agent A's Answer End]" in content
    assert "[Agent B's Answer Begin]\nb\n[Agent B's Answer End]" in content
    assert content.rstrip().endswith("Output scores without explanation.")
    assert "[Discharge Summary Begin]\n\nNOTE\n\n[Discharge Summary End]" in content  # sent as given
    assert "independently" not in content and "on its own" in content
    ours = prompts.judge_messages("NOTE", "Q?", ["a", "b"])
    assert ours[0]["role"] == "system" and "[Answer A Begin]" in ours[-1]["content"]
    assert prompts.JUDGE_PAPER_PROMPT_HASH != prompts.JUDGE_PROMPT_HASH


@pytest.mark.parametrize(
    "reply, tokens, scores",
    [
        ("4 2 3", ["4", "2", "3"], [4, 2, 3]),
        # explanations after the scores, even on the same line, are ignored: the first N tokens count
        ("4 2 3 because A is complete, B misses the dose", ["4", "2", "3"], [4, 2, 3]),
        ("3\n4\n1\n\nA: complete...", ["3", "4", "1"], [3, 4, 1]),
        # quotes around the reply are stripped (double, then single)
        ('"4 2 3"', ["4", "2", "3"], [4, 2, 3]),
        ("'1 1 2'", ["1", "1", "2"], [1, 1, 2]),
        # an explanation first: its words are taken as the scores, as the original took them
        ("Scores: 4 2 3", ["Scores:", "4", "2"], [None, 4, 2]),
        ("4 N/A 2.5", ["4", "N/A", "2.5"], [4, None, None]),
    ],
)
def test_paper_parser_reads_replies_as_the_original(reply, tokens, scores):
    assert paper_score_tokens(reply, 3) == tokens
    assert paper_scores(tokens) == scores


@pytest.mark.parametrize("reply", ["", None, "4 2", '"4"', "Unsure."])
def test_paper_parser_too_few_tokens_is_unreadable(reply):
    assert paper_score_tokens(reply, 3) is None


def test_paper_rows_zero_every_model_for_too_few_tokens_and_leave_non_scores_out(answer_folders):  # noqa: F811
    folders = [load_answers_folder(path) for path in answer_folders[:2]]
    items, _, _ = collect_items(folders)
    short, non_score = plan_judgements(items[:2], num_shuffles=1, seed=0, style="paper")
    for judgement, reply in ((short, "4"), (non_score, "4 maybe")):
        judgement.scores = judgement.read_scores(reply)
        judgement.missing_reason = "unparseable" if judgement.scores is None else None
    rows = score_rows([short, non_score])
    assert [(row["score"], row["paper_score"], row["paper_token"]) for row in rows[:2]] == [
        (None, 0, None)
    ] * 2
    assert [(row["score"], row["paper_score"], row["paper_token"]) for row in rows[2:]] == [
        (4, 4, "4"), (None, None, "maybe")
    ]  # fmt: skip
    assert rows[3]["missing_reason"] == "non-numeric score token"
    means = paper_style_means(rows)
    model = rows[3]["model"]
    assert means[model]["non_numeric"] == 1 and means[model]["judged"] == 2 and means[model]["zeroed"] == 1
    assert means[model]["paper_mean"] == 0.0  # the zeroed item only; the non-score token left out


PAPER_CANDIDATE = re.compile(r"\[Agent ([A-Z])'s Answer Begin\]\n(.*?)\n\[Agent \1's Answer End\]", re.S)


def paper_prompt(body: dict) -> str:
    (message,) = body["messages"]  # the paper style sends one user message
    return message["content"]


def odd_items_unreadable(body: dict) -> str:
    """Readable scores (4 for GOLD, 2 otherwise) on even items; fewer tokens than candidates on odd items."""
    content = paper_prompt(body)
    if int(re.search(r"Note number (\d+)", content).group(1)) % 2:
        return "Unsure."
    answers = [text for _, text in PAPER_CANDIDATE.findall(content)]
    return " ".join("4" if text.startswith("GOLD") else "2" for text in answers) + "\nreasons"


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
    assert means["gold"] == {
        "paper_mean": 2.0,
        "judged": NUM_ITEMS,
        "zeroed": NUM_ITEMS // 2,
        "non_numeric": 0,
    }
    assert means["bad1"]["paper_mean"] == 1.0
    # The report shows them beside our missing-aware means (which leave those items out).
    results = build_results(rows, items, ["gold", "bad1"], bootstrap_samples=50, bootstrap_seed=0)
    assert results["paper_style"] == means and results["models"]["gold"]["mean_score"] == 4.0
    meta = {"judge_model": "j", "prompt_hash": "h", "judge_temperature": 0.0, "items": len(items),
            "num_shuffles": 1, "shuffle_seed": 0}  # fmt: skip
    assert "| gold | 2.000 | 8 | 4 | 0 |" in render_markdown(results, meta)


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
