"""Weights saved by transformers carry their stamp from the start: nothing is rewritten afterwards."""

from __future__ import annotations

from transformers import AutoModelForCausalLM

from asclepius.stage.provenance import restricted
from asclepius.stage.stamps import read_stamp, stamp_safetensors
from asclepius.training.stamping import stamped_saves


def test_saves_inside_the_block_are_stamped_and_need_no_rewrite(tiny_model_path, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    mimic = restricted("/secure/NOTEEVENTS.csv", "MIMIC NOTEEVENTS columns")
    with stamped_saves(mimic):
        model.save_pretrained(tmp_path / "stamped")
    weights = tmp_path / "stamped" / "model.safetensors"
    assert read_stamp(weights)["status"] == "restricted"
    assert not stamp_safetensors(weights, mimic), "already stamped: the file is not copied again"
    model.save_pretrained(tmp_path / "plain")  # outside the block: transformers as it is
    assert read_stamp(tmp_path / "plain" / "model.safetensors") is None
    assert (
        AutoModelForCausalLM.from_pretrained(tmp_path / "stamped").num_parameters() == model.num_parameters()
    )


def test_save_stamped_writes_the_weights_once_with_their_stamp(tiny_model_path, tmp_path, monkeypatch):
    import asclepius.stage.stamps as stamps
    from asclepius.training.stamping import save_stamped

    def no_rewrite(*args, **kwargs):
        raise AssertionError("the weights were copied again to add the stamp")

    monkeypatch.setattr(stamps.shutil, "copyfileobj", no_rewrite)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    save_stamped(model, tmp_path / "saved", restricted("/secure/NOTEEVENTS.csv", "MIMIC NOTEEVENTS columns"))
    assert read_stamp(tmp_path / "saved" / "model.safetensors")["status"] == "restricted"
