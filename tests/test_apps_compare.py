"""The compare app: the tiny model answers a demo note in both panels of a real browser (Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asclepius.apps.compare import LAUNCH_OPTIONS, build_app, load_examples, load_generators
from asclepius.testing import browser

ROOT = Path(__file__).resolve().parents[1]
DEMO_NOTES = ROOT / "data" / "demo" / "synthetic_notes.jsonl"
MAX_NEW_TOKENS = 12


def test_demo_examples_are_distinct_notes_with_a_question():
    examples = load_examples(DEMO_NOTES)
    assert len(examples) == 6 and len({note for note, _ in examples}) == 6
    first = json.loads(DEMO_NOTES.read_text().splitlines()[0])
    assert examples[0] == [first["note"], first["question"]]
    assert load_examples(ROOT / "no-such-file.jsonl") == []


def test_the_space_folder_runs_the_same_app_with_the_pinned_gradio():
    import ast
    import configparser

    import yaml

    space = ROOT / "spaces" / "compare"
    front = yaml.safe_load((space / "README.md").read_text().split("---")[1])
    assert front["sdk"] == "gradio" and (space / front["app_file"]).is_file()
    extras = configparser.ConfigParser()
    extras.read(ROOT / "setup.cfg")
    pinned = next(
        line for line in extras["options.extras_require"]["app"].split() if line.startswith("gradio==")
    )
    assert pinned == f"gradio=={front['sdk_version']}" and pinned in (space / "requirements.txt").read_text()
    imports = [
        node
        for node in ast.walk(ast.parse((space / "app.py").read_text()))
        if isinstance(node, ast.ImportFrom)
    ]
    assert any(node.module == "asclepius.apps.compare" for node in imports)
    assert len(load_examples(space / "examples.jsonl")) == 6


def test_the_tiny_model_answers_in_both_panels(decisive_tiny_model_path, tmp_path):
    reason = browser.missing_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    note, question = load_examples(DEMO_NOTES)[0]
    [generator] = load_generators([str(decisive_tiny_model_path)], prompt_style="asclepius",
                                  max_new_tokens=MAX_NEW_TOKENS, device="cpu", dtype="auto")  # fmt: skip
    expected = generator.answer(note, question)  # the same prompt and decoding, not streamed
    assert expected
    # The app in this process, on the generator loaded above (loading it again would double the time).
    app = build_app(["tiny", "tiny again"], [generator, generator], load_examples(DEMO_NOTES))
    port = browser.free_port()
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **LAUNCH_OPTIONS
    )
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=browser.chromium_path(), args=["--no-sandbox"]
            )
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text(note[:40]).first.click()  # the first demo example fills the note and instruction
            expect(page.locator("#note textarea")).to_have_value(note)
            expect(page.locator("#question textarea")).to_have_value(question)
            page.locator("#ask").click()
            expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
            for panel in (0, 1):
                expect(page.locator(f"#answer-{panel} textarea")).to_have_value(expected)
            browser.save_screenshot(page, tmp_path / "compare.png")
            chromium.close()
    finally:
        app.close()
