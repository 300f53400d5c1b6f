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
