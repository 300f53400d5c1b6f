"""Every prompt the project sends or trains on, in one place.

Each template is versioned by a short hash of its text (:func:`prompt_hash`); stages
record the hash next to their outputs so a dataset always says which prompt made it.
The teacher prompts are written for this project from the method's requirements.

The inference prompt is an interface and is kept byte for byte as the original README
publishes it (the typo "languge" and the space after "[Instruction End]" included). The
released Asclepius checkpoints were NOT trained on exactly these bytes: the original
training code dropped that trailing space and stripped leading/trailing newlines from
every field (:data:`ORIGINAL_TRAINING_PROMPT`), while its evaluation prompted with the
README bytes. Our recipes train on the README bytes by default (``prompt_format:
readme``), so our models are trained and prompted identically; ``prompt_format:
original`` reproduces the original training bytes (:func:`render_training_prompt`).
"""

from __future__ import annotations

import hashlib

# --- Inference / training prompt (published interface, do not edit) -------------
INFERENCE_PROMPT = (
    "You are an intelligent clinical languge model.\n"
    "Below is a snippet of patient's discharge summary and a following instruction from healthcare professional.\n"
    "Write a response that appropriately completes the instruction.\n"
    "The response should provide the accurate answer to the instruction, while being concise.\n"
    "\n"
    "[Discharge Summary Begin]\n"
    "{note}\n"
    "[Discharge Summary End]\n"
    "\n"
    "[Instruction Begin]\n"
    "{question}\n"
    "[Instruction End] \n"
)
# What the original code trained on: the same text without the space after "[Instruction End]".
ORIGINAL_TRAINING_PROMPT = INFERENCE_PROMPT.replace("[Instruction End] \n", "[Instruction End]\n")
# prompt_format (training recipes, model cards) -> template. "original" also strips each
# field of leading/trailing newlines, see render_training_prompt.
PROMPT_FORMATS = {"readme": INFERENCE_PROMPT, "original": ORIGINAL_TRAINING_PROMPT}
DEFAULT_PROMPT_FORMAT = "readme"

# --- Note synthesis: case report -> discharge summary ------------------------------
NOTE_SYSTEM_PROMPT = "You are a physician who writes hospital documentation in a busy teaching hospital."

NOTE_PROMPT = """Rewrite the published case report below as the discharge summary that the treating team would have filed in the patient's electronic health record.

Rules:
1. Reply with the discharge summary and nothing else: no greeting, no explanation, no closing remark.
2. Write the way clinicians actually chart: where the report uses a formal clinical term, prefer the everyday wording a busy clinician would type (for example "high cholesterol" for hypercholesterolemia, "heart attack" for myocardial infarction).
3. Use the usual clinical abbreviations freely and do not spell them out.
4. Small grammatical slips and terse fragments are fine, as in real notes.
5. Do not invent anything. Every drug, dose, diagnosis, procedure, test result and plan in your summary must come from the case report.
6. If the report ends before the patient leaves hospital, write a summary of the hospital course so far instead of a discharge summary.
7. Keep the structure and medical logic of a real record: detailed and complete, organised under several headings (for example admission reason, history, hospital course, procedures, discharge condition, medications, follow-up).

[Case Report Begin]
{case_report}
[Case Report End]
"""

# --- Instruction bootstrapping: note + task -> one new question --------------------
QUESTION_SYSTEM_PROMPT = (
    "You are a clinician who writes exercises that test how well a language model reads clinical notes."
)

QUESTION_PROMPT = """Below is a discharge summary and a clinical NLP task.

[Discharge Summary Begin]
{note}
[Discharge Summary End]

Task: {task}

Here are example instructions a healthcare professional has written for this task:
{examples}

Write one new instruction for the task "{task}" about this discharge summary.
- It must differ from every example above.
- It must be brief and answerable from the discharge summary alone.
- Reply with the instruction only: no numbering, no quotes, no answer, no explanation.
"""

