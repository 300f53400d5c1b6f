"""``asclepius compare``: several models answer one note and instruction, side by side, streamed.

Each model is loaded with :class:`~asclepius.evaluation.generation.LocalGenerator`, so it is
prompted as ``asclepius chat`` and ``scripts/generate.py`` prompt it: in the bytes its card
says it was trained on (``--prompt_style asclepius``), or with its chat template. The same
app runs as a Hugging Face Space (``spaces/compare/app.py``) on Hub ids.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import gradio as gr
import openai
import torch
from transformers import TextIteratorStreamer

from asclepius import prompts
from asclepius.apps import LAUNCH_OPTIONS
from asclepius.evaluation.generation import Decoding, LocalGenerator
from asclepius.evaluation.judging import SCORE_NAMES, parse_scores
from asclepius.stage import UNKNOWN, Provenance, check_endpoint

EXAMPLES = 6  # demo notes offered as examples (distinct notes, each with one of its questions)


def load_examples(path: str | Path | None, count: int = EXAMPLES) -> list[list[str]]:
    """[note, question] pairs from a notes JSONL (the demo's), one per distinct note; [] without a file."""
    if path is None or not Path(path).is_file():
        return []
    examples, notes = [], set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("note") and row["note"] not in notes:
            notes.add(row["note"])
            examples.append([row["note"], row.get("question", "")])
        if len(examples) == count:
            break
    return examples


def stream_answer(generator, note: str, question: str) -> Iterator[str]:
    """The answer so far, after each decoded piece (greedy or sampled; beams cannot stream)."""
    ids = torch.tensor([generator.encode(note, question)], device=generator.device)
    streamer = TextIteratorStreamer(generator.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "generation_config": generator.generation_config, "streamer": streamer}  # fmt: skip
    worker = threading.Thread(target=_generate, args=(generator.model, kwargs), daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text.strip()
    worker.join()


def _generate(model, kwargs: dict) -> None:
    with torch.inference_mode():
        model.generate(**kwargs)


def load_generators(
    models: Sequence[str], *, prompt_style: str, max_new_tokens: int, device: str, dtype: str
):
    decoding = Decoding(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
    return [LocalGenerator(m, prompt_style=prompt_style, decoding=decoding, device=device, dtype=dtype,
                           cache_implementation="dynamic") for m in models]  # fmt: skip


def endpoint_judge(base_url: str, model: str, *, allowed_endpoints: Sequence[str] = ()):
    """``judge(note, question, answers) -> scores or None``: the evaluation's judge prompt, at temperature 0.

    A typed or pasted note is of unknown provenance, so it is restricted: the endpoint must be
    local or allowed, checked here before the app starts. The key is read from OPENAI_API_KEY.
    """
    check_endpoint(Provenance(UNKNOWN, "notes typed into the compare app"), base_url, allowed_endpoints)
    client = openai.OpenAI(
        base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY", max_retries=1
    )

    def judge(note: str, question: str, answers: Sequence[str]) -> list[int] | None:
        messages = prompts.judge_messages(note, question, list(answers))
        reply = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=1024)
        return parse_scores(reply.choices[0].message.content, len(answers))

    return judge


def build_app(names: Sequence[str], generators: Sequence, examples: list[list[str]], judge=None):

    def answer_all(note: str, question: str):
        answers = [""] * len(generators)
        if not note.strip() or not question.strip():
            yield [*answers, "Paste a note and type an instruction."]
            return
        for index, generator in enumerate(generators):  # one after the other: each panel fills as it streams
            for text in stream_answer(generator, note.strip(), question.strip()):
                answers[index] = text
                yield [*answers, f"{names[index]} is answering ..."]
        if judge is None:
            yield [*answers, "Done."]
            return
        yield [*answers, "Done. The judge is scoring the answers ..."]
        try:
            scores = judge(note.strip(), question.strip(), answers)
        except Exception as error:  # the answers stay on screen whatever the judge does
            yield [*answers, f"Done. The judge gave no scores ({type(error).__name__})."]
            return
        if scores is None:
            yield [*answers, "Done. The judge's reply had no readable scores."]
            return
        graded = ", ".join(f"{name}: {score} {SCORE_NAMES[score]}" for name, score in zip(names, scores))
        yield [*answers, f"Done. Judge (1-4): {graded}."]

    with gr.Blocks(title="Asclepius: compare models", analytics_enabled=False) as app:
        gr.Markdown("# Compare models on a clinical note\nFictional demo notes below; paste your own only if "
                    "you may share it with this server.")  # fmt: skip
        with gr.Row():
            note = gr.Textbox(label="Note", lines=12, max_lines=20, elem_id="note")
            with gr.Column():
                question = gr.Textbox(label="Instruction", lines=2, elem_id="question")
                ask = gr.Button("Answer", variant="primary", elem_id="ask")
                status = gr.Markdown(elem_id="status")
        with gr.Row():
            panels = [gr.Textbox(label=f"{name} ({g.prompt_style})", lines=8, interactive=False,
                                 elem_id=f"answer-{i}", elem_classes=["answer"])
                      for i, (name, g) in enumerate(zip(names, generators))]  # fmt: skip
        if examples:
            gr.Examples(examples, [note, question], label="Demo notes (fictional)")
        ask.click(answer_all, [note, question], [*panels, status], api_visibility="private")
        question.submit(answer_all, [note, question], [*panels, status], api_visibility="private")
    return app


def create_app(
    models: Sequence[str],
    *,
    prompt_style: str = "asclepius",
    max_new_tokens: int = 256,
    device: str = "auto",
    dtype: str = "auto",
    examples_path: str | Path | None = None,
    judge_base_url: str | None = None,
    judge_model: str | None = None,
    allowed_endpoints: Sequence[str] = (),
):
    """The app over ``models`` (local folders or Hub ids), each loaded once; a judge when both judge
    options are given (its endpoint checked before any model is loaded)."""
    judge = None
    if judge_base_url and judge_model:
        judge = endpoint_judge(judge_base_url, judge_model, allowed_endpoints=allowed_endpoints)
    generators = load_generators(models, prompt_style=prompt_style, max_new_tokens=max_new_tokens, device=device,
                                 dtype=dtype)  # fmt: skip
    names = [Path(m).name if Path(m).exists() else m for m in models]  # a local path's folder name only
    if len(set(names)) < len(names):  # the same model twice (or two "sft" folders): number them
        names = [f"{name} ({number})" for number, name in enumerate(names, start=1)]
    return build_app(names, generators, load_examples(examples_path), judge)


def serve(models: Sequence[str], *, port: int = 7860, **options) -> None:
    """Serve on 127.0.0.1:PORT until interrupted (a Space calls ``create_app(...).launch()`` itself)."""
    create_app(models, **options).launch(server_name="127.0.0.1", server_port=port, **LAUNCH_OPTIONS)
