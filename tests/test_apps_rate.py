"""The rating app: a rater in a real browser (Chromium), the sheet it writes, and the import of that sheet."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from asclepius.apps.rate import RatingSheet, find_packet
from asclepius.evaluation import expert
from asclepius.evaluation.folders import with_answers, write_answers_folder
from asclepius.stage import UNKNOWN
from asclepius.tasks import TASKS
from asclepius.testing import browser
from asclepius.testing.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("secret-model-alpha", "secret-model-beta")  # must never reach the page
ITEMS = 3

# Everything the page reads over fetch (Gradio's event stream included), kept for the leak check.
TEE_FETCH = """
window.__received = [];
const originalFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await originalFetch(...args);
  try {
    const reader = response.clone().body.getReader();
    const decoder = new TextDecoder();
    (async () => { for (;;) { const {done, value} = await reader.read(); if (done) break;
                              window.__received.push(decoder.decode(value, {stream: true})); } })();
  } catch (error) {}
  return response;
};
"""


def run(script: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")


def answers_folder(root: Path, name: str) -> str:
    rows = [{"patient_id": k, "note": f"DISCHARGE SUMMARY {k}\nAdmitted with condition {k}.\n" + "Stable course.\n" * 25,
             "question": f"What was treated ({k})?", "answer": f"Condition {k}.", "task": TASKS[k % 3],
             "source": "synthetic"} for k in range(ITEMS)]  # fmt: skip
    provenance = {"model": name, "backend": "transformers", "prompt_style": "asclepius", "prompt_hash": "x",
                  "source": "demo", "split": "test"}  # fmt: skip
    generated = [
        f"Treated for condition {k}." if name.endswith("alpha") else "Not stated." for k in range(ITEMS)
    ]
    write_answers_folder(root / name, with_answers(Dataset.from_list(rows), name, generated), split="test",
                         provenance=provenance)  # fmt: skip
    return str(root / name)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Two models' answers and the judge's folder over them (it scores every answer 3)."""
    root = tmp_path_factory.mktemp("judged")
    inputs = [answers_folder(root, name) for name in MODELS]
    with OpenAIServer(responder=lambda body: "3 3\nok") as server, pytest.MonkeyPatch.context() as patch:
        run("judge.py", ["--inputs", *inputs, "--output_dir", str(root / "judge"), "--judge_base_url",
                         server.base_url, "--judge_model", "judge", "--bootstrap_samples", "20",
                         "--show_progress", "false"], patch)  # fmt: skip
    return inputs, root / "judge"


@pytest.fixture
def export(judged, tmp_path, monkeypatch):
    """One rater's packet of 3 items; returns the export folder, the judge's folder and the blinding key."""
    inputs, judge = judged
    out = tmp_path / "export"
    run("expert_eval.py", ["export", "--inputs", *inputs, "--output_dir", str(out), "--raters", "1",
                           "--items", str(ITEMS)], monkeypatch)  # fmt: skip
    key = json.loads((out / ".asclepius" / "expert_key.json").read_text())
    return out, judge, key


def import_ratings(sheet: Path, judge: Path, output: Path, monkeypatch, *extra: str) -> None:
    run("expert_eval.py", ["import", "--ratings", str(sheet), "--judgements", str(judge), "--output_dir",
                           str(output), "--bootstrap_samples", "20", *extra], monkeypatch)  # fmt: skip


def test_the_sheet_saves_each_item_replaces_edits_and_resumes(export):
    out, _, _ = export
    folder = find_packet(str(out), 1)
    assert find_packet(str(folder), None) == folder
    exported = [json.loads(line) for line in (folder / "ratings.jsonl").read_text().splitlines()]
    sheet = RatingSheet(folder)
    assert sheet.first_unrated() == 0 and sheet.notice == expert.notice_text(
        UNKNOWN
    )  # answers without a card
    sheet.save(0, {"A": (4, " fine "), "B": (2, "")})
    sheet.save(1, {"A": (1, ""), "B": (1, "")})
    sheet.save(0, {"A": (3, ""), "B": (2, "")})  # an edit replaces the item's records
    reopened = RatingSheet(folder)
    assert reopened.first_unrated() == 2 and reopened.rated_count() == 2
    assert reopened.scores(0) == {"A": (3, ""), "B": (2, "")}
    records = [json.loads(line) for line in (folder / "ratings.jsonl").read_text().splitlines()]
    assert len(records) == 2 * ITEMS and sum(r["score"] is not None for r in records) == 4
    assert [set(r) for r in records] == [set(r) for r in exported]  # a notice the export put on rows stays


