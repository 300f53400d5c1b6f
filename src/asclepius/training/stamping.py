"""Weights saved with their provenance stamp already in the safetensors header: no copy afterwards.

:func:`asclepius.stage.stamps.stamp_safetensors` can stamp any file, but the header grows,
so it rewrites the whole file (a 13B checkpoint is 26 GB, at every save). Inside
:func:`stamped_saves`, the files ``transformers`` writes carry the stamp from the start;
:func:`asclepius.stage.stamps.stamp_weights` after the save then finds nothing to do, and
still stamps what another writer saved (a peft adapter) the slow way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import transformers.modeling_utils as modeling_utils

from asclepius.stage.provenance import Provenance
from asclepius.stage.stamps import STAMP_KEY, stamp_text, stamp_weights


@contextlib.contextmanager
def stamped_saves(provenance: Provenance) -> Iterator[None]:
    """``save_pretrained`` of a transformers model writes ``provenance`` into every safetensors header."""
    original = modeling_utils.safe_save_file
    text = stamp_text(provenance)

    def save_file(tensors, filename, metadata=None):
        return original(tensors, filename, metadata={**(metadata or {}), STAMP_KEY: text})

    modeling_utils.safe_save_file = save_file
    try:
        yield
    finally:
        modeling_utils.safe_save_file = original


def save_stamped(model, output_dir, provenance: Provenance) -> None:
    """``model.save_pretrained(output_dir)``, its weights written once with ``provenance`` in their header
    (and stamped the slow way if transformers saved them another way)."""
    with stamped_saves(provenance):
        model.save_pretrained(output_dir)
    stamp_weights(output_dir, provenance)
