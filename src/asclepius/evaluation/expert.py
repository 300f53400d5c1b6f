"""Clinician evaluation: blinded rating packets out, ratings in, human scores beside the judge's.

The paper validated its GPT-4 judge against medical professionals. Here, ``export`` draws
a sample of evaluation items stratified by task and source, and writes one packet per
rater: per item the note, the instruction and every candidate's answer, shuffled with a
recorded seed and labelled A, B, C... with no model name, plus a CSV and a JSONL to fill
with 1-4 scores and the rubric. The key that unblinds the labels stays in the folder's
working state. ``import`` validates the filled files (one-line error naming file, row and
field), unblinds them, and compares: mean human score per model with its bootstrap
interval beside the judge's on the same items, and agreement of each rater with the
judge and among raters (:func:`asclepius.evaluation.statistics.agreement`).

A candidate with no answer is shown as "(no answer)"; the judge's side counts it 1, as
the judge's report does.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from asclepius import prompts
from asclepius.errors import InputError
from asclepius.evaluation import statistics
from asclepius.evaluation.judging import SCORE_NAMES, Item
from asclepius.stage.files import WORK_DIR_NAME, atomic_write_text
from asclepius.stage.provenance import RESTRICTED, Provenance

KEY_NAME = "expert_key.json"
# What the rating app reads: the packet as data (the rubric, the items, a notice for restricted data).
PACKET_DATA_NAME = "packet.json"
RATING_FIELDS = ["rater", "item", "item_id", "label", "score", "comment"]
# Packets of restricted (or unknown) data say so at the top of packet.md and on every row of the
# ratings files (a `notice` column/key that the import ignores), wherever a file ends up.
NOTICE_FIELD = "notice"
NOTICE_OF = "notice_of"
NO_ANSWER = "(no answer)"
JUDGE = "judge"
# The rubric lives here only. Its scale is shared; how a score is recorded differs: raters without
# the app fill the ratings files (rubric.md), raters in the app submit each item (packet.json).
_RUBRIC_SCALE = """# Rating rubric

For each item, read the note and the instruction, work out your own answer from the note,
then score every candidate answer on its own (not against the others) from 1 to 4:

| score | name | meaning |
|---|---|---|
| 4 | Excellent | everything the instruction needs, from the note; or it rightly says the note cannot answer it |
| 3 | Satisfactory | correct, but leaves out something minor |
| 2 | Poor | correct as far as it goes, but leaves out something significant |
| 1 | Unacceptable | anything wrong or irrelevant, invented beyond the note, or a missed "the note does not say" |

