import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asclepius.tiny import TINY_CONFIG, build_tiny_model


def test_tiny_model_reloads_and_generates(tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < n_params < 10e6
    assert model.config.model_type == "llama"
    assert tokenizer.pad_token_id not in (tokenizer.bos_token_id, tokenizer.eos_token_id)
    inputs = tokenizer("Pt admitted w/ chest pain.", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] == inputs.input_ids.shape[1] + 8 or output[0, -1] == tokenizer.eos_token_id
    assert tokenizer.decode(output[0], skip_special_tokens=True).startswith("Pt admitted w/ chest pain.")


def test_tokenizer_round_trips_clinical_text(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    text = "HPI: 67yo M w/ HTN, high cholesterol; troponin 2.3 ng/mL -> PCI to LAD. Résumé ±5 mg/dL.\n\tf/u 2 wks"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(ids) < len(text.encode())  # BPE merged something


def test_chat_template_renders_generation_prompt(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What was the diagnosis?"}], tokenize=False, add_generation_prompt=True
    )
    assert "What was the diagnosis?" in rendered
    assert rendered.endswith("<|assistant|>\n")


def test_build_is_deterministic_for_a_seed(tmp_path):
    first = build_tiny_model(tmp_path / "a", seed=3)
    second = build_tiny_model(tmp_path / "b", seed=3)
    other = build_tiny_model(tmp_path / "c", seed=4)
    load = lambda p: AutoModelForCausalLM.from_pretrained(p).state_dict()  # noqa: E731
    a, b, c = load(first), load(second), load(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    assert (
        TINY_CONFIG["num_hidden_layers"]
        == AutoModelForCausalLM.from_pretrained(first).config.num_hidden_layers
    )


def test_tiny_model_card_says_public(tiny_model_path):
    """Its card (written last) makes models trained from it pushable; a generic GGUF stays unknown."""
    from asclepius.stage import classify, read_card_metadata

    metadata = read_card_metadata(tiny_model_path)
    assert metadata["license"] == "apache-2.0" and metadata["data_provenance"] == "public"
    assert classify(str(tiny_model_path), kind="model").status == "public"