# --- Answering: note + question -> answer ------------------------------------------
ANSWER_SYSTEM_PROMPT = (
    "You are a careful clinician answering a colleague's question about a patient's discharge summary."
)

ANSWER_PROMPT = """[Discharge Summary Begin]
{note}
[Discharge Summary End]

[Instruction Begin]
{question}
[Instruction End]

Answer the instruction accurately and concisely, using only what the discharge summary says.
If the summary does not contain what is needed, say that it cannot be answered from the summary and briefly why.
Answer directly: do not describe yourself, do not decline, do not ask a question back and do not restate the instruction.
"""

# --- LLM judge: the paper's 1-4 rubric ----------------------------------------------
JUDGE_SYSTEM_PROMPT = "You are an attending physician grading answers to questions about clinical notes."

# Our judge prompt: the note, the instruction, the candidates and the rubric (the paper style has its own below).
_JUDGE_TASK = """You will grade {num_candidates} candidate answers to an instruction about a discharge summary.

[Discharge Summary Begin]
{note}
[Discharge Summary End]

[Instruction Begin]
{question}
[Instruction End]

{candidates}

First, work out your own answer to the instruction from the discharge summary.
Then grade each candidate on this scale:
1 (Unacceptable): contains any incorrect or irrelevant content, or fails to say that an unanswerable instruction cannot be answered.
2 (Poor): leaves out significant content that the answer needs.
3 (Satisfactory): leaves out only minor content.
4 (Excellent): contains all the content the answer needs, or correctly says that the instruction cannot be answered.
"""

JUDGE_PROMPT = (
    _JUDGE_TASK
    + """
Reply format: the FIRST line must hold only the {num_candidates} scores, in the order {labels}, separated by single spaces (for example "{example}"). After that line, explain your grading.
"""
)

JUDGE_CANDIDATE = "[Answer {label} Begin]\n{answer}\n[Answer {label} End]"

# judge_style paper: the original judge's prompt, as facts (the wording is ours): one user
# message (no system turn) opening with the original's persona line, the candidates labelled
# "[Agent A's Answer Begin]" ... "[Agent A's Answer End]", the same rubric, each answer scored
# independently of the others, the N scores alone on the first line, and the original's
# closing line "Output scores without explanation." Its replies are read as the original read
# them (asclepius.evaluation.judging.paper_score_tokens).
JUDGE_PAPER_PERSONA = "You are an intelligent clinical language model."
JUDGE_PAPER_CANDIDATE = "[Agent {label}'s Answer Begin]\n{answer}\n[Agent {label}'s Answer End]"
JUDGE_PAPER_PROMPT = (
    JUDGE_PAPER_PERSONA
    + """

[Discharge Summary Begin]
{note}
[Discharge Summary End]

[Instruction Begin]
{question}
[Instruction End]

{candidates}

Above are a discharge summary, an instruction a healthcare professional gave about it, and the responses of {num_candidates} different clinical models to that instruction.
Read the discharge summary and the instruction carefully and work out your own answer to the instruction.
Then compare each model's response with your answer and score it on this scale:
1 (Unacceptable): contains any incorrect or irrelevant content, or fails to say that an unanswerable instruction cannot be answered.
2 (Poor): leaves out significant content that the answer needs.
3 (Satisfactory): leaves out only minor content.
4 (Excellent): contains all the content the answer needs, or correctly says that the instruction cannot be answered.

Score every response on its own: the other models' responses must not change its score.
The first line must hold only the {num_candidates} scores, one per model in the order shown ({labels}), separated by single spaces.
Output scores without explanation.
"""
)

# Sent after a judge reply whose first line could not be read as the scores.
JUDGE_REPAIR_PROMPT = """Your previous reply could not be read (attempt {attempt} of {max_attempts}): its first line must hold exactly {num_candidates} scores from 1 to 4, in the order {labels}, separated by single spaces, and nothing else (for example "{example}").
Reply again in that format: the scores on the first line, then your explanation.
"""

