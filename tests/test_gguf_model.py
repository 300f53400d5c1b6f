"""The GGUF conversion parses each file once: shared, read-only readers while converting, restored after."""

from __future__ import annotations

import gguf
import numpy as np

from asclepius.gguf_model import parse_gguf_once


def _write_small_gguf(path):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(8, dtype=np.float32).reshape(2, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_each_file_is_parsed_once_while_converting_and_gguf_is_restored_after(tmp_path):
    path = _write_small_gguf(tmp_path / "small.gguf")
    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with parse_gguf_once():
        first, again = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is again
        assert np.array_equal(first.tensors[0].data, np.arange(8, dtype=np.float32).reshape(2, 4))
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 1) is gguf.get_tensor_name_map(arch, 1)
    assert gguf.GGUFReader is original_reader and gguf.get_tensor_name_map is original_map
    assert gguf.GGUFReader(path) is not first  # outside a conversion: a fresh parse, as before


def test_conversion_writes_the_weights_once_with_their_stamp(tiny_model_path, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import asclepius.gguf_model as gguf_model
    import asclepius.stage.stamps as stamps

    # The GGUF parsing itself is tested above; here the loaded model is the tiny one.
    loaded = (
        AutoModelForCausalLM.from_pretrained(tiny_model_path),
        AutoTokenizer.from_pretrained(tiny_model_path),
    )
    monkeypatch.setattr(gguf_model, "load_gguf", lambda path, dtype: loaded)

    def no_rewrite(*args, **kwargs):
        raise AssertionError("the weights were copied again to add the stamp")

    monkeypatch.setattr(stamps.shutil, "copyfileobj", no_rewrite)
    out = gguf_model.convert_gguf(tmp_path / "model.gguf", tmp_path / "converted")
    # No card data (licence unknown): the weights say unknown (restricted until known), as the card does.
    assert stamps.read_stamp(out / "model.safetensors")["status"] == "unknown"
    assert (out / "README.md").exists()
