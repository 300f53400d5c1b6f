"""Clinician evaluation: blinded packets out, scripted ratings in, agreement with the judge (test server)."""

from __future__ import annotations

import csv
import json
import re
import runpy
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from asclepius.evaluation import expert
from asclepius.evaluation.folders import with_answers, write_answers_folder
from asclepius.stage.provenance import MIMIC_LICENSE_NAME, PUBLIC, RESTRICTED, UNKNOWN, Provenance
from asclepius.tasks import TASKS
from asclepius.testing.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
ANSWER = re.compile(r"\[Answer ([A-Z]) Begin\]\n(.*?)\n\[Answer \1 End\]", re.S)
NUM_ITEMS = 12


def scorer(body: dict) -> str:
    """The judge: 4 for a GOOD answer, 2 for any other."""
    first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return (
        " ".join("4" if text.startswith("GOOD") else "2" for _, text in ANSWER.findall(first_user)) + "\nok"
    )


def answers(
    root: Path,
    name: str,
    prefix: str,
    *,
    empty: set[int] = frozenset(),
    with_source: bool = True,
    origin: Provenance | None = None,
) -> str:
    rows = [{"patient_id": k, "note": f"Note {k}: pt treated for condition {k}.", "question": f"What was treated ({k})?",
             "answer": f"Condition {k}.", "task": TASKS[k % 3], "source": "demo-real" if k % 2 else "synthetic"}
            for k in range(NUM_ITEMS)]  # fmt: skip
    if not with_source:
        rows = [{key: value for key, value in row.items() if key != "source"} for row in rows]
    generated = ["" if k in empty else f"{prefix} answer {k}" for k in range(NUM_ITEMS)]
    provenance = {"model": name, "backend": "transformers", "prompt_style": "asclepius", "prompt_hash": "x",
                  "source": "demo", "split": "test"}  # fmt: skip
    write_answers_folder(root / name, with_answers(Dataset.from_list(rows), name, generated), split="test",
                         provenance=provenance, origin=origin)  # fmt: skip
    return str(root / name)


def run(script: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two answers folders (one with 2 empty answers) and the judge's folder over them."""
    root = tmp_path_factory.mktemp("expert")
    inputs = [answers(root, "good", "GOOD"), answers(root, "poor", "POOR", empty={3, 8})]
    judge_dir = root / "judge"
    with OpenAIServer(responder=scorer) as server, pytest.MonkeyPatch.context() as patch:
        run("judge.py", ["--inputs", *inputs, "--output_dir", str(judge_dir), "--judge_base_url", server.base_url,
                         "--judge_model", "judge", "--bootstrap_samples", "50", "--show_progress", "false"], patch)  # fmt: skip
    return root, inputs, judge_dir


def test_the_judge_report_counts_non_answers_and_breaks_down_by_source(evaluated):
    _, _, judge_dir = evaluated
    results = json.loads((judge_dir / "results.json").read_text())
    poor = results["models"]["poor"]
    assert poor["mean_score"] == pytest.approx(
        22 / 12, abs=1e-4
    )  # 10 answers judged 2, 2 non-answers count 1
    assert poor["mean_score_answered"] == 2.0 and poor["answer_rate"] == pytest.approx(10 / 12, abs=1e-4)
    assert results["win_rates"]["good"]["poor"]["wins"] == 12  # non-answers lose too
    assert set(results["by_source"]) == {"demo-real", "synthetic"}
    assert results["by_source"]["demo-real"]["models"]["good"]["n_items"] == 6
    report = (judge_dir / "report.md").read_text()
    assert "### Source `synthetic`" in report and "#### Source `demo-real`: score distribution" in report


def fill(packets: Path, rule) -> list[Path]:
    """Scripted raters: score every row of every ratings.csv with ``rule(rater, model, answered)``."""
    key = json.loads((packets / ".asclepius" / expert.KEY_NAME).read_text())
    truth = {(e["rater"], e["item_id"], label): t for e in key["entries"] for label, t in e["labels"].items()}
    files = []
    for path in sorted(packets.glob("packets/rater_*/ratings.csv")):
        rows = list(csv.DictReader(path.open()))
        for row in rows:
            target = truth[(int(row["rater"]), row["item_id"], row["label"])]
            row["score"] = rule(int(row["rater"]), target["model"], target["answered"])
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))  # the export's columns (notice too)
            writer.writeheader()
            writer.writerows(rows)
        files.append(path)
    return files


