"""What each stage trains on: distinct notes, the published prompt, answer-only labels, pad tokens."""

from __future__ import annotations

import pytest
from datasets import Dataset

from asclepius.errors import InputError
from asclepius.prompts import INFERENCE_PROMPT, render_inference_prompt
from asclepius.training.formatting import (
    original_pretraining_blocks,
    original_stream_blocks,
    to_prompt_completion,
    tokenize_for_sft,
    tokenize_prompt_completion,
    unique_notes,
)
from asclepius.training.tokenizer import choose_pad_token, load_tokenizer

ROWS = {
    "patient_id": [1, 1, 2, 3],
    "note": [
        "Reason for Admission: chest pain.\nHospital Course: stent to LAD.",
        "Reason for Admission: chest pain.\nHospital Course: stent to LAD.",
        "Reason for Admission: fall at home, hip fx.\nProcedure: ORIF R hip. Discharged to rehab.",
        "HPI: 8 yo w/ fever x3 days, rash. Dx: Kawasaki dz, given IVIG + ASA.",
    ],
    "question": [
        "What procedure was done?",
        "Summarize the admission in one sentence.",
        "Where was the patient discharged to?",
        "Expand the abbreviation IVIG.",
    ],
    "answer": [
        "A stent was placed in the LAD.",
        "Admitted for chest pain and treated with a stent to the LAD.",
        "The patient was discharged to rehab.",
        "IVIG stands for intravenous immunoglobulin.",
    ],
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return load_tokenizer(str(tiny_model_path))


def test_unique_notes_keeps_each_note_once_in_first_seen_order():
    dataset = Dataset.from_dict({"note": ["b", "a", "b", "", "  ", "c", "a"]})
    assert unique_notes(dataset)["text"] == ["b", "a", "c"]


def test_missing_column_is_a_one_line_input_error():
    with pytest.raises(InputError, match="field 'note'.*missing column"):
        unique_notes(Dataset.from_dict({"text": ["x"]}), "note", "data.jsonl")


def test_prompt_is_the_published_template_and_completion_the_answer():
    pairs = to_prompt_completion(Dataset.from_dict(ROWS))
    assert pairs.column_names == ["prompt", "completion"]
    assert pairs[2]["prompt"] == INFERENCE_PROMPT.format(note=ROWS["note"][2], question=ROWS["question"][2])
    assert pairs[2]["prompt"].endswith("[Instruction End] \n")
    assert pairs[2]["completion"] == ROWS["answer"][2]


def test_prompt_tokens_are_exactly_the_inference_tokens(tokenizer):
    prompt = render_inference_prompt(ROWS["note"][0], ROWS["question"][0])
    tokens = tokenize_prompt_completion(tokenizer, prompt, ROWS["answer"][0])
    prompt_ids = tokenizer(prompt)["input_ids"]
    n = len(prompt_ids)
    # The model sees at training exactly the ids it sees at inference, then the answer, then EOS.
    assert tokens["input_ids"][:n] == prompt_ids
    assert tokens["completion_mask"] == [0] * n + [1] * (len(tokens["input_ids"]) - n)
    assert tokens["input_ids"][-1] == tokenizer.eos_token_id
    answer = tokenizer.decode(tokens["input_ids"][n:-1])
    assert answer == ROWS["answer"][0]


def test_collated_batch_masks_every_prompt_token_and_keeps_answer_and_eos(
    tokenizer, tiny_model_path, tmp_path
):
    from trl import ModelConfig, SFTConfig

    from asclepius.training.trainer import build_trainer

    dataset = tokenize_for_sft(to_prompt_completion(Dataset.from_dict(ROWS)), tokenizer)
    args = SFTConfig(
        output_dir=str(tmp_path), report_to="none", bf16=False, use_cpu=True, max_length=512,
        completion_only_loss=True, per_device_train_batch_size=4,
    )  # fmt: skip
    trainer = build_trainer(
        model_args=ModelConfig(model_name_or_path=str(tiny_model_path)),
        training_args=args,
        tokenizer=tokenizer,
        train_dataset=dataset,
    )
    examples = [trainer.train_dataset[i] for i in range(len(ROWS["answer"]))]
    batch = trainer.data_collator(examples)
    labels, input_ids = batch["labels"], batch["input_ids"]
    assert labels.shape[0] == 4 and labels.shape[1] == max(len(e["input_ids"]) for e in examples)
    for row, (note, question, answer) in enumerate(zip(ROWS["note"], ROWS["question"], ROWS["answer"])):
        prompt_ids = tokenizer(render_inference_prompt(note, question))["input_ids"]
        length = int(batch["attention_mask"][row].sum())
        n = len(prompt_ids)
        assert input_ids[row, :n].tolist() == prompt_ids
        assert (labels[row, :n] == -100).all(), "a prompt token carries a loss"
        assert labels[row, n:length].tolist() == input_ids[row, n:length].tolist(), (
            "an answer token is masked"
        )
        assert labels[row, length - 1].item() == tokenizer.eos_token_id, "EOS is not trained on"
        assert tokenizer.decode(labels[row, n : length - 1]) == answer
        assert (labels[row, length:] == -100).all(), "padding carries a loss"


def test_pad_token_is_kept_when_the_tokenizer_has_a_proper_one(tokenizer):
    assert tokenizer.pad_token == "<pad>"
    assert tokenizer.pad_token_id != tokenizer.bos_token_id


def test_pad_equal_to_bos_is_replaced(tiny_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    tok.pad_token = tok.bos_token  # what the original code did
    pad, reason = choose_pad_token(tok)
    assert pad != tok.bos_token
    assert pad == "<pad>" and "reserved" in reason  # <pad> is in the vocabulary


def test_without_a_pad_token_unk_then_eos_are_used(tiny_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    vocab = tok.get_vocab()
    tok.pad_token = None
    # Pretend <pad> is not reserved, as in Llama 1/2 and Mistral: unk is the choice.
    tok_vocab_without_pad = {k: v for k, v in vocab.items() if k != "<pad>"}
    tok.get_vocab = lambda: tok_vocab_without_pad
    assert choose_pad_token(tok)[0] == "<unk>"
    # No unk either (Llama 3 style vocabularies without a reserved pad): eos, never bos.
    tok.unk_token = None
    assert choose_pad_token(tok)[0] == tok.eos_token


def test_reserved_llama3_pad_token_is_preferred(tiny_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    tok.add_special_tokens({"additional_special_tokens": ["<|finetune_right_pad_id|>"]})
    tok.pad_token = None
    assert choose_pad_token(tok)[0] == "<|finetune_right_pad_id|>"


def test_eos_override_must_exist(tiny_model_path):
    with pytest.raises(ValueError, match="not in the vocabulary"):
        load_tokenizer(str(tiny_model_path), eos_token="<|eot_id|>")


def test_original_prompt_format_reproduces_the_original_training_bytes_and_ids(tokenizer):
    row = {"note": ["\nPt w/ CP.\nTrop neg x2.\n"], "question": ["\nWhat were the troponins?\n"],
           "answer": ["\nNegative twice.\n\n"]}  # fmt: skip
    pair = to_prompt_completion(Dataset.from_dict(row), prompt_format="original")[0]
    # Bytes written out by hand from the original's rule: no space after [Instruction End], fields strip("\n").
    expected_prompt = (
        "You are an intelligent clinical languge model.\n"
        "Below is a snippet of patient's discharge summary and a following instruction from healthcare professional.\n"
        "Write a response that appropriately completes the instruction.\n"
        "The response should provide the accurate answer to the instruction, while being concise.\n\n"
        "[Discharge Summary Begin]\nPt w/ CP.\nTrop neg x2.\n[Discharge Summary End]\n\n"
        "[Instruction Begin]\nWhat were the troponins?\n[Instruction End]\n"
    )
    assert pair["prompt"].encode() == expected_prompt.encode()
    assert pair["completion"] == "Negative twice."
    tokens = tokenize_prompt_completion(tokenizer, pair["prompt"], pair["completion"])
    # Token ids: the prompt's own ids, then the answer's, then EOS; loss on answer + EOS only.
    prompt_ids = tokenizer(expected_prompt)["input_ids"]
    joint = tokenizer(expected_prompt + "Negative twice.")["input_ids"]
    assert joint[: len(prompt_ids)] == prompt_ids
    assert tokens["input_ids"] == joint + [tokenizer.eos_token_id]
    assert tokens["completion_mask"] == [0] * len(prompt_ids) + [1] * (len(joint) - len(prompt_ids) + 1)
    # readme (default) keeps the published bytes: a different sequence for the same row.
    readme = to_prompt_completion(Dataset.from_dict(row))[0]
    assert readme["prompt"] == INFERENCE_PROMPT.format(note=row["note"][0], question=row["question"][0])
    assert readme["prompt"].endswith("[Instruction End] \n") and readme["completion"] == row["answer"][0]


def test_prompt_format_is_a_recipe_option_checked_at_parse_time():
    from asclepius.training.config import TrainScriptArguments

    assert TrainScriptArguments(dataset_name="d").prompt_format == "readme"
    assert TrainScriptArguments(dataset_name="d", prompt_format="original").prompt_format == "original"
    with pytest.raises(ValueError, match="--prompt_format must be one of readme, original"):
        TrainScriptArguments(dataset_name="d", prompt_format="alpaca")


def test_the_learning_signal_scores_answers_in_the_training_prompt_format(tokenizer):
    from asclepius.prompts import render_training_prompt
    from asclepius.training.metrics import answer_examples

    note, question, answer = "\nPt w/ CP.\n", "What happened?\n", "\nChest pain.\n"
    for prompt_format, completion in (("readme", answer), ("original", "Chest pain.")):
        prompt = render_training_prompt(note, question, prompt_format)
        [example] = answer_examples(tokenizer, [note], [question], [answer], prompt_format=prompt_format)
        assert example["input_ids"] == tokenize_prompt_completion(tokenizer, prompt, completion)["input_ids"]


def test_the_original_pretraining_stream_of_three_toy_notes():
    # Each note's ids start with the BOS its tokenizer adds (1); EOS is 2.
    notes = [[1, 10, 11], [1, 12], [1, 13, 14, 15]]
    blocks = original_stream_blocks(notes, bos_token_id=1, eos_token_id=2, block_size=5)
    # One BOS, then every note + EOS + BOS: 1 | 1 10 11 2 1 | 1 12 2 1 | 1 13 14 15 2 1  (16 tokens)
    assert blocks == [[1, 1, 10, 11, 2], [1, 1, 12, 2, 1], [1, 13, 14, 15, 2]]  # the last 1 dropped
    assert original_stream_blocks(notes, bos_token_id=1, eos_token_id=2, block_size=17) == []


def test_original_pretraining_blocks_from_notes_with_the_tiny_tokenizer(tokenizer):
    texts = ["Pt w/ CP.", "Hip fx, ORIF.", "Fever x3d."]
    blocks = original_pretraining_blocks(
        Dataset.from_dict({"text": texts}), tokenizer, block_size=8, seed=None
    )
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream = [bos]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        stream += (ids if ids[:1] == [bos] else [bos, *ids]) + [eos, bos]
    assert [token for block in blocks["input_ids"] for token in block] == stream[: len(stream) // 8 * 8]
    assert all(len(block) == 8 for block in blocks["input_ids"])
    # Seeded: the same shuffle on a rerun.
    again = original_pretraining_blocks(Dataset.from_dict({"text": texts}), tokenizer, block_size=8, seed=3)
    assert (
        again["input_ids"]
        == original_pretraining_blocks(Dataset.from_dict({"text": texts}), tokenizer, block_size=8, seed=3)[
            "input_ids"
        ]
    )
    with pytest.raises(InputError, match="less than one 4096-token block"):
        original_pretraining_blocks(Dataset.from_dict({"text": texts}), tokenizer, block_size=4096, seed=None)


def test_pretrain_stream_is_a_pretraining_option_checked_at_parse_time():
    from asclepius.training.config import PretrainScriptArguments

    assert PretrainScriptArguments(dataset_name="d").pretrain_stream == "packed"
    assert PretrainScriptArguments(dataset_name="d", pretrain_stream="original").pretrain_stream == "original"
    with pytest.raises(ValueError, match="--pretrain_stream must be one of packed, original"):
        PretrainScriptArguments(dataset_name="d", pretrain_stream="global")
