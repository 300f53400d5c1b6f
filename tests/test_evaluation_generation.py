"""Batched local generation: same answers as one at a time, resumable, decodings as configured."""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from asclepius.data.loading import load_split
from asclepius.errors import InputError
from asclepius.evaluation.generation import Decoding, LocalGenerator, generate_local
from asclepius.evaluation.prompting import render_prompt
from asclepius.stage.files import read_card_metadata

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "synthetic_notes.jsonl"

NOTES = [
    "Pt admitted w/ CP. Trop neg.",
    "58 yo M w/ HTN presented with crushing chest pain radiating to L arm. Cath: LAD occlusion, DES placed. "
    "Discharged on aspirin, ticagrelor, atorvastatin.",
    "Fever and cough x3 days. CXR RLL consolidation. Started on ceftriaxone + azithro, improved.",
    "Hx DM2. A1c 9.1. Metformin increased.",
    "Fall at home, L hip pain. XR: femoral neck fx. ORIF hospital day 2. PT started. Discharged to rehab on day 6 "
    "with enoxaparin for DVT prophylaxis and oxycodone prn.",
    "Headache.",
]
QUESTIONS = [
    "What were the troponins?",
    "List the discharge medications.",
    "Which antibiotics were given?",
    "What was the A1c?",
    "Summarize the hospital course.",
    "What is the chief complaint?",
]


def greedy(max_new_tokens: int = 12) -> Decoding:
    return Decoding(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)


@pytest.mark.parametrize("cache", ["static", "dynamic"])
def test_batched_greedy_equals_one_at_a_time(decisive_tiny_model_path, cache):
    generator = LocalGenerator(
        str(decisive_tiny_model_path), decoding=greedy(), device="cpu", cache_implementation=cache
    )
    one_at_a_time = [generator.answer(n, q) for n, q in zip(NOTES, QUESTIONS)]
    # Different prompt lengths in one batch: left padding, sorting and row order all matter.
    batched = generator.answer_all(NOTES, QUESTIONS, batch_size=4, show_progress=False)
    assert batched == one_at_a_time
    # The model is decisive enough that a mix-up between rows could not go unnoticed.
    assert len(set(one_at_a_time)) == len(NOTES)