def test_export_is_blinded_stratified_and_reproducible(evaluated, tmp_path, monkeypatch):
    _, inputs, _ = evaluated
    out = tmp_path / "packets"
    run("expert_eval.py", ["export", "--inputs", *inputs, "--output_dir", str(out), "--raters", "2", "--items", "6"],
        monkeypatch)  # fmt: skip
    key = json.loads((out / ".asclepius" / expert.KEY_NAME).read_text())
    assert key["seed"] == 0 and len(key["entries"]) == 2 * 6 and (out / "rubric.md").exists()
    # Stratified: 3 tasks x 2 sources = 6 strata, one item from each.
    sampled = {(e["task"], e["source"]) for e in key["entries"] if e["rater"] == 1}
    assert len(sampled) == 6
    for rater in (1, 2):
        folder = out / "packets" / f"rater_{rater}"
        text = (folder / "packet.md").read_text() + (folder / "ratings.csv").read_text()
        assert "good" not in text.lower() or "GOOD answer" in text  # answers shown, model names never
        assert "poor" not in text.replace("POOR answer", "")
        rows = list(csv.DictReader((folder / "ratings.csv").open()))
        assert (
            len(rows) == 12
            and {r["label"] for r in rows} == {"A", "B"}
            and all(r["score"] == "" for r in rows)
        )
        assert len((folder / "ratings.jsonl").read_text().splitlines()) == 12
    assert "(no answer)" in (out / "packets" / "rater_1" / "packet.md").read_text() or all(
        all(t["answered"] for t in e["labels"].values()) for e in key["entries"]
    )
    again = tmp_path / "again"
    run("expert_eval.py", ["export", "--inputs", *inputs, "--output_dir", str(again), "--raters", "2", "--items", "6"],
        monkeypatch)  # fmt: skip
    assert json.loads((again / ".asclepius" / expert.KEY_NAME).read_text())["entries"] == key["entries"]
    assert (out / "README.md").exists()


def test_import_unblinds_and_measures_agreement(evaluated, tmp_path, monkeypatch, capsys):
    _, inputs, judge_dir = evaluated
    out = tmp_path / "packets"
    run("expert_eval.py", ["export", "--inputs", *inputs, "--output_dir", str(out), "--raters", "2",
                           "--items", str(NUM_ITEMS)], monkeypatch)  # fmt: skip

    # Rater 1 scores as the judge does; rater 2 one point lower on the good model.
    def rule(rater, model, answered):
        if not answered:
            return 1
        return 4 - (rater == 2) if model == "good" else 2

    files = fill(out, rule)
    result = tmp_path / "result"
    run("expert_eval.py", ["import", "--ratings", *map(str, files), "--judgements", str(judge_dir),
                           "--output_dir", str(result), "--bootstrap_samples", "200"], monkeypatch)  # fmt: skip
    results = json.loads((result / "results.json").read_text())
    good, poor = results["models"]["good"], results["models"]["poor"]
    assert good["human_mean"] == 3.5 and good["judge_mean"] == 4.0
    # Non-answers count 1 on both sides: (10 * 2 + 2 * 1) / 12.
    assert poor["human_mean"] == pytest.approx(22 / 12, abs=1e-4) and poor["judge_mean"] == pytest.approx(
        22 / 12, abs=1e-4
    )
    rows = {row["pair"]: row for row in results["agreement"]}
    assert (
        rows["rater_1 vs judge"]["kappa"]["value"] == 1.0
        and rows["rater_1 vs judge"]["alpha"]["value"] == 1.0
    )
    assert rows["rater_1 vs judge"]["spearman"]["value"] == 1.0
    assert (
        0 < rows["rater_2 vs judge"]["kappa"]["value"] < 1.0
        and rows["rater_1 vs rater_2"]["kappa"]["n_units"] == 24
    )
    for row in rows.values():
        for name in ("kappa", "alpha", "spearman"):
            low, high = row[name]["ci95"]
            assert low <= row[name]["value"] <= high
    report = (result / "report.md").read_text()
    assert "| rater_1 vs judge | 1.000 (1.000 - 1.000)" in report and "all raters + judge" in report
    assert (result / "README.md").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda row: row.update(score=""), "row 3: field 'score': missing score"),
        (lambda row: row.update(score="5"), "row 3: field 'score': score 5 out of range 1-4"),
        (lambda row: row.update(score="good"), "row 3: field 'score': expected an integer"),
        (lambda row: row.update(label="Z"), "row 3: field 'label': no answer 'Z'"),
    ],
)
def test_bad_ratings_are_one_line_errors(evaluated, tmp_path, monkeypatch, capsys, edit, message):
    _, inputs, judge_dir = evaluated
    out = tmp_path / "packets"
    run("expert_eval.py", ["export", "--inputs", *inputs, "--output_dir", str(out), "--raters", "1", "--items", "3"],
        monkeypatch)  # fmt: skip
    [path] = fill(out, lambda rater, model, answered: 3)
    rows = list(csv.DictReader(path.open()))
    edit(rows[2])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(SystemExit) as exit_info:
        run("expert_eval.py", ["import", "--ratings", str(path), "--judgements", str(judge_dir),
                               "--output_dir", str(tmp_path / "result")], monkeypatch)  # fmt: skip
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {path}: ") and message in error
    assert not (tmp_path / "result" / "README.md").exists()