def test_saving_keeps_the_exports_notice_on_every_record_and_the_import_reads_the_sheet_unchanged(
    export, tmp_path, monkeypatch
):
    out, judge, key = export
    folder = find_packet(str(out), 1)
    notice = expert.notice_text(UNKNOWN)  # the answers have no card: unknown, so restricted
    exported = [json.loads(line) for line in (folder / "ratings.jsonl").read_text().splitlines()]
    assert {r[expert.NOTICE_FIELD] for r in exported} == {notice}
    sheet = RatingSheet(folder)
    assert (
        sheet.notice == notice and "ratings.csv" not in sheet.rubric and "saved as you submit" in sheet.rubric
    )
    # A row deleted by hand comes back as the export wrote it, notice included.
    lines = (folder / "ratings.jsonl").read_text().splitlines()
    (folder / "ratings.jsonl").write_text("\n".join(lines[1:]) + "\n")
    sheet = RatingSheet(folder)
    for index in range(ITEMS):
        sheet.save(index, {"A": (4 - index, f"item {index}"), "B": (1, "")})
    records = [json.loads(line) for line in (folder / "ratings.jsonl").read_text().splitlines()]
    assert len(records) == len(exported) and all(set(r) == set(exported[0]) for r in records)
    assert {r[expert.NOTICE_FIELD] for r in records} == {notice}
    # A deleted sheet is rebuilt from the packet with the notice too.
    (folder / "ratings.jsonl").unlink()
    RatingSheet(folder).save(0, {"A": (2, ""), "B": (2, "")})
    rebuilt = [json.loads(line) for line in (folder / "ratings.jsonl").read_text().splitlines()]
    assert len(rebuilt) == len(exported) and {r[expert.NOTICE_FIELD] for r in rebuilt} == {notice}
    # The import reads what the app wrote, as it is.
    (folder / "ratings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    before = (folder / "ratings.jsonl").read_bytes()
    import_ratings(folder / "ratings.jsonl", judge, tmp_path / "result", monkeypatch)
    assert (folder / "ratings.jsonl").read_bytes() == before
    results = json.loads((tmp_path / "result" / "results.json").read_text())
    assert results["items"] == ITEMS and results["meta"]["unrated_items"] == 0


def test_an_older_packets_own_notice_and_csv_instructions_never_reach_the_page(export):
    out, _, _ = export
    folder = find_packet(str(out), 1)
    data = json.loads((folder / expert.PACKET_DATA_NAME).read_text())
    data["notice"] = f"RESTRICTED DATA (unknown: the card of {out}/secret-model-alpha says unknown)"
    data.pop(expert.NOTICE_OF)
    data["rubric"] = expert.RUBRIC  # what older packets carried: fill the CSV
    (folder / expert.PACKET_DATA_NAME).write_text(json.dumps(data))
    sheet = RatingSheet(folder)
    assert sheet.notice == expert.notice_text(UNKNOWN) and sheet.rubric == expert.APP_RUBRIC


def test_an_unfinished_sheet_names_its_first_unrated_item_or_imports_with_allow_incomplete(
    export, tmp_path, monkeypatch, capsys
):
    out, judge, _ = export
    folder = find_packet(str(out), 1)
    sheet = RatingSheet(folder)
    sheet.save(0, {"A": (4, ""), "B": (2, "")})
    sheet.save(2, {"A": (3, ""), "B": (3, "")})
    with pytest.raises(SystemExit) as exit_info:
        import_ratings(folder / "ratings.jsonl", judge, tmp_path / "refused", monkeypatch)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert (
        len(error) == 1 and "rater 1 has not rated item 2 (" in error[0] and "2 of 3 items rated" in error[0]
    )
    assert not (tmp_path / "refused" / "README.md").exists()
    import_ratings(
        folder / "ratings.jsonl", judge, tmp_path / "partial", monkeypatch, "--allow_incomplete", "true"
    )
    assert "1 of 3 sheeted items are not fully rated" in capsys.readouterr().out
    results = json.loads((tmp_path / "partial" / "results.json").read_text())
    assert results["items"] == 2 and results["meta"]["unrated_items"] == 1


def test_the_core_stages_do_not_import_gradio():
    # The command line and the packets' stage, in a fresh interpreter: gradio only loads when an app starts.
    code = "import sys, asclepius.cli, asclepius.evaluation.expert; print('gradio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "False"


@browser.needs_browser
def test_a_rater_scores_reloads_continues_and_edits_in_a_real_browser(export, tmp_path, monkeypatch, capsys):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a loaded machine (2 cores, parallel tests) is slow, not wrong

    out, judge, key = export
    sheet = out / "packets" / "rater_1" / "ratings.jsonl"
    seen: list[str] = []  # the page and every response body the browser got

    def record(page) -> None:
        seen.append(page.content())
        seen.extend(page.evaluate("window.__received"))

    def slot(page, n: int):
        return page.locator(f"#slot-{n}")

    def checked(page, n: int, score: int):
        expect(slot(page, n).locator("input[type=radio]").nth(score - 1)).to_be_checked()

    with browser.AppServer(["rate", str(out), "--rater", "1"], log=tmp_path / "rate.log") as server:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=browser.chromium_path(), args=["--no-sandbox"]
            )
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.add_init_script(TEE_FETCH)
            responses = []
            page.on("response", lambda response: responses.append(response))
            page.goto(server.url)
            expect(page.get_by_text("Item 1 of 3")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Rating rubric")).to_be_visible()
            expect(page.locator("#notice")).to_contain_text(
                "RESTRICTED DATA"
            )  # answers without a card: unknown
            browser.save_screenshot(page, tmp_path / "rate.png")
            # Item 1 with the mouse, a comment typed.
            slot(page, 0).get_by_text("4 Excellent").click()
            slot(page, 1).get_by_text("2 Poor").click()
            slot(page, 0).locator(".comment textarea, .comment input").fill("complete")
            page.locator("#save-next").click()
            expect(page.get_by_text("Item 2 of 3")).to_be_visible()
            # Item 2 with the keyboard: 3 for A, 1 for B, Enter saves.
            page.locator("#progress").click()
            page.keyboard.press("3")
            page.keyboard.press("1")
            checked(page, 0, 3)
            checked(page, 1, 1)
            page.keyboard.press("Enter")
            expect(page.get_by_text("Item 3 of 3")).to_be_visible()
            # Item 3 half-scored, then the page is reloaded: the app continues at item 3, unscored.
            page.keyboard.press("b")
            page.keyboard.press("2")
            checked(page, 1, 2)
            record(page)
            for response in responses:  # event streams never end: their bytes are in window.__received
                if "event-stream" not in response.headers.get("content-type", ""):
                    seen.append(response.text())
            page.reload()
            expect(page.get_by_text("Item 3 of 3")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("2 of 3 rated")).to_be_visible()
            expect(slot(page, 1).locator("input[type=radio]:checked")).to_have_count(0)
            page.locator("#progress").click()
            page.keyboard.press("b")
            page.keyboard.press("2")
            page.keyboard.press("4")  # A: the next unscored answer
            checked(page, 0, 4)
            page.keyboard.press("n")
            expect(page.get_by_text("All 3 items are rated")).to_be_visible()
            # Back to item 1: its scores are shown, B is changed with the mouse and saved again.
            page.locator("#previous").click()
            expect(page.get_by_text("Item 2 of 3")).to_be_visible()
            page.locator("#previous").click()
            expect(page.get_by_text("Item 1 of 3")).to_be_visible()
            checked(page, 0, 4)
            checked(page, 1, 2)
            slot(page, 1).get_by_text("3 Satisfactory").click()
            page.locator("#save-next").click()
            expect(page.get_by_text("Item 1 saved")).to_be_visible()
            record(page)
            browser.save_screenshot(page, tmp_path / "rate_edited.png", publish=False)
            chromium.close()

    expected = {1: {"A": 4, "B": 3}, 2: {"A": 3, "B": 1}, 3: {"A": 4, "B": 2}}
    records = [json.loads(line) for line in sheet.read_text().splitlines()]
    assert len(records) == 6
    assert {(r["item"], r["label"]): r["score"] for r in records} == {
        (item, label): score for item, scores in expected.items() for label, score in scores.items()
    }
    # The export's fields (and its restriction notice, kept on every row), nothing else.
    assert all(
        set(r) - {"notice"} == {"rater", "item", "item_id", "label", "score", "comment"} for r in records
    )
    assert [r["comment"] for r in records if r["item"] == 1] == ["complete", ""]

    page_text = "\n".join(seen)
    assert "Admitted with condition" in page_text  # the capture did see the items' data
    assert "saved as you submit" in page_text and "ratings.csv" not in page_text
    for secret in (*MODELS, str(out), str(tmp_path)):
        assert secret not in page_text

    # The sheet imports unchanged; the means are the unblinded scores.
    per_model: dict[str, list[int]] = {name: [] for name in MODELS}
    for number, entry in enumerate(key["entries"], start=1):
        for label, target in entry["labels"].items():
            per_model[target["model"]].append(expected[number][label])
    import_ratings(sheet, judge, tmp_path / "result", monkeypatch)
    results = json.loads((tmp_path / "result" / "results.json").read_text())
    for name, scores in per_model.items():
        assert results["models"][name]["human_mean"] == pytest.approx(sum(scores) / len(scores), abs=1e-4)