# --- Prompt styles at evaluation time ------------------------------------------------
# The formats the paper's evaluation prompted each model family in (interfaces, byte for
# byte). Styles in FIELD_STRIPPED_STYLES get note and question stripped of leading and
# trailing newlines first, as the original evaluation did; the "asclepius" style fills
# the fields verbatim, exactly as our training does with prompt_format readme.
_ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{question}\n\n### Input:\n{note}\n\n### Response:"
)
# Base LLaMA / PMC-LLaMA: the Asclepius prompt plus a response cue.
LLAMA_BASE_PROMPT = INFERENCE_PROMPT + "\nResponse: "
# Alpaca and ChatDoctor: no newline after the response header.
ALPACA_PROMPT = _ALPACA_PREAMBLE
# MedAlpaca: the same sections, the response header followed by a newline.
MEDALPACA_PROMPT = _ALPACA_PREAMBLE + "\n"
# Vicuna and Clinical Camel: a one-turn Vicuna v1.1 chat around the note and question.
VICUNA_PROMPT = (
    "\nA chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions. "
    "USER: [The start of the Discharge Summary]\n{note}\n[The end of the Discharge Summary]\n"
    "{question} ASSISTANT: \n"
)
PROMPT_STYLES = {
    "asclepius": INFERENCE_PROMPT,
    # For models trained with prompt_format original (the released checkpoints' training bytes).
    "asclepius_original": ORIGINAL_TRAINING_PROMPT,
    # How the paper's evaluation asked the Asclepius models (and any model without a format of
    # its own): the published bytes, fields stripped of newlines.
    "asclepius_paper": INFERENCE_PROMPT,
    "llama_base": LLAMA_BASE_PROMPT,
    "alpaca": ALPACA_PROMPT,
    "medalpaca": MEDALPACA_PROMPT,
    "vicuna": VICUNA_PROMPT,
}
FIELD_STRIPPED_STYLES = frozenset(
    {"asclepius_original", "asclepius_paper", "llama_base", "alpaca", "medalpaca", "vicuna"}
)
# The prompt style that asks a model in the bytes of its training prompt_format.
STYLE_OF_PROMPT_FORMAT = {"readme": "asclepius", "original": "asclepius_original"}


def prompt_hash(*templates: str) -> str:
    """Short, stable version id of one or more templates (first 10 hex of SHA-256)."""
    digest = hashlib.sha256("\x1e".join(templates).encode("utf-8")).hexdigest()
    return digest[:10]


def render_inference_prompt(note: str, question: str) -> str:
    """The published Asclepius prompt filled with a note and a question."""
    return INFERENCE_PROMPT.format(note=note, question=question)


def check_prompt_format(prompt_format: str) -> str:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}; got {prompt_format!r}")
    return prompt_format


def render_training_prompt(note: str, question: str, prompt_format: str = DEFAULT_PROMPT_FORMAT) -> str:
    """The prompt a training row is learned under.

    ``readme``: the published bytes with the fields verbatim (what our models are also
    prompted with). ``original``: the original training code's bytes: no space after
    "[Instruction End]", each field stripped of leading/trailing newlines.
    """
    if check_prompt_format(prompt_format) == "original":
        note, question = note.strip("\n"), question.strip("\n")
    return PROMPT_FORMATS[prompt_format].format(note=note, question=question)


def training_completion(answer: str, prompt_format: str = DEFAULT_PROMPT_FORMAT) -> str:
    """The completion text (EOS is appended at tokenization): stripped of newlines under ``original``."""
    return answer.strip("\n") if check_prompt_format(prompt_format) == "original" else answer


def note_messages(case_report: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": NOTE_SYSTEM_PROMPT},
        {"role": "user", "content": NOTE_PROMPT.format(case_report=case_report.strip())},
    ]


def question_messages(note: str, task: str, examples: list[str]) -> list[dict[str, str]]:
    listed = "\n".join(f"- {example}" for example in examples)
    return [
        {"role": "system", "content": QUESTION_SYSTEM_PROMPT},
        {"role": "user", "content": QUESTION_PROMPT.format(note=note.strip(), task=task, examples=listed)},
    ]


