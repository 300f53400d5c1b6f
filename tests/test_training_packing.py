"""Packed batches: fixed blocks for continued pretraining, and no attention across sequences.

In a padding-free packed batch (``bfd`` packing, or ``padding_free``) several sequences
share one row; each must see only itself. The test compares the logits of every
sequence in the packed row with the same sequence run alone.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from asclepius.training.formatting import to_prompt_completion, tokenize_for_sft, unique_notes
from asclepius.training.tokenizer import load_tokenizer

NOTES = [
    "Reason for Admission: chest pain. Cath: LAD stent. Discharged on ASA, ticagrelor.",
    "HPI: 70 yo F w/ fall, R hip fx. ORIF done. PT/OT. Discharged to rehab day 5.",
    "Pt w/ DKA, pH 7.1, started on insulin gtt, AG closed in 18 hrs, back on home insulin.",
    "CAP w/ RLL infiltrate, ceftriaxone + azithro, afebrile by day 2, home on PO abx.",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return load_tokenizer(str(tiny_model_path))


@pytest.fixture(scope="module")
def model(tiny_model_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, attn_implementation="sdpa").eval()
    # Larger random weights than the default init, so that attending to another sequence
    # would visibly change the logits.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.2)
    return model


def make_trainer(tiny_model_path, tokenizer, tmp_path, dataset, **config):
    from trl import ModelConfig, SFTConfig

    from asclepius.training.trainer import build_trainer

    args = SFTConfig(output_dir=str(tmp_path), report_to="none", bf16=False, use_cpu=True, **config)
    return build_trainer(
        model_args=ModelConfig(model_name_or_path=str(tiny_model_path)),
        training_args=args,
        tokenizer=tokenizer,
        train_dataset=dataset,
    )


def assert_sequences_isolated(model, batch):
    """Each sequence's logits in the packed row equal its logits when run alone."""
    assert batch["input_ids"].shape[0] == 1, "a padding-free batch is one row"
    assert "attention_mask" not in batch
    # As SFTTrainer.compute_loss calls it: use_cache=False. With a KV cache, transformers
    # does not derive the per-sequence mask from position_ids.
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        packed_logits = model(**inputs, use_cache=False).logits[0]
        bounds = batch["cu_seq_lens_q"].tolist()
        assert len(bounds) >= 3, "the packed row should hold at least two sequences"
        for start, end in zip(bounds[:-1], bounds[1:]):
            alone = model(input_ids=batch["input_ids"][:, start:end]).logits[0]
            torch.testing.assert_close(packed_logits[start:end], alone, atol=1e-4, rtol=1e-4)
        # The check can fail: with plain positions (one long sequence) the second sequence
        # attends to the first and its logits move.
        start, end = bounds[1], bounds[2]
        leaky = model(input_ids=batch["input_ids"]).logits[0]
        alone = model(input_ids=batch["input_ids"][:, start:end]).logits[0]
        assert (leaky[start:end] - alone).abs().max() > 1e-2


def test_bfd_packed_answers_do_not_attend_to_each_other(tiny_model_path, tokenizer, model, tmp_path):
    rows = Dataset.from_dict(
        {"note": NOTES, "question": ["What happened?"] * 4, "answer": ["Treated and discharged home."] * 4}
    )
    dataset = tokenize_for_sft(to_prompt_completion(rows), tokenizer)
    longest = max(len(ids) for ids in dataset["input_ids"])
    trainer = make_trainer(
        tiny_model_path, tokenizer, tmp_path, dataset, packing=True, packing_strategy="bfd",
        max_length=3 * longest, completion_only_loss=True,
    )  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[0]])
    assert_sequences_isolated(model, batch)
    # Labels: every sequence's first token has no target; prompts stay masked when packed.
    assert (batch["labels"][0, batch["cu_seq_lens_q"][:-1]] == -100).all()
    assert (batch["labels"] != -100).sum() < batch["labels"].numel() / 2


def test_padding_free_batch_isolates_sequences(tiny_model_path, tokenizer, model, tmp_path):
    dataset = unique_notes(Dataset.from_dict({"note": NOTES}))
    trainer = make_trainer(
        tiny_model_path, tokenizer, tmp_path, dataset, padding_free=True, max_length=None,
        per_device_train_batch_size=4,
    )  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert_sequences_isolated(model, batch)


def test_wrapped_packing_cuts_notes_joined_by_eos_into_full_blocks(tiny_model_path, tokenizer, tmp_path):
    dataset = unique_notes(Dataset.from_dict({"note": NOTES * 3}))  # repeats are dropped first
    assert len(dataset) == len(NOTES)
    trainer = make_trainer(
        tiny_model_path, tokenizer, tmp_path, dataset, packing=True, packing_strategy="wrapped", max_length=32
    )
    blocks = trainer.train_dataset["input_ids"]
    total = sum(len(tokenizer(note + tokenizer.eos_token)["input_ids"]) for note in NOTES)
    assert sum(len(block) for block in blocks) == total, "every token of every distinct note, once"
    assert all(len(block) == 32 for block in blocks[:-1]) and 0 < len(blocks[-1]) <= 32
    stream = [token for block in blocks for token in block]
    assert stream.count(tokenizer.eos_token_id) == len(NOTES), "one EOS after each note"
    assert stream.count(tokenizer.bos_token_id) == len(NOTES)
