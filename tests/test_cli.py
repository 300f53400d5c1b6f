"""`asclepius chat` answers questions about a pasted or given note; `asclepius prompt` shows the prompt."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from asclepius import prompts
from asclepius.cli import chat_loop, main
from asclepius.evaluation.generation import Decoding, LocalGenerator

NOTE_LINES = ["Reason for admission: fall, L hip fx.", "ORIF day 2. Discharged to rehab."]


def fake_answer(note: str, question: str) -> str:
    return f"<{len(note.splitlines())} lines | {question}>"


def test_chat_loop_reads_a_pasted_note_then_questions_until_end_of_input():
    stdin = io.StringIO("\n" + "\n".join(NOTE_LINES) + "\n\nWhat fracture?\n\n  \nWhere to?\n")
    out, err = io.StringIO(), io.StringIO()
    assert chat_loop(fake_answer, None, stdin, out, err, None) == 2
    assert out.getvalue() == "<2 lines | What fracture?>\n\n<2 lines | Where to?>\n\n"
    assert "Paste the discharge summary" in err.getvalue()


def test_chat_loop_new_note_quit_and_one_shot_questions():
    stdin = io.StringIO("First q\n/note\nA new one-line note.\n\nSecond q\n/quit\nnever asked\n")
    out = io.StringIO()
    assert chat_loop(fake_answer, "given\nnote\nhere", stdin, out, io.StringIO(), None) == 2
    assert out.getvalue() == "<3 lines | First q>\n\n<1 lines | Second q>\n\n"
    out = io.StringIO()
    assert chat_loop(fake_answer, "n", io.StringIO(), out, io.StringIO(), ["a?", "b?"]) == 2
    assert out.getvalue() == "<1 lines | a?>\n<1 lines | b?>\n"
    assert chat_loop(fake_answer, None, io.StringIO("\n\n"), io.StringIO(), io.StringIO(), None) == 0


def test_prompt_command_prints_the_published_prompt(tmp_path, capsys):
    note = tmp_path / "note.txt"
    note.write_text("\n".join(NOTE_LINES) + "\n")
    assert main(["prompt", "--note_file", str(note), "--question", "What fracture?"]) == 0
    assert capsys.readouterr().out == prompts.render_inference_prompt("\n".join(NOTE_LINES), "What fracture?")


def test_chat_command_answers_piped_questions_like_the_library(decisive_tiny_model_path):
    questions = ["What fracture?", "Where was the patient discharged to?"]
    stdin = "\n".join(NOTE_LINES) + "\n\n" + "\n".join(questions) + "\n"
    command = [sys.executable, "-m", "asclepius.cli", "chat", "--model", str(decisive_tiny_model_path),
               "--max_new_tokens", "10", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    generator = LocalGenerator(
        str(decisive_tiny_model_path),
        decoding=Decoding(do_sample=False, num_beams=1, max_new_tokens=10),
        device="cpu",
    )
    expected = [generator.answer("\n".join(NOTE_LINES), q) for q in questions]
    assert all(expected) and done.stdout == "".join(f"{answer}\n\n" for answer in expected)
