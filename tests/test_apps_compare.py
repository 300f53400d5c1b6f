"""The compare app: the tiny model answers a demo note in both panels of a real browser (Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asclepius.apps import LAUNCH_OPTIONS
from asclepius.apps.compare import build_app, endpoint_judge, load_examples, load_generators
from asclepius.errors import InputError
from asclepius.testing import browser
from asclepius.testing.openai_server import OpenAIServer

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


def test_a_judge_endpoint_that_may_not_receive_notes_is_refused_before_anything_loads():
    with pytest.raises(InputError, match="may not be sent"):
        endpoint_judge("http://203.0.113.5/v1", "judge")  # a public address, not allowed


@browser.needs_browser
def test_the_tiny_model_answers_in_both_panels(decisive_tiny_model_path, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a loaded machine (2 cores, parallel tests) is slow, not wrong

    note, question = load_examples(DEMO_NOTES)[0]
    [generator] = load_generators([str(decisive_tiny_model_path)], prompt_style="asclepius",
                                  max_new_tokens=MAX_NEW_TOKENS, device="cpu", dtype="auto")  # fmt: skip
    expected = generator.answer(note, question)  # the same prompt and decoding, not streamed
    assert expected
    judged = []  # what the judge was sent: the note and both answers must reach it

    def judge_reply(body: dict) -> str:
        judged.append(body["messages"][-1]["content"])
        return "4 2\nThe first is complete."

    # The app in this process, on the generator loaded above (loading it again would double the time).
    with OpenAIServer(responder=judge_reply) as server, sync_playwright() as playwright:
        judge = endpoint_judge(server.base_url, "judge")
        app = build_app(["tiny", "tiny again"], [generator, generator], load_examples(DEMO_NOTES), judge)
        port = browser.free_port()
        app.launch(
            server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **LAUNCH_OPTIONS
        )
        try:
            chromium = playwright.chromium.launch(
                executable_path=browser.chromium_path(), args=["--no-sandbox"]
            )
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text(note[:40]).first.click()  # the first demo example fills the note and instruction
            expect(page.locator("#note textarea")).to_have_value(note)
            expect(page.locator("#question textarea")).to_have_value(question)
            page.locator("#ask").click()
            expect(page.locator("#status")).to_contain_text("Judge (1-4)", timeout=60_000)
            expect(page.locator("#status")).to_contain_text("tiny: 4 Excellent, tiny again: 2 Poor")
            for panel in (0, 1):
                expect(page.locator(f"#answer-{panel} textarea")).to_have_value(expected)
            browser.save_screenshot(page, tmp_path / "compare.png")
            chromium.close()
        finally:
            app.close()
    assert len(judged) == 1 and note.strip()[:200] in judged[0] and judged[0].count(expected) == 2
