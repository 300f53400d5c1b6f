"""The paper's judge protocol: every candidate answer to one (note, question) in one prompt.

For each item the candidates are shuffled with a seed derived from (shuffle_seed, item,
shuffle index), so the order is recorded and reproducible, and labelled A, B, C... The
judge works out its own answer, then scores each candidate 1-4; the FIRST line of its
reply must be exactly N integers in 1..4 separated by spaces. Anything else is asked
again (the bad reply and a repair turn appended, so the new request has a new ledger
key) up to ``max_parse_attempts`` tries in all, and then recorded as missing, never as
a score. Scores are mapped back through the recorded order to the models.

``judge_style paper`` reads a reply as the original did (:func:`paper_score_tokens`): quotes
stripped, the whole reply split on whitespace, the first N tokens taken as the N scores;
fewer than N tokens scores 0 for every model of the item (``paper_score``); a token that is
not a score 1-4 is recorded as given (``paper_token``) and left out of every mean.

Retries run in rounds through the same engine and ledger: round 1 sends every first
try, round 2 the repairs of round 1's unreadable replies, and so on. A rerun replays
every round from the ledger for free.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asclepius import prompts
from asclepius.evaluation.folders import AnswersFolder
from asclepius.evaluation.generation import row_key

logger = logging.getLogger(__name__)

SCORE_NAMES = {1: "Unacceptable", 2: "Poor", 3: "Satisfactory", 4: "Excellent"}
REFERENCE_NAME = "reference"
JUDGE_PROMPT_HASH = prompts.JUDGE_PROMPT_HASH
JUDGE_REPAIR_PROMPT_HASH = prompts.prompt_hash(prompts.JUDGE_REPAIR_PROMPT)
_SCORE_LINE = re.compile(r"[1-4](?: +[1-4])*")


def parse_scores(reply: str | None, num_candidates: int) -> list[int] | None:
    """The scores on the reply's first line, or None unless it is exactly N integers in 1..4.

    Strict on purpose: "Scores: 4 3", "4, 3" or "4/4 3/4" are not read, so a judge that
    drifts from the format shows up as missing judgements instead of as guessed scores.
    Surrounding whitespace and blank lines before the first line are tolerated.
    """
    if not reply or not reply.strip():
        return None
    first_line = reply.strip().splitlines()[0].strip()
    if not _SCORE_LINE.fullmatch(first_line):
        return None
    scores = [int(token) for token in first_line.split()]
    return scores if len(scores) == num_candidates else None


# --- the original's reading of a reply (judge_style paper) ----------------------------------
PAPER_SCORE_OF_TOKEN = {str(score): score for score in SCORE_NAMES}
NON_NUMERIC = "non-numeric score token"


def paper_score_tokens(reply: str | None, num_candidates: int) -> list[str] | None:
    """The N score tokens as the original read them, or None when fewer than N came back.

    Double then single quotes are stripped from the ends of the reply, the whole reply is
    split on whitespace and its first N tokens are the scores, whatever they are: "4 3 The
    first answer..." gives ["4", "3"], "Answer A: 4" gives ["Answer", "A:"] (not scores).
    """
    tokens = (reply or "").strip('"').strip("'").split()
    return tokens[:num_candidates] if len(tokens) >= num_candidates else None


def paper_scores(tokens: Sequence[str]) -> list[int | None]:
    """Each token's score: an integer token 1-4, else None (the original kept the token itself)."""
    return [PAPER_SCORE_OF_TOKEN.get(token) for token in tokens]


# --- structured replies (--judge_reply_format json_schema) ---------------------------------
REPLY_FORMATS = ("first_line", "json_schema")


def score_schema(labels: Sequence[str]) -> dict[str, Any]:
    """OpenAI ``response_format``: an object with the judge's own answer and one 1-4 score per label.

    One key per label (not an array) fixes the number of scores in a form both OpenAI's strict
    structured outputs and vLLM's guided decoding enforce.
    """
    properties: dict[str, Any] = {"own_answer": {"type": "string"}}
    properties.update({label: {"type": "integer", "enum": [1, 2, 3, 4]} for label in labels})
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "judge_scores",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