def test_paper_decoding_pins_the_original_settings_over_flags_and_checkpoint(tiny_model_path, tmp_path):
    from asclepius.evaluation.config import GenerateArguments

    # A checkpoint whose generation config says something else on every pinned setting.
    model = tmp_path / "model"
    shutil.copytree(tiny_model_path, model)
    config = (
        json.loads((model / "generation_config.json").read_text())
        if (model / "generation_config.json").exists()
        else {}
    )
    config.update(temperature=0.3, num_beams=2, do_sample=False, max_new_tokens=17, top_p=0.5)
    (model / "generation_config.json").write_text(json.dumps(config))
    args = GenerateArguments(decoding="paper", num_beams=2, seed=3)
    paper = Decoding.from_arguments(args, max_tokens=64, temperature=0.7)
    assert (paper.do_sample, paper.num_beams, paper.temperature, paper.max_new_tokens) == (True, 5, 1.0, 400)
    generator = LocalGenerator(str(model), decoding=paper, device="cpu", max_prompt_tokens=512)
    config = generator.generation_config
    assert (config.do_sample, config.num_beams, config.temperature, config.max_new_tokens) == (
        True,
        5,
        1.0,
        400,
    )
    assert config.num_return_sequences == 1
    short = Decoding(do_sample=True, num_beams=5, max_new_tokens=6, temperature=1.0, seed=3)
    answers = LocalGenerator(str(model), decoding=short, device="cpu").answer_all(
        NOTES[:2], QUESTIONS[:2], batch_size=2, show_progress=False
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    greedy_config = LocalGenerator(str(tiny_model_path), decoding=greedy(), device="cpu").generation_config
    assert (greedy_config.do_sample, greedy_config.num_beams) == (False, 1)


@pytest.mark.parametrize("style", ["asclepius", "alpaca", "vicuna"])
def test_long_notes_are_cut_in_the_note_never_the_instruction(tiny_model_path, style):
    generator = LocalGenerator(
        str(tiny_model_path), prompt_style=style, decoding=greedy(4), device="cpu", max_prompt_tokens=200
    )
    note = "START chest pain and shortness of breath " * 200
    ids = generator.encode(note, "What is the diagnosis?")
    assert len(ids) <= 200 and generator.truncated == 1
    assert generator.truncation.note_tokens_cut > 0
    text = generator.tokenizer.decode(ids, skip_special_tokens=True)
    # The template's header, the start of the note, the question and the answer cue are all there.
    full = render_prompt(style, note, "What is the diagnosis?")
    header, tail = full.split(note)
    assert text.startswith(header) and "START chest pain" in text
    assert text.rstrip().endswith(tail.rstrip())
    assert generator.encode("Short note.", "Q?") and generator.truncated == 1  # a short prompt is left alone


def test_a_context_too_small_for_the_template_is_a_one_line_error(tiny_model_path):
    generator = LocalGenerator(str(tiny_model_path), decoding=greedy(4), device="cpu", max_prompt_tokens=20)
    with pytest.raises(InputError, match="template and question alone exceed the 20-token prompt budget"):
        generator.encode("a note " * 50, "What is the diagnosis?")


def test_resume_reuses_finished_batches(decisive_tiny_model_path, tmp_path):
    generator = LocalGenerator(str(decisive_tiny_model_path), decoding=greedy(8), device="cpu")
    shards = tmp_path / "shards"
    first, reused = generate_local(
        generator, NOTES, QUESTIONS, shard_dir=shards, batch_size=4, show_progress=False
    )
    assert reused == 0 and len(list(shards.glob("batch-*.jsonl"))) == 2
    # Mark one stored answer: a rerun must take it from the shard instead of generating again.
    shard = sorted(shards.glob("batch-*.jsonl"))[0]
    records = [json.loads(line) for line in shard.read_text().splitlines()]
    records[0]["generated"] = "FROM THE SHARD"
    shard.write_text("".join(json.dumps(r) + "\n" for r in records))
    second, reused = generate_local(
        generator, NOTES, QUESTIONS, shard_dir=shards, batch_size=4, show_progress=False
    )
    assert reused == len(NOTES)
    assert second[records[0]["index"]] == "FROM THE SHARD"
    # A shard is reused only for the row it was made for: change one question and only it is regenerated.
    changed = list(QUESTIONS)
    changed[records[0]["index"]] = "A different question?"
    third, reused = generate_local(
        generator, NOTES, changed, shard_dir=shards, batch_size=4, show_progress=False
    )
    assert reused == len(NOTES) - 1 and third[records[0]["index"]] != "FROM THE SHARD"


def run_script(name: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(ROOT / "scripts" / name), run_name="__main__")


def test_generate_script_writes_a_hub_ready_folder(tiny_model_path, tmp_path, monkeypatch):
    output = tmp_path / "answers"
    argv = [
        "--config", str(ROOT / "recipes" / "tiny" / "eval.yaml"),
        "--model", str(tiny_model_path), "--model_name", "tiny",
        "--input", str(DEMO), "--test_ratio", "0.2", "--max_samples", "5",
        "--max_tokens", "6", "--batch_size", "4", "--output_dir", str(output), "--show_progress", "false",
        "--max_prompt_tokens", "300",
    ]  # fmt: skip
    run_script("generate.py", argv, monkeypatch)
    rows = load_dataset(str(output))["test"]
    expected = load_split(str(DEMO), "test", test_ratio=0.2).select(range(5))
    assert rows["note"] == expected["note"] and rows["question"] == expected["question"]
    assert set(rows["model"]) == {"tiny"} and all(isinstance(g, str) for g in rows["generated"])
    assert {"patient_id", "answer", "task"} <= set(rows.column_names)
    provenance = read_card_metadata(output)["asclepius_evaluation"]
    assert provenance["model_path"] == str(Path(tiny_model_path).resolve())
    assert provenance["prompt_style"] == "asclepius" and provenance["decoding"]["max_new_tokens"] == 6
    # Demo notes are longer than 300 tokens: their ends were cut, and the card says how often and how much.
    truncation = provenance["truncation"]
    assert truncation["prompts_cut"] == provenance["truncated_prompts"] == 5
    assert truncation["note_tokens_cut"] >= truncation["max_note_tokens_cut"] > 0
    card = (output / "README.md").read_text(encoding="utf-8")
    assert (
        f"| notes cut to fit the prompt budget | 5 prompts ({truncation['note_tokens_cut']} note tokens"
        in card
    )
    # Rerun: the card is rewritten from the shards, no batch generated again.
    shard_files = {p: p.stat().st_mtime_ns for p in (output / ".asclepius").rglob("batch-*.jsonl")}
    run_script("generate.py", argv, monkeypatch)
    assert {p: p.stat().st_mtime_ns for p in (output / ".asclepius").rglob("batch-*.jsonl")} == shard_files
    assert load_dataset(str(output))["test"]["generated"] == rows["generated"]


def test_generate_script_rejects_a_set_without_questions(tiny_model_path, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"note": "n", "answer": "a"}) + "\n")
    argv = [
        "--model",
        str(tiny_model_path),
        "--input",
        str(bad),
        "--split",
        "train",
        "--output_dir",
        str(tmp_path / "o"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_script("generate.py", argv, monkeypatch)
    assert exit_info.value.code == 2
    assert "missing column 'question'" in capsys.readouterr().err


def test_generate_script_answers_through_an_endpoint_once(tmp_path, monkeypatch, capsys):
    from asclepius.testing.openai_server import OpenAIServer

    output = tmp_path / "api-answers"
    with OpenAIServer(rate_500=0.2, seed=1) as server:
        argv = [
            "--backend", "openai", "--base_url", server.base_url, "--model", "served-model",
            "--prompt_style", "medalpaca", "--input", str(DEMO), "--test_ratio", "0.2", "--max_samples", "6",
            "--output_dir", str(output), "--show_progress", "false", "--max_attempts", "8",
        ]  # fmt: skip
        run_script("generate.py", [*argv, "--dry_run", "true"], monkeypatch)
        assert "6 to send" in capsys.readouterr().out and len(server.billing) == 0
        assert not (output / "README.md").exists()  # a dry run writes no answers
        run_script("generate.py", argv, monkeypatch)
        rows = load_dataset(str(output))["test"]
        assert set(rows["model"]) == {"served-model"} and all(g.startswith("[") for g in rows["generated"])
        sent = server.billing.records()
        assert len(sent) == 6 and all(r["temperature"] == 0.0 for r in sent)  # greedy = temperature 0
        # A raw style is a completion of its exact bytes, not a chat turn the server would template.
        assert {r["endpoint"] for r in sent} == {"completions"}
        run_script("generate.py", argv, monkeypatch)  # a rerun is served by the ledger
        assert (
            len(server.billing) == 6 and load_dataset(str(output))["test"]["generated"] == rows["generated"]
        )
    assert read_card_metadata(output)["asclepius_evaluation"]["backend"] == "openai"


def test_answers_folders_with_the_same_name_are_read_fresh(tmp_path):
    """Two answer folders called "answers" (or one rewritten) must not share a datasets cache entry."""
    from datasets import Dataset

    from asclepius.evaluation.folders import load_answers_folder, with_answers, write_answers_folder

    provenance = {"model": "m", "backend": "transformers", "prompt_style": "asclepius", "prompt_hash": "h",
                  "source": "s", "split": "test"}  # fmt: skip
    for run, rows in enumerate((3, 5)):
        folder = tmp_path / f"run{run}" / "answers"
        dataset = Dataset.from_dict({"note": [f"n{i}" for i in range(rows)], "question": ["q"] * rows})
        write_answers_folder(
            folder, with_answers(dataset, "m", ["a"] * rows), split="test", provenance=provenance
        )
        assert len(load_answers_folder(str(folder)).dataset) == rows


def test_endpoint_prompts_are_cut_in_the_note_by_the_engine_estimate():
    from asclepius.engine.request import estimate_request_tokens
    from asclepius.evaluation.generation import fit_api_request
    from asclepius.evaluation.prompting import TruncationLog

    log = TruncationLog()
    note, question = "NOTESTART " + "fever and cough " * 300, "Which antibiotics were given?"
    request = fit_api_request("medalpaca", note, question, 200, log, index=3)
    content = request.prompt
    assert estimate_request_tokens(request) <= 200 and log.prompts_cut == 1 and log.note_tokens_cut > 0
    assert "NOTESTART fever" in content and content.endswith("\n\n### Response:\n")
    assert f"### Instruction:\n{question}\n\n" in content and request.metadata == {"index": 3}
    assert fit_api_request("medalpaca", "short", question, 200, log).prompt.count("short") == 1
    assert log.prompts_cut == 1
    with pytest.raises(InputError, match="template and question alone exceed"):
        fit_api_request("medalpaca", note, question, 20, log)


def test_a_model_in_a_subfolder_loads_like_chatdoctor(tiny_model_path, tmp_path):
    repo = tmp_path / "chatdoctor-like"
    shutil.copytree(tiny_model_path, repo / "result")  # weights and tokenizer under result/, as ChatDoctor's
    generator = LocalGenerator(
        str(repo), subfolder="result", prompt_style="alpaca", decoding=greedy(3), device="cpu"
    )
    assert generator.prompt("N", "Q").endswith("### Input:\nN\n\n### Response:")
    assert isinstance(generator.answer("N", "Q"), str)


def test_paper_decoding_builds_the_originals_config_and_refuses_an_over_long_prompt(tiny_model_path):
    paper = Decoding.paper(seed=1)
    generator = LocalGenerator(str(tiny_model_path), decoding=paper, device="cpu", max_prompt_tokens=300)
    config = generator.generation_config
    # The original: generate(max_new_tokens=400, num_beams=5, do_sample=True, temperature=1) with the
    # generation defaults otherwise: early_stopping False, one sequence, stop at EOS.
    assert (config.do_sample, config.num_beams, config.temperature, config.max_new_tokens) == (
        True,
        5,
        1.0,
        400,
    )
    assert config.early_stopping is False and config.num_return_sequences == 1
    assert config.eos_token_id is not None
    # Ours keeps stopping a beam search once every beam is done.
    ours = LocalGenerator(
        str(tiny_model_path), decoding=Decoding(do_sample=False, num_beams=3, max_new_tokens=4), device="cpu"
    )
    assert ours.generation_config.early_stopping is True
    # No cutting under paper: the over-long third row is a one-line error naming it (before any generation).
    notes = [NOTES[0], NOTES[1], "chest pain " * 200]
    with pytest.raises(InputError) as error:
        generator.answer_all(notes, QUESTIONS[:3], batch_size=1, show_progress=False)
    message = str(error.value)
    assert "row 3" in message and "field 'note'" in message and "does not cut" in message
    assert "\n" not in message
    # The default decodings still cut the note to fit.
    cutting = LocalGenerator(str(tiny_model_path), decoding=greedy(2), device="cpu", max_prompt_tokens=300)
    assert len(cutting.encode(notes[2], QUESTIONS[2], row=2)) <= 300 and cutting.truncated == 1


def test_paper_decoding_refuses_an_over_long_endpoint_prompt_before_sending():
    from asclepius.evaluation.generation import generate_api

    notes = [NOTES[0], "chest pain " * 400]
    with pytest.raises(InputError, match=r"row 2: field 'note': .*does not cut prompts"):
        # Refused before any engine exists: nothing is sent or paid.
        generate_api(None, notes, QUESTIONS[:2], prompt_style="asclepius", decoding=Decoding.paper(),
                     ledger_path="unused", max_prompt_tokens=600)  # fmt: skip