An answer shown as "(no answer)" gets 1: the model did not complete the instruction.
"""
_RECORD_IN_FILES = """Fill the `score` column of your `ratings.csv` (or the `score` field of `ratings.jsonl`) with
an integer 1-4 for every row; `comment` is optional. Do not change the other columns.
"""
_RECORD_IN_APP = """Pick a score 1-4 for every answer of the item; a comment is optional. Your scores are
saved as you submit each item (**Save and next**): you can close the page and continue later where you left off.
"""
_BLINDING = "Candidates are shuffled per item and carry no model names: please do not try to guess them.\n"
RUBRIC = _RUBRIC_SCALE + _RECORD_IN_FILES + _BLINDING  # rubric.md and the export's card
APP_RUBRIC = _RUBRIC_SCALE + _RECORD_IN_APP + _BLINDING  # packet.json: what the rating app shows


@dataclass
class ExportArguments:
    inputs: list[str] | None = field(
        default=None, metadata={"help": "Answers folders written by scripts/generate.py.", "nargs": "+"}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder of the packets (required)."})
    raters: int = field(default=2, metadata={"help": "Number of raters (each rates every sampled item)."})
    items: int = field(default=20, metadata={"help": "Items to sample, stratified by task and source."})
    seed: int = field(
        default=0, metadata={"help": "Seed of the sample and of the candidate orders (recorded)."}
    )
    include_reference: bool = field(
        default=False, metadata={"help": "Add the evaluation set's reference answer as a blinded candidate."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Rewrite a finished export folder."})

    def __post_init__(self) -> None:
        for name in ("raters", "items"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")

    def check_required(self) -> None:
        for name in ("inputs", "output_dir"):
            if not getattr(self, name):
                raise InputError(f"--{name}", "required")


@dataclass
class ImportArguments:
    ratings: list[str] | None = field(
        default=None,
        metadata={"help": "Filled ratings.csv / ratings.jsonl files, one or more per rater.", "nargs": "+"},
    )
    judgements: str | None = field(
        default=None, metadata={"help": "The judge's folder (scripts/judge.py output)."}
    )
    packets: str | None = field(
        default=None,
        metadata={
            "help": "The export folder (default: found above the ratings files: it holds the blinding key)."
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder of the comparison (required)."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples of items."})
    bootstrap_seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    allow_incomplete: bool = field(
        default=False,
        metadata={
            "help": "Import the rated answers of an unfinished sheet (default: an unrated item is an error)."
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "Rewrite a finished folder."})

    def __post_init__(self) -> None:
        if self.bootstrap_samples < 1:
            raise ValueError(f"--bootstrap_samples must be >= 1, got {self.bootstrap_samples}")

    def check_required(self) -> None:
        for name in ("ratings", "judgements", "output_dir"):
            if not getattr(self, name):
                raise InputError(f"--{name}", "required")


# --- export -------------------------------------------------------------------------
def stratified_sample(items: Sequence[Item], count: int, seed: int) -> list[Item]:
    """``count`` items, taken in turn from each (task, source) stratum, each stratum shuffled by ``seed``.

    Equal allocation: a rare task is represented as well as a frequent one, which is what
    a per-task comparison with raters needs.
    """
    strata: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for item in items:
        strata[(str(item.task), str(item.source))].append(item)
    rng = random.Random(seed)
    queues = []
    for key in sorted(strata):
        members = list(strata[key])
        rng.shuffle(members)
        queues.append(members)
    chosen: list[Item] = []
    for layer in itertools.zip_longest(*queues):
        chosen.extend(item for item in layer if item is not None)
    return chosen[:count]


def blinded_order(item: Item, rater: int, seed: int) -> list[str]:
    """Every candidate (with or without an answer), shuffled per (seed, rater, item)."""
    names = list(item.answers)
    random.Random(f"expert:{seed}:{rater}:{item.key}").shuffle(names)
    return names


def build_packets(items: Sequence[Item], *, raters: int, seed: int) -> tuple[dict[int, list[dict]], dict]:
    """rater -> packet entries (no model names), and the key that unblinds them."""
    packets: dict[int, list[dict]] = {}
    key: dict[str, Any] = {"seed": seed, "raters": raters, "entries": []}
    for rater in range(1, raters + 1):
        entries = []
        for number, item in enumerate(items, start=1):
            order = blinded_order(item, rater, seed)
            labels = prompts.judge_labels(len(order))
            entries.append(
                {
                    "item": number,
                    "item_id": item.key,
                    "task": item.task,
                    "source": item.source,
                    "note": item.note,
                    "instruction": item.question,
                    "answers": {label: item.answers[name] or NO_ANSWER for label, name in zip(labels, order)},
                }
            )
            key["entries"].append(
                {
                    "rater": rater,
                    "item_id": item.key,
                    "task": item.task,
                    "source": item.source,
                    "labels": {
                        label: {"model": name, "answered": item.answers[name] is not None}
                        for label, name in zip(labels, order)
                    },  # fmt: skip
                    "shuffle_seed": f"expert:{seed}:{rater}:{item.key}",
                }
            )
        packets[rater] = entries
    return packets, key


def write_packets(
    output_dir: Path, packets: dict[int, list[dict]], key: dict, *, provenance: Provenance | None = None
) -> list[Path]:
    """Per rater: packet.md to read, ratings.csv and ratings.jsonl to fill, packet.json for the rating
    app; rubric.md; the key hidden. Restricted (or unknown) ``provenance``: the fixed notice in every
    file a rater gets, and its reason only in the key, which no rater gets."""
    notice = restricted_notice(provenance) if provenance is not None else None
    if provenance is not None:
        key = {**key, "provenance": {"status": provenance.status, "reason": provenance.reason,
                                     "license": provenance.license}}  # fmt: skip
    written = []
    atomic_write_text(output_dir / "rubric.md", RUBRIC)
    for rater, entries in packets.items():
        folder = output_dir / "packets" / f"rater_{rater}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [
            {
                "rater": rater,
                "item": e["item"],
                "item_id": e["item_id"],
                "label": label,
                "score": "",
                "comment": "",
            }
            for e in entries
            for label in e["answers"]
        ]
        if notice:
            rows = [{**row, NOTICE_FIELD: notice} for row in rows]
        with open(folder / "ratings.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=RATING_FIELDS + ([NOTICE_FIELD] if notice else []))
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_text(
            folder / "ratings.jsonl",
            "".join(json.dumps({**row, "score": None}, ensure_ascii=False) + "\n" for row in rows),
        )
        atomic_write_text(folder / "packet.md", render_packet(rater, entries, notice))
        packet_data = {"rater": rater, "rubric": APP_RUBRIC, "notice": notice, "items": entries}
        if notice:  # what the app rebuilds the same fixed text from (it never shows a packet's own text)
            packet_data[NOTICE_OF] = {"status": provenance.status, "license_name": license_name(provenance)}
        atomic_write_text(
            folder / PACKET_DATA_NAME, json.dumps(packet_data, ensure_ascii=False, indent=1) + "\n"
        )
        written.append(folder)
    atomic_write_text(output_dir / WORK_DIR_NAME / KEY_NAME, json.dumps(key, indent=1) + "\n")
    return written


def notice_text(status: str, license_name: str | None = None) -> str:
    """The fixed notice of restricted (or unknown) notes: chosen by status and licence name only.

    Never the provenance's reason: that names folders and, through them, models, and raters'
    files must not unblind the packet. A licence name that is not a plain identifier is left out.
    """
    licence = (
        f" under the licence {license_name}" if license_name and _PLAIN_NAME.fullmatch(license_name) else ""
    )
    source = (
        f"a restricted source{licence}"
        if status == RESTRICTED
        else f"a source not known to be public, so they are treated as restricted{licence}"
    )
    return (
        f"RESTRICTED DATA: these notes come from {source}. Only raters allowed under the data's use agreement "
        "may see them (PhysioNet credentialed access for MIMIC). Do not copy, photograph, share, upload or paste "
        "them anywhere, including online tools and AI services."
    )


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,79}")


def license_name(provenance: Provenance) -> str | None:
    """The licence a notice names: PhysioNet's for MIMIC, a declared one's id, none when unknown."""
    fields = provenance.card_license()
    name = fields.get("license_name") or fields.get("license")
    return None if name in (None, "other") else name


def restricted_notice(provenance: Provenance) -> str | None:
    """What a rater must know when the notes are restricted or of unknown provenance (None: public)."""
    if not provenance.restricted:
        return None
    return notice_text(provenance.status, license_name(provenance))


def render_packet(rater: int, entries: Sequence[dict], notice: str | None = None) -> str:
    lines = [f"# Rating packet, rater {rater}", ""]
    if notice:
        lines += [f"> **{notice}**", ""]
    lines += ["Score every answer 1-4 with the rubric (rubric.md).", ""]
    for e in entries:
        lines += [
            f"## Item {e['item']} (`{e['item_id']}`, task: {e['task']})",
            "",
            "### Note",
            "",
            e["note"],
            "",
        ]
        lines += ["### Instruction", "", e["instruction"], ""]
        for label, answer in e["answers"].items():
            lines += [f"### Answer {label}", "", answer, ""]
    return "\n".join(lines)


# --- import -------------------------------------------------------------------------
def find_key(ratings: Sequence[str], packets: str | None) -> Path:
    """The blinding key: in ``packets``, else in a folder above the first ratings file."""
    candidates = [Path(packets)] if packets else list(Path(ratings[0]).resolve().parents)[:4]
    for folder in candidates:
        path = folder / WORK_DIR_NAME / KEY_NAME
        if path.is_file():
            return path
    where = packets or ratings[0]
    raise InputError(where, f"no blinding key ({WORK_DIR_NAME}/{KEY_NAME}); pass --packets EXPORT_DIR")


def read_ratings(paths: Sequence[str], key: dict, *, allow_incomplete: bool = False) -> pd.DataFrame:
    """Every rating, validated and unblinded: rater, item_id, task, source, model, answered, score.

    An unrated answer (empty score, or its row missing) is an error naming the first such
    item, unless ``allow_incomplete``: then the rated answers are kept and
    ``frame.attrs["unrated_items"]`` / ``["items"]`` count what was left out and what was sheeted.
    """
    entries = {(e["rater"], e["item_id"]): e for e in key["entries"]}
    numbers: dict[tuple[int, str], int] = {}  # (rater, item_id) -> the item's number in that rater's packet
    per_rater: dict[int, int] = defaultdict(int)
    for e in key["entries"]:
        per_rater[e["rater"]] += 1
        numbers[(e["rater"], e["item_id"])] = per_rater[e["rater"]]
    seen: dict[tuple[int, str, str], str] = {}
    unrated: list[tuple[int, str, str, str, int | None]] = []  # rater, item_id, label, path, row
    rows = []
    for path in paths:
        for row_number, record in _records(path):
            for name in ("rater", "item_id", "label"):
                if record.get(name) in (None, ""):
                    raise InputError(path, "missing value", row=row_number, field=name)
            rater = _integer(path, record["rater"], row_number, "rater")
            entry = entries.get((rater, str(record["item_id"]).strip()))
            if entry is None:
                raise InputError(
                    path,
                    f"no item {record['item_id']!r} in rater {rater}'s packet",
                    row=row_number,
                    field="item_id",
                )
            label = str(record["label"]).strip()
            if label not in entry["labels"]:
                raise InputError(
                    path,
                    f"no answer {label!r} in this item (labels {sorted(entry['labels'])})",
                    row=row_number,
                    field="label",
                )
            unit = (rater, entry["item_id"], label)
            if unit in seen:
                raise InputError(
                    path,
                    f"answer {label} of this item is rated twice (also in {seen[unit]})",
                    row=row_number,
                    field="label",
                )
            seen[unit] = f"{path} row {row_number}"
            score = record.get("score")
            if score is None or str(score).strip() == "":
                unrated.append((*unit, path, row_number))
                continue
            score = _integer(path, score, row_number, "score")
            if score not in statistics.SCORES:
                raise InputError(path, f"score {score} out of range 1-4", row=row_number, field="score")
            target = entry["labels"][label]
            rows.append({"rater": f"rater_{rater}", "item_id": entry["item_id"], "task": entry["task"],
                         "source": entry["source"], "model": target["model"], "answered": target["answered"],
                         "score": score})  # fmt: skip
    raters = {rater for rater, _, _ in seen}
    for entry in key["entries"]:
        if entry["rater"] in raters:
            for label in entry["labels"]:
                if (entry["rater"], entry["item_id"], label) not in seen:
                    unrated.append((entry["rater"], entry["item_id"], label, paths[0], None))
    sheeted = {(rater, item_id) for rater, item_id, _ in seen} | {(u[0], u[1]) for u in unrated}
    incomplete = {(rater, item_id) for rater, item_id, *_ in unrated}
    if unrated and not allow_incomplete:
        rater, item_id, label, path, row = min(unrated, key=lambda u: (u[0], numbers[(u[0], u[1])]))
        rated = len({unit for unit in sheeted if unit[0] == rater} - incomplete)
        total = per_rater[rater]
        raise InputError(
            path,
            f"missing score: rater {rater} has not rated item {numbers[(rater, item_id)]} ({item_id}, answer "
            f"{label}); {rated} of {total} items rated. Finish it, or pass --allow_incomplete",
            row=row,
            field="score",
        )
    if not rows:
        raise InputError(paths[0], "no ratings")
    frame = pd.DataFrame(rows)
    frame.attrs.update(unrated_items=len(incomplete), items=len(sheeted))
    return frame


def _records(path: str):
    file = Path(path)
    if not file.is_file():
        raise InputError(path, "no such file")
    if file.suffix.lower() == ".jsonl":
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise InputError(path, f"invalid JSON ({error.msg})", row=number) from None
                    if not isinstance(record, dict):
                        raise InputError(path, "not a JSON object", row=number)
                    yield number, record
    elif file.suffix.lower() == ".csv":
        with open(file, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for name in ("rater", "item_id", "label", "score"):
                if name not in (reader.fieldnames or []):
                    raise InputError(path, f"missing column; the header has {reader.fieldnames}", field=name)
            for number, record in enumerate(reader, start=1):
                yield number, record
    else:
        raise InputError(path, "expected a .csv or .jsonl ratings file")


def _integer(path: str, value: Any, row: int, name: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InputError(path, f"expected an integer, got {str(value)[:20]!r}", row=row, field=name) from None
    if not number.is_integer():
        raise InputError(path, f"expected an integer, got {value!r}", row=row, field=name)
    return int(number)


def judge_scores(scores: pd.DataFrame, units: pd.DataFrame) -> pd.Series:
    """The judge's integer score per rated (item_id, model): its first shuffle's readable score
    (else the rounded mean over shuffles); 1 where the candidate gave no answer; NaN if missing."""
    valid = scores.dropna(subset=["score"]).sort_values("shuffle")
    first = valid.groupby(["item_id", "model"])["score"].first()
    result = []
    for item_id, model, answered in units[["item_id", "model", "answered"]].itertuples(index=False):
        if not answered:
            result.append(float(statistics.NON_ANSWER_SCORE))
        else:
            result.append(float(first.get((item_id, model), float("nan"))))
    return pd.Series(result, index=units.index)


def compare(ratings: pd.DataFrame, judge: pd.DataFrame, *, samples: int, seed: int) -> dict[str, Any]:
    """Human means beside the judge's per model, and agreement rater-judge and among raters."""
    # One row per rated answer: item, model and whether it had an answer identify it.
    wide = ratings.pivot_table(index=["item_id", "model", "answered"], columns="rater",
                               values="score", aggfunc="first", dropna=False).reset_index()  # fmt: skip
    wide = wide.dropna(subset=[c for c in wide.columns if str(c).startswith("rater_")], how="all")
    raters = sorted(c for c in wide.columns if str(c).startswith("rater_"))
    wide[JUDGE] = judge_scores(judge, wide)
    wide["human_mean"] = wide[raters].mean(axis=1)
    models = list(dict.fromkeys(ratings["model"]))
    means = {}
    for model in models:
        part = wide[wide["model"] == model]
        human = statistics.bootstrap_ci(part["human_mean"].tolist(), samples=samples, seed=seed)
        judged = statistics.bootstrap_ci(part[JUDGE].dropna().tolist(), samples=samples, seed=seed)
        means[model] = {
            "human_mean": statistics._num(human[0]),
            "human_ci95": [statistics._num(human[1]), statistics._num(human[2])],
            "judge_mean": statistics._num(judged[0]),
            "judge_ci95": [statistics._num(judged[1]), statistics._num(judged[2])],
            "items": int(len(part)),
            "judge_missing": int(part[JUDGE].isna().sum()),
        }
    pairs = [(r, JUDGE) for r in raters] + list(itertools.combinations(raters, 2))
    agreement = []
    for a, b in pairs:
        row = {"pair": f"{a} vs {b}"}
        for name in ("kappa", "alpha", "spearman"):
            row[name] = statistics.agreement(wide, [a, b], name, samples=samples, seed=seed)
        agreement.append(row)
    groups = {}
    if len(raters) > 1:
        groups["all raters"] = statistics.agreement(wide, raters, "alpha", samples=samples, seed=seed)
        groups["all raters + judge"] = statistics.agreement(
            wide, [*raters, JUDGE], "alpha", samples=samples, seed=seed
        )
    return {
        "raters": raters,
        "models": means,
        "agreement": agreement,
        "alpha_groups": groups,
        "units": int(len(wide)),
        "items": int(wide["item_id"].nunique()),
        "bootstrap": {"samples": samples, "seed": seed, "unit": "item", "confidence": 0.95},
    }