def test_answers_without_a_source_are_rated_too(tmp_path, monkeypatch):
    inputs = [
        answers(tmp_path, "good", "GOOD", with_source=False),
        answers(tmp_path, "poor", "POOR", with_source=False),
    ]
    judge_dir = tmp_path / "judge"
    with OpenAIServer(responder=scorer) as server:
        run("judge.py", ["--inputs", *inputs, "--output_dir", str(judge_dir), "--judge_base_url", server.base_url,
                         "--judge_model", "judge", "--bootstrap_samples", "50", "--show_progress", "false"], monkeypatch)  # fmt: skip
    assert "by_source" not in json.loads((judge_dir / "results.json").read_text())
    out = tmp_path / "packets"
    run("expert_eval.py", ["export", "--inputs", *inputs, "--output_dir", str(out), "--raters", "1", "--items", "3"],
        monkeypatch)  # fmt: skip
    files = fill(out, lambda rater, model, answered: 4 if model == "good" else 2)
    result = tmp_path / "result"
    run("expert_eval.py", ["import", "--ratings", *map(str, files), "--judgements", str(judge_dir),
                           "--output_dir", str(result), "--bootstrap_samples", "50"], monkeypatch)  # fmt: skip
    compared = json.loads((result / "results.json").read_text())
    assert compared["units"] == 6 and compared["agreement"][0]["kappa"]["value"] == 1.0


@pytest.mark.parametrize("status", [RESTRICTED, UNKNOWN])
def test_restricted_packets_say_so_in_one_fixed_text_that_names_no_folder_and_no_model(
    tmp_path, monkeypatch, status
):
    # Answers whose provenance explains itself with a folder path and a model's folder name.
    private = tmp_path / "private-cards"
    names = ("secret-model-alpha", "secret-model-beta")
    origin = Provenance(
        status, f"the card of {private}/secret-model-alpha says {status}", str(private / names[0])
    )
    inputs = []
    for name, prefix in zip(names, ("GOOD", "POOR")):
        answers(tmp_path, name, prefix, origin=origin)
        inputs.append(str(tmp_path / name))
    out = tmp_path / "export"
    run("expert_eval.py", ["export", "--inputs", *inputs, "--output_dir", str(out), "--raters", "2", "--items", "4"],
        monkeypatch)  # fmt: skip
    notice = expert.notice_text(status, expert.license_name(origin))
    assert notice.startswith("RESTRICTED DATA")
    files = [path for path in (out / "packets").rglob("*") if path.is_file()] + [out / "rubric.md"]
    assert len(files) == 2 * 4 + 1  # packet.md, packet.json, ratings.csv, ratings.jsonl per rater
    for path in files:
        text = path.read_text(encoding="utf-8")
        for secret in (str(tmp_path), "private-cards", "secret-model", "says " + status):
            assert secret not in text, (path.name, secret)
    for rater in (1, 2):
        folder = out / "packets" / f"rater_{rater}"
        assert f"> **{notice}**" in (folder / "packet.md").read_text().split("## Item")[0]
        rows = list(csv.DictReader((folder / "ratings.csv").open(encoding="utf-8")))
        records = [json.loads(line) for line in (folder / "ratings.jsonl").read_text().splitlines()]
        assert rows and records and {r[expert.NOTICE_FIELD] for r in rows + records} == {notice}
        assert json.loads((folder / expert.PACKET_DATA_NAME).read_text())["notice"] == notice
    # The reason stays with the blinding key, which no rater gets.
    key = json.loads((out / ".asclepius" / expert.KEY_NAME).read_text())
    reason = key["provenance"]["reason"]  # what the notice used to quote: a folder, hence a model
    assert key["provenance"]["status"] == status and str(tmp_path) in reason and "secret-model" in reason


def test_the_notice_depends_only_on_status_and_licence():
    physionet = expert.restricted_notice(
        Provenance(RESTRICTED, "NOTEEVENTS.csv at /data/mimic", "/data/mimic")
    )
    assert physionet == expert.notice_text(RESTRICTED, MIMIC_LICENSE_NAME) and MIMIC_LICENSE_NAME in physionet
    unknown = expert.restricted_notice(
        Provenance(UNKNOWN, "no card at /models/secret-model-alpha", "/models/x")
    )
    assert unknown == expert.notice_text(UNKNOWN) and "not known to be public" in unknown
    assert expert.restricted_notice(Provenance(PUBLIC, "a public card", "/models/x")) is None
    assert "/tmp" not in expert.notice_text(RESTRICTED, "/tmp/secret-model-alpha/LICENSE")  # not a licence id


def test_the_rubric_of_the_app_says_scores_are_saved_and_the_files_rubric_says_which_column():
    assert "ratings.csv" in expert.RUBRIC and "ratings.csv" not in expert.APP_RUBRIC
    assert "saved" in expert.APP_RUBRIC and "saved" not in expert.RUBRIC
    scale = expert.RUBRIC.split("An answer shown as")[0]
    assert expert.APP_RUBRIC.startswith(scale) and "| 4 | Excellent |" in scale