def structured_messages(messages: list[dict[str, str]], labels: Sequence[str]) -> list[dict[str, str]]:
    """The messages with the JSON reply instruction added to the last user turn."""
    messages = [dict(message) for message in messages]
    last = max(i for i, message in enumerate(messages) if message["role"] == "user")
    instruction = prompts.JUDGE_JSON_INSTRUCTION.format(labels=", ".join(labels))
    messages[last]["content"] = f"{messages[last]['content']}\n\n{instruction}"
    return messages


def parse_structured_scores(reply: str | None, labels: Sequence[str]) -> list[int] | None:
    """Scores from the JSON object (one integer 1-4 per label); else the strict first-line parser.

    The fallback keeps a judge whose endpoint ignored ``response_format`` readable under the
    same strict rule as the default format.
    """
    import json

    text = (reply or "").strip()
    if text.startswith("```"):  # a fenced block: the object inside
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return parse_scores(reply, len(labels))
    if not isinstance(value, dict):
        return None
    scores = [value.get(label) for label in labels]
    if all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4 for s in scores):
        return scores
    return None


@dataclass
class Item:
    """One (note, question) every candidate answered."""

    key: str
    note: str
    question: str
    task: str | None
    reference: str | None
    patient_id: Any
    answers: dict[str, str | None]  # candidate name -> answer (None: it has none)
    source: str | None = None  # the note corpus the item comes from (prepare_notes --source), if recorded


