"""The ``asclepius`` command: talk to a model about a note, or see the prompt it gets.

    asclepius chat --model outputs/demo/sft --note_file note.txt
    asclepius chat --model starmpcc/Asclepius-Llama3-8B          # paste the note, end with an empty line
    cat note.txt | asclepius chat --model M --question "What is the diagnosis?"
    asclepius prompt --note_file note.txt --question "Summarize the hospital course."

A model trained by this project is asked in the bytes its card says it was trained on
(``prompt_format`` readme or original) when ``--prompt_style asclepius`` (the default).

``chat`` reads a discharge summary (``--note_file``, or pasted on stdin up to an empty
line or end of input), then answers questions one per line until end of input (Ctrl-D)
or ``/quit``; ``/note`` starts over with a new note. Answers go to stdout, prompts for
input to stderr, so ``asclepius chat ... < questions.txt > answers.txt`` works.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TextIO

from asclepius.arguments import OneLineArgumentParser
from asclepius.evaluation.config import DECODING_CHOICES, DEFAULT_MAX_NEW_TOKENS, PROMPT_STYLE_CHOICES

QUIT_COMMANDS = {"/quit", "/exit", "/q"}
NEW_NOTE_COMMAND = "/note"


def read_note(lines: Iterator[str], err: TextIO) -> str | None:
    """Lines up to the first empty line (or end of input); None when there is no note at all."""
    print("Paste the discharge summary, then an empty line (or Ctrl-D):", file=err, flush=True)
    collected = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if collected:
                break
            continue  # blank lines before the note are skipped
        collected.append(line)
    return "\n".join(collected) if collected else None


def chat_loop(
    answer, note: str | None, stdin: TextIO, out: TextIO, err: TextIO, questions: list[str] | None
) -> int:
    """Answer questions about ``note``; ``answer(note, question) -> str``. Returns answers given."""
    lines = iter(stdin.readline, "")
    if note is None:
        note = read_note(lines, err)
        if note is None:
            print("no note given", file=err)
            return 0
    if questions:  # one-shot: the given questions, then exit
        for question in questions:
            print(answer(note, question), file=out, flush=True)
        return len(questions)
    given = 0
    while True:
        print("Question (/note for a new note, Ctrl-D or /quit to end):", file=err, flush=True)
        line = next(lines, None)
        if line is None:
            return given
        question = line.strip()
        if not question:
            continue
        if question.lower() in QUIT_COMMANDS:
            return given
        if question.lower() == NEW_NOTE_COMMAND:
            note = read_note(lines, err) or note
            continue
        print(answer(note, question), file=out, flush=True)
        print(file=out, flush=True)
        given += 1


def run_chat(args: argparse.Namespace) -> int:
    from asclepius.errors import setup_logging
    from asclepius.evaluation.generation import DECODING_PRESETS, Decoding, LocalGenerator
    from asclepius.offline import offline_unless_hub_reachable_for

    setup_logging()
    do_sample, num_beams = DECODING_PRESETS[args.decoding]
    if args.decoding == "paper":
        decoding = Decoding.paper(seed=args.seed, num_beams=args.num_beams, temperature=args.temperature)
    else:
        decoding = Decoding(
            do_sample=do_sample,
            num_beams=args.num_beams or num_beams,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature if do_sample else None,
            seed=args.seed,
        )
    note = None
    if args.note_file:
        with open(args.note_file, encoding="utf-8") as handle:
            note = handle.read().strip()
    # A Hub id with the Hub unreachable: read the cache at once, not after minutes of retries.
    offline_unless_hub_reachable_for(args.model)
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    generator = LocalGenerator(
        args.model,
        prompt_style=args.prompt_style,
        decoding=decoding,
        device=args.device,
        dtype=args.dtype,
        subfolder=args.model_subfolder,
    )
    print(f"prompt style: {generator.prompt_style}", file=sys.stderr, flush=True)
    chat_loop(generator.answer, note, sys.stdin, sys.stdout, sys.stderr, args.question)
    return 0


def run_prompt(args: argparse.Namespace) -> int:
    from asclepius.evaluation.prompting import render_prompt, style_for_model

    style = style_for_model(args.prompt_style, args.model) if args.model else args.prompt_style
    tokenizer = None
    if args.prompt_style == "auto" and not args.model:
        print("error: --prompt_style auto picks the style by model id: give --model", file=sys.stderr)
        return 2
    if args.prompt_style == "chat_template":
        from transformers import AutoTokenizer

        if not args.model:
            print(
                "error: --prompt_style chat_template needs --model (its tokenizer has the template)",
                file=sys.stderr,
            )
            return 2
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    with open(args.note_file, encoding="utf-8") as handle:
        note = handle.read().strip()
    sys.stdout.write(render_prompt(style, note, args.question, tokenizer))
    return 0


def run_rate(args: argparse.Namespace) -> int:
    from asclepius.apps.rate import serve  # gradio only here: the core stages never import it
    from asclepius.errors import InputError

    try:
        serve(args.packet_dir, args.rater, args.port)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from asclepius.apps.compare import serve  # gradio only here: the core stages never import it
    from asclepius.errors import setup_logging

    setup_logging()
    from asclepius.errors import InputError

    try:
        serve(args.models, port=args.port, prompt_style=args.prompt_style, max_new_tokens=args.max_new_tokens,
              device=args.device, dtype=args.dtype, examples_path=args.examples, judge_base_url=args.judge_base_url,
              judge_model=args.judge_model, allowed_endpoints=args.allowed_endpoints or [])  # fmt: skip
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    # One-line errors (exit 2), as the stage scripts give; the subcommands' parsers are of the same class.
    parser = OneLineArgumentParser(prog="asclepius", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser("chat", help="ask a model questions about a discharge summary")
    chat.add_argument(
        "--model",
        "--model_name_or_path",
        required=True,
        help="the model to ask: local folder or Hub id of a causal LM",
    )
    chat.add_argument("--note_file", help="the discharge summary (default: paste it on stdin)")
    chat.add_argument("--question", action="append", help="answer this question and exit (repeatable)")
    chat.add_argument("--model_subfolder", default=None, help="subfolder of --model with the weights")
    chat.add_argument(
        "--prompt_style",
        default="asclepius",
        choices=PROMPT_STYLE_CHOICES,
        help="asclepius: as the model's card says it was trained (README bytes unless it says original)",
    )
    chat.add_argument("--decoding", default="greedy", choices=DECODING_CHOICES)
    chat.add_argument("--num_beams", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None, help="sampling decodings only")
    # --max_tokens: generate's name for the same budget (one idea, both names accepted).
    chat.add_argument("--max_new_tokens", "--max_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    chat.add_argument("--seed", type=int, default=0)
    chat.add_argument("--device", default="auto")
    chat.add_argument("--dtype", default="auto")
    chat.set_defaults(run=run_chat)

    prompt = commands.add_parser("prompt", help="print the prompt a model gets for a note and a question")
    prompt.add_argument("--note_file", required=True)
    prompt.add_argument("--question", required=True)
    prompt.add_argument("--prompt_style", default="asclepius", choices=PROMPT_STYLE_CHOICES)
    prompt.add_argument(
        "--model",
        help="model folder: its card's prompt_format (asclepius style), its chat template (chat_template)",
    )
    prompt.set_defaults(run=run_prompt)

    rate = commands.add_parser("rate", help="rate a blinded packet in the browser (Gradio on 127.0.0.1)")
    rate.add_argument(
        "packet_dir", help="the export folder of scripts/expert_eval.py (or one packets/rater_N)"
    )
    rate.add_argument("--rater", type=int, default=None, help="the rater's number N (packets/rater_N)")
    rate.add_argument("--port", type=int, default=7860)
    rate.set_defaults(run=run_rate)

    compare = commands.add_parser(
        "compare", help="models answer one note side by side in the browser (Gradio)"
    )
    compare.add_argument("models", nargs="+", help="local folders or Hub ids of causal LMs")
    compare.add_argument("--prompt_style", default="asclepius", choices=PROMPT_STYLE_CHOICES)
    compare.add_argument("--max_new_tokens", "--max_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    compare.add_argument(
        "--examples", default="data/demo/synthetic_notes.jsonl", help="notes JSONL offered as examples"
    )
    compare.add_argument("--device", default="auto")
    compare.add_argument("--dtype", default="auto")
    compare.add_argument("--port", type=int, default=7860)
    compare.add_argument(
        "--judge_base_url", help="OpenAI-compatible endpoint of a judge that scores the answers"
    )
    compare.add_argument("--judge_model", help="the judge's model name at --judge_base_url")
    compare.add_argument(
        "--allowed_endpoints", nargs="*", help="hosts besides local ones that may receive notes"
    )
    compare.set_defaults(run=run_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
