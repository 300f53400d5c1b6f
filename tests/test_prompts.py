import re
from pathlib import Path

import pytest

from asclepius import prompts
from asclepius.tasks import SEED_QUESTIONS, TASKS, validate_task

# The original README, when this checkout sits beside the project's shared reference folder.
SEED_README = Path(__file__).resolve().parents[2] / "shared" / "seed" / "asclepius-README.md"


def test_inference_prompt_renders_the_published_template_byte_for_byte():
    note, question = "This is a sample note", "What is the diagnosis?"
    expected = (
        "You are an intelligent clinical languge model.\n"
        "Below is a snippet of patient's discharge summary and a following instruction from healthcare professional.\n"
        "Write a response that appropriately completes the instruction.\n"
        "The response should provide the accurate answer to the instruction, while being concise.\n\n"
        "[Discharge Summary Begin]\nThis is a sample note\n[Discharge Summary End]\n\n"
        "[Instruction Begin]\nWhat is the diagnosis?\n[Instruction End] \n"
    )
    assert prompts.render_inference_prompt(note, question) == expected


@pytest.mark.skipif(not SEED_README.exists(), reason="original README not beside this checkout")
def test_inference_prompt_matches_the_original_readme():
    published = re.search(r'prompt = """(.*?)"""', SEED_README.read_text(encoding="utf-8"), re.S).group(1)
    assert published == prompts.INFERENCE_PROMPT


def test_prompt_hashes_are_short_stable_and_distinct():
    hashes = {
        prompts.NOTE_PROMPT_HASH,
        prompts.QUESTION_PROMPT_HASH,
        prompts.ANSWER_PROMPT_HASH,
        prompts.JUDGE_PROMPT_HASH,
        prompts.INFERENCE_PROMPT_HASH,
    }
    assert len(hashes) == 5 and all(len(h) == 10 for h in hashes)
    assert prompts.prompt_hash("a") == prompts.prompt_hash("a") != prompts.prompt_hash("b")


def test_teacher_messages_carry_their_inputs():
    note_msgs = prompts.note_messages("  A 45-year-old woman presented with fever.  ")
    assert note_msgs[0]["role"] == "system" and note_msgs[-1]["role"] == "user"
    assert "A 45-year-old woman presented with fever.\n[Case Report End]" in note_msgs[-1]["content"]
    question_msgs = prompts.question_messages("NOTE", "Summarization", ["Q1", "Q2", "Q3"])
    assert (
        "- Q1\n- Q2\n- Q3" in question_msgs[-1]["content"]
        and '"Summarization"' in question_msgs[-1]["content"]
    )
    answer_msgs = prompts.answer_messages("NOTE", "Why?")
    assert "[Instruction Begin]\nWhy?\n[Instruction End]" in answer_msgs[-1]["content"]


def test_judge_prompt_labels_every_candidate():
    messages = prompts.judge_messages("NOTE", "Q?", ["first", "second", "third"])
    content = messages[-1]["content"]
    for label, answer in zip("ABC", ["first", "second", "third"]):
        assert f"[Answer {label} Begin]\n{answer}\n[Answer {label} End]" in content
    assert "3 scores, in the order A, B, C" in content
    with pytest.raises(ValueError):
        prompts.judge_labels(0)


def test_prompt_styles_render_note_and_question():
    for name, template in prompts.PROMPT_STYLES.items():
        assert template.count("{note}") == 1 and template.count("{question}") == 1, name
        rendered = template.format(note="NOTE-TEXT", question="QUESTION-TEXT")
        assert "NOTE-TEXT" in rendered and "QUESTION-TEXT" in rendered, name


def test_eight_tasks_with_five_distinct_seed_questions_each():
    assert TASKS == (
        "Named Entity Recognition",
        "Abbreviation Expansion",
        "Relation Extraction",
        "Temporal Information Extraction",
        "Coreference Resolution",
        "Paraphrasing",
        "Summarization",
        "Question Answering",
    )
    assert set(SEED_QUESTIONS) == set(TASKS)
    for task, seeds in SEED_QUESTIONS.items():
        assert len(set(seeds)) >= 5, task
    assert validate_task("Paraphrasing") == "Paraphrasing"
    with pytest.raises(ValueError, match="unknown task label 'Paraphrase'"):
        validate_task("Paraphrase")


def test_original_training_bytes_drop_the_space_and_strip_newlines():
    note, question, answer = "\nNote line 1\nline 2\n\n", "\nWhat happened?\n", "\nHe got better.\n"
    original = prompts.render_training_prompt(note, question, "original")
    assert original.endswith("[Discharge Summary Begin]\nNote line 1\nline 2\n[Discharge Summary End]\n\n"
                             "[Instruction Begin]\nWhat happened?\n[Instruction End]\n")  # fmt: skip
    assert original == prompts.INFERENCE_PROMPT.replace("[Instruction End] \n", "[Instruction End]\n").format(
        note="Note line 1\nline 2", question="What happened?"
    )
    assert prompts.training_completion(answer, "original") == "He got better."
    # The default keeps the README bytes and the fields verbatim: trained as prompted.
    assert prompts.render_training_prompt(note, question) == prompts.render_inference_prompt(note, question)
    assert prompts.training_completion(answer) == answer
    assert prompts.PROMPT_FORMAT_HASHES["readme"] == prompts.INFERENCE_PROMPT_HASH
    assert prompts.PROMPT_FORMAT_HASHES["original"] != prompts.INFERENCE_PROMPT_HASH
    with pytest.raises(ValueError, match="prompt_format must be one of readme, original"):
        prompts.render_training_prompt(note, question, "chatml")