def answer_messages(note: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": ANSWER_SYSTEM_PROMPT},
        {"role": "user", "content": ANSWER_PROMPT.format(note=note.strip(), question=question.strip())},
    ]


def judge_labels(n: int) -> list[str]:
    """A, B, C, ... for n candidates (n <= 26)."""
    if not 1 <= n <= 26:
        raise ValueError(f"the judge grades 1 to 26 candidates at once, got {n}")
    return [chr(ord("A") + i) for i in range(n)]


JUDGE_STYLES = {"ours": JUDGE_PROMPT, "paper": JUDGE_PAPER_PROMPT}


def judge_messages(note: str, question: str, answers: list[str], style: str = "ours") -> list[dict[str, str]]:
    labels = judge_labels(len(answers))
    if style == "paper":  # one user message; note, question and answers as given, as the original sent them
        candidates = "\n\n".join(
            JUDGE_PAPER_CANDIDATE.format(label=label, answer=answer) for label, answer in zip(labels, answers)
        )
        content = JUDGE_PAPER_PROMPT.format(
            note=note,
            question=question,
            candidates=candidates,
            num_candidates=len(answers),
            labels=" ".join(labels),
        )
        return [{"role": "user", "content": content}]
    candidates = "\n\n".join(
        JUDGE_CANDIDATE.format(label=label, answer=answer.strip()) for label, answer in zip(labels, answers)
    )
    example = " ".join(str(score) for score, _ in zip([4, 2, 3, 1] * 7, labels))
    content = JUDGE_STYLES[style].format(
        num_candidates=len(answers),
        note=note.strip(),
        question=question.strip(),
        candidates=candidates,
        labels=", ".join(labels),
        example=example,
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": content}]


def judge_repair_message(num_candidates: int, attempt: int, max_attempts: int) -> dict[str, str]:
    """The user turn asking a judge to restate its scores in the required first-line format."""
    labels = judge_labels(num_candidates)
    example = " ".join(str(score) for score, _ in zip([4, 2, 3, 1] * 7, labels))
    content = JUDGE_REPAIR_PROMPT.format(
        attempt=attempt,
        max_attempts=max_attempts,
        num_candidates=num_candidates,
        labels=", ".join(labels),
        example=example,
    )
    return {"role": "user", "content": content}


NOTE_PROMPT_HASH = prompt_hash(NOTE_SYSTEM_PROMPT, NOTE_PROMPT)
QUESTION_PROMPT_HASH = prompt_hash(QUESTION_SYSTEM_PROMPT, QUESTION_PROMPT)
ANSWER_PROMPT_HASH = prompt_hash(ANSWER_SYSTEM_PROMPT, ANSWER_PROMPT)
JUDGE_PROMPT_HASH = prompt_hash(JUDGE_SYSTEM_PROMPT, JUDGE_PROMPT, JUDGE_CANDIDATE)
JUDGE_PAPER_PROMPT_HASH = prompt_hash(JUDGE_PAPER_PROMPT, JUDGE_PAPER_CANDIDATE)

# --judge_reply_format json_schema: the same judging, the scores returned as a JSON object whose
# shape the endpoint enforces (OpenAI structured outputs, vLLM guided decoding). Appended to the
# last user turn, so these requests never share a ledger key with first-line ones.
JUDGE_JSON_INSTRUCTION = (
    'Reply with one JSON object and nothing else: "own_answer" holds your own answer, then one key per '
    "candidate ({labels}) holds its score, an integer from 1 to 4."
)
JUDGE_JSON_INSTRUCTION_HASH = prompt_hash(JUDGE_JSON_INSTRUCTION)
INFERENCE_PROMPT_HASH = prompt_hash(INFERENCE_PROMPT)
PROMPT_FORMAT_HASHES = {name: prompt_hash(template) for name, template in PROMPT_FORMATS.items()}