def render_markdown(results: dict[str, Any]) -> str:
    fmt = _fmt
    lines = [
        "## Human ratings beside the judge",
        "",
        f"{results['items']} items, {results['units']} rated answers, raters: {', '.join(results['raters'])}. "
        "Scores 1-4 ("
        + ", ".join(f"{k} {v}" for k, v in SCORE_NAMES.items())
        + "). Intervals: 95% bootstrap "
        f"over items ({results['bootstrap']['samples']} resamples, seed {results['bootstrap']['seed']}).",
        "",
        "| model | human mean | 95% CI | judge mean | 95% CI | items |",
        "|---|---|---|---|---|---|",
    ]
    for model, m in results["models"].items():
        lines.append(
            f"| {model} | {fmt(m['human_mean'])} | {fmt(m['human_ci95'][0])} - {fmt(m['human_ci95'][1])} | "
            f"{fmt(m['judge_mean'])} | {fmt(m['judge_ci95'][0])} - {fmt(m['judge_ci95'][1])} | {m['items']} |"
        )
    lines += [
        "",
        "### Agreement",
        "",
        "Quadratic-weighted Cohen's kappa (scikit-learn), ordinal Krippendorff's alpha (`krippendorff`) and "
        "Spearman's rho (SciPy) over the rated answers; 1 is perfect agreement, 0 chance level. The judge's score "
        "of an answer is its first shuffle's; a candidate without an answer counts 1.",
        "",
        "| pair | kappa (95% CI) | alpha (95% CI) | Spearman (95% CI) | answers |",
        "|---|---|---|---|---|",
    ]
    for row in results["agreement"]:
        cells = [f"{fmt(row[n]['value'])} ({fmt(row[n]['ci95'][0])} - {fmt(row[n]['ci95'][1])})"
                 for n in ("kappa", "alpha", "spearman")]  # fmt: skip
        lines.append(f"| {row['pair']} | " + " | ".join(cells) + f" | {row['kappa']['n_units']} |")
    for name, value in results["alpha_groups"].items():
        lines.append(
            f"\nKrippendorff's alpha, {name}: {fmt(value['value'])} ({fmt(value['ci95'][0])} - {fmt(value['ci95'][1])})."
        )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