@dataclass
class Judgement:
    """One judge call (and its repairs) for one item and one candidate order."""

    item: Item
    shuffle: int
    order: list[str]  # candidate names in label order A, B, C...
    scores: list[int | None] | None = None  # in label order; None while missing (an entry: a non-score token)
    replies: list[str | None] = field(default_factory=list)  # raw reply of every try
    missing_reason: str | None = None  # "unparseable", "api: http 400", ... when scores is None
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    style: str = "ours"  # judge_style: the prompt's instructions (prompts.JUDGE_STYLES)
    reply_format: str = "first_line"  # or json_schema: scores as an enforced JSON object (REPLY_FORMATS)
    paper_tokens: list[str] | None = None  # judge_style paper: the N tokens read as scores, as given

    @property
    def reads_as_paper(self) -> bool:
        """The original's reading: the paper style with a plain-text reply."""
        return self.style == "paper" and self.reply_format == "first_line"

    @property
    def labels(self) -> list[str]:
        return prompts.judge_labels(len(self.order))

    def first_messages(self) -> list[dict[str, str]]:
        answers = [self.item.answers[name] or "" for name in self.order]
        return prompts.judge_messages(self.item.note, self.item.question, answers, style=self.style)

    def repair_messages(self, attempt: int, max_attempts: int) -> list[dict[str, str]]:
        """The first prompt, the unreadable reply, and a turn restating the format."""
        messages = self.first_messages()
        last = self.replies[-1] if self.replies else None
        if last and last.strip():
            messages.append({"role": "assistant", "content": last})
        messages.append(prompts.judge_repair_message(len(self.order), attempt, max_attempts))
        return messages

    def request_fields(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """``messages`` (and ``response_format``) of the engine Request in this judgement's reply format."""
        if self.reply_format == "first_line":
            return {"messages": messages}
        return {
            "messages": structured_messages(messages, self.labels),
            "response_format": score_schema(self.labels),
        }

    def read_scores(self, reply: str) -> list[int | None] | None:
        if self.reads_as_paper:  # the tokens are kept: a non-score token is reported as given
            self.paper_tokens = paper_score_tokens(reply, len(self.order))
            return None if self.paper_tokens is None else paper_scores(self.paper_tokens)
        if self.reply_format == "first_line":
            return parse_scores(reply, len(self.order))
        return parse_structured_scores(reply, self.labels)

    def scores_by_model(self) -> dict[str, int | None]:
        if self.scores is None:
            return dict.fromkeys(self.order)
        return dict(zip(self.order, self.scores))


def unique_names(folders: Sequence[AnswersFolder]) -> list[str]:
    """Candidate names: the model column, with the folder name added where two would clash."""
    names = [folder.model_name for folder in folders]
    counts = {name: names.count(name) for name in names}
    result = []
    for name, folder in zip(names, folders):
        result.append(f"{name} ({folder.path})" if counts[name] > 1 else name)
    if REFERENCE_NAME in result:
        raise ValueError(f"a candidate may not be named {REFERENCE_NAME!r}: it names the reference answers")
    return result


def collect_items(
    folders: Sequence[AnswersFolder], *, include_reference: bool = False
) -> tuple[list[Item], list[str], int]:
    """Items every folder answered, in the first folder's order; returns (items, names, dropped).

    Items missing from some folder are left out (and counted): comparing means over
    different item sets would compare the items, not the models. A row with an empty
    answer stays in; that model just has no answer to be judged on that item.
    """
    names = unique_names(folders)
    per_folder: list[dict[str, dict]] = []
    for folder in folders:
        rows: dict[str, dict] = {}
        for row in folder.dataset:
            key = row_key(row["note"], row["question"])
            rows.setdefault(key, row)  # a duplicated (note, question) is one item
        per_folder.append(rows)
    common = [key for key in per_folder[0] if all(key in rows for rows in per_folder[1:])]
    all_keys = set().union(*per_folder)
    items = []
    for key in common:
        first = per_folder[0][key]
        answers = {}
        for name, rows in zip(names, per_folder):
            text = rows[key].get("generated")
            answers[name] = text if isinstance(text, str) and text.strip() else None
        reference = first.get("answer")
        reference = reference if isinstance(reference, str) and reference.strip() else None
        if include_reference:
            answers[REFERENCE_NAME] = reference
        items.append(
            Item(
                key=key,
                note=first["note"],
                question=first["question"],
                task=first.get("task"),
                reference=reference,
                patient_id=first.get("patient_id"),
                answers=answers,
                source=first.get("source"),
            )
        )
    if include_reference:
        names = [*names, REFERENCE_NAME]
    return items, names, len(all_keys) - len(common)


def candidate_order(item: Item, shuffle: int, seed: int) -> list[str]:
    """The shuffled order of the candidates that answered, reproducible from (seed, item, shuffle)."""
    present = [name for name, answer in item.answers.items() if answer is not None]
    # A string seed is hashed with SHA-512 by `random`: stable across runs and platforms.
    random.Random(f"{seed}:{item.key}:{shuffle}").shuffle(present)
    return present


def plan_judgements(
    items: Sequence[Item],
    *,
    num_shuffles: int,
    seed: int,
    style: str = "ours",
    reply_format: str = "first_line",
) -> list[Judgement]:
    """One judgement per (item, shuffle) with at least one answer to grade."""
    plan = []
    for item in items:
        for shuffle in range(num_shuffles):
            order = candidate_order(item, shuffle, seed)
            if order:
                plan.append(
                    Judgement(item=item, shuffle=shuffle, order=order, style=style, reply_format=reply_format)
                )
    return plan


@dataclass
class JudgeRun:
    judgements: list[Judgement]
    rounds: list[dict]  # per round: sent, parsed, unreadable, failed, the endpoints that answered


def run_judge(engine, judgements: Sequence[Judgement], *, max_parse_attempts: int) -> JudgeRun:
    """Send every judgement, repair unreadable replies in rounds, and fill scores or reasons."""
    from asclepius.engine import Request, run_requests

    rounds = []
    pending = list(judgements)
    for attempt in range(1, max_parse_attempts + 1):
        if not pending:
            break
        retry: list[Judgement] = []
        counts = {"attempt": attempt, "sent": len(pending), "parsed": 0, "unreadable": 0, "failed": 0}

        def requests(batch=pending, attempt=attempt):
            for index, judgement in enumerate(batch):
                messages = (
                    judgement.first_messages()
                    if attempt == 1
                    else judgement.repair_messages(attempt, max_parse_attempts)
                )
                yield Request(metadata={"index": index}, **judgement.request_fields(messages))

        def on_result(result, batch=pending, retry=retry, counts=counts, attempt=attempt) -> None:
            judgement = batch[result.request.metadata["index"]]
            for name in ("prompt_tokens", "completion_tokens"):
                judgement.usage[name] += int(result.usage.get(name) or 0)
            judgement.replies.append(result.content)
            scores = judgement.read_scores(result.content) if result.content else None
            if scores is not None:  # a readable first line counts, even from a reply cut at max_tokens
                judgement.scores, judgement.missing_reason = scores, None
                counts["parsed"] += 1
            elif not result.ok and not result.content:
                # The engine already retried what could succeed; this one failed for good.
                judgement.missing_reason = f"api: {result.error}"
                counts["failed"] += 1
            else:
                judgement.missing_reason = "unparseable"
                counts["unreadable"] += 1
                if attempt < max_parse_attempts:
                    retry.append(judgement)

        summary = run_requests(engine, requests(), on_result, total=len(pending))
        counts["endpoints"] = list(summary.endpoints)  # who answered this round (results.json, the card)
        if engine.args.dry_run:
            counts["dry_run_summary"] = summary.format()
            rounds.append(counts)
            break
        logger.info(
            "judge round %d: %d sent, %d scored, %d unreadable, %d failed",
            attempt,
            counts["sent"],
            counts["parsed"],
            counts["unreadable"],
            counts["failed"],
        )
        rounds.append(counts)
        pending = retry
    for judgement in judgements:
        if judgement.scores is None and judgement.missing_reason is None:
            judgement.missing_reason = "not judged"  # dry run
    return JudgeRun(judgements=list(judgements), rounds=rounds)


def score_rows(judgements: Sequence[Judgement]) -> list[dict[str, Any]]:
    """Long format: one row per (item, shuffle, candidate), the score un-shuffled to its model."""
    rows = []
    for judgement in judgements:
        item = judgement.item
        for position, (label, name) in enumerate(zip(judgement.labels, judgement.order)):
            score = judgement.scores[position] if judgement.scores is not None else None
            token = judgement.paper_tokens[position] if judgement.paper_tokens is not None else None
            reason = judgement.missing_reason if judgement.scores is None else NON_NUMERIC
            rows.append(
                {
                    "item_id": item.key,
                    "task": item.task,
                    "source": item.source,
                    "shuffle": judgement.shuffle,
                    "model": name,
                    "label": label,
                    "position": position,
                    "num_candidates": len(judgement.order),
                    "score": score,
                    "paper_score": paper_score(score, read=judgement.scores is not None),
                    "paper_token": token,
                    "missing_reason": reason if score is None else None,
                }
            )
    return rows


def judgement_rows(judgements: Sequence[Judgement], *, seed: int) -> list[dict[str, Any]]:
    """One row per judge call: the order shown, the scores read, and every raw reply."""
    rows = []
    for judgement in judgements:
        item = judgement.item
        rows.append(
            {
                "item_id": item.key,
                "patient_id": None if item.patient_id is None else str(item.patient_id),
                "task": item.task,
                "source": item.source,
                "question": item.question,
                "shuffle": judgement.shuffle,
                "shuffle_seed": f"{seed}:{item.key}:{judgement.shuffle}",
                "candidates": list(judgement.order),
                "labels": judgement.labels,
                "scores": judgement.scores,
                "missing_reason": judgement.missing_reason,
                "paper_tokens": judgement.paper_tokens,
                "attempts": len(judgement.replies),
                "replies": [r if r is not None else "" for r in judgement.replies],
                "prompt_tokens": judgement.usage["prompt_tokens"],
                "completion_tokens": judgement.usage["completion_tokens"],
            }
        )
    return rows


# --- the paper's scoring rule, reported beside ours (judge_style paper) ---------------------
def judge_prompt_hash(style: str) -> str:
    """The version of the judge prompt a style sends (recorded with the results)."""
    return prompts.JUDGE_PAPER_PROMPT_HASH if style == "paper" else JUDGE_PROMPT_HASH


# The original recorded 0 for every model of an item whose judge reply held fewer tokens than
# candidates. Our statistics treat such items as missing instead; this column and these means
# let a user compare with the paper's numbers like for like.
PAPER_UNREADABLE_SCORE = 0


def paper_score(score: int | None, *, read: bool = False) -> int | None:
    """A judged candidate's score under the paper's rule: its score; 0 when the reply could not be
    read (``read`` False: too few tokens, or no reply); None for a token that is not a score in a
    reply that was read (the original kept the token; it has no number to average)."""
    if score is not None:
        return score
    return None if read else PAPER_UNREADABLE_SCORE


def paper_style_means(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Per model, the mean of ``paper_score`` over every judged (item, shuffle); how many were zeroed
    (too few tokens) and how many had a non-score token (left out of the mean)."""
    values: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        model = row["model"]
        count = counts.setdefault(model, {"judged": 0, "zeroed": 0, "non_numeric": 0})
        values.setdefault(model, [])
        count["judged"] += 1
        if row["paper_score"] is None:
            count["non_numeric"] += 1
            continue
        values[model].append(row["paper_score"])
        count["zeroed"] += row["score"] is None
    return {
        model: {"paper_mean": sum(scores) / len(scores) if scores else None, **counts[model]}
        for model, scores in values.items()
    }
