"""The licence of a trained model: its data's and its base model's, the stricter named on the card.

A model is bound by the licence of what it learned from and of the weights it started
from. The card's single ``license`` field names the stricter of the two (both apply; the
card's text names each). Where either is unknown, or not on the scale below (a bespoke
``other`` licence), the two cannot be ranked: the card says ``other`` and names both,
so nobody reads a permissive licence into it. MIMIC-derived data is handled before this
(PhysioNet's licence, stricter than any).

Licences are read, never guessed: a local folder's card, a Hub id's card in the local
cache (nothing is downloaded), else the small table of the ids the recipes name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asclepius.stage.files import read_card_metadata
from asclepius.stage.provenance import classify

# The Hub's licence identifiers, from permissive to restrictive. Same rank: neither is stricter.
STRICTNESS: dict[str, int] = {
    **dict.fromkeys(("cc0-1.0", "unlicense", "pddl"), 0),
    **dict.fromkeys(
        ("mit", "apache-2.0", "bsd", "bsd-2-clause", "bsd-3-clause", "cc-by-3.0", "cc-by-4.0"), 1
    ),
    **dict.fromkeys(("cc-by-sa-3.0", "cc-by-sa-4.0", "odc-by", "gpl-3.0", "lgpl-3.0"), 2),
    # Custom licences with use restrictions, but commercial use allowed.
    **dict.fromkeys(("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "gemma", "openrail"), 3),
    **dict.fromkeys(("cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0"), 4),
    **dict.fromkeys(("cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0"), 5),
}

# What the Hub cards of the ids named in recipes/ say, for when the card is not in the cache.
KNOWN_LICENSES: dict[str, tuple[str, str | None]] = {
    "starmpcc/Asclepius-Synthetic-Clinical-Notes": ("cc-by-nc-sa-4.0", None),
    "huggyllama/llama-7b": ("other", "llama-1-noncommercial"),
    "huggyllama/llama-13b": ("other", "llama-1-noncommercial"),
    "meta-llama/Llama-2-7b-hf": ("llama2", None),
    "meta-llama/Llama-2-13b-hf": ("llama2", None),
    "meta-llama/Meta-Llama-3-8B": ("llama3", None),
    "meta-llama/Llama-3.1-8B": ("llama3.1", None),
    "mistralai/Mistral-7B-v0.3": ("apache-2.0", None),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("apache-2.0", None),
}


@dataclass(frozen=True)
class License:
    """One input's licence: the Hub identifier (``other`` for a bespoke one) and its name."""

    license: str | None  # None: unknown
    name: str | None = None
    link: str | None = None
    source: str = ""  # where it was read: "its card", "the Hub cache", "the recipes' table", "declared"

    @property
    def known(self) -> bool:
        return bool(self.license)

    @property
    def rank(self) -> int | None:
        """Position on :data:`STRICTNESS`; None when it cannot be ranked (unknown, ``other``)."""
        return STRICTNESS.get(self.license or "")

    def describe(self) -> str:
        if not self.known:
            return "unknown"
        named = f"{self.license} ({self.name})" if self.name and self.name != self.license else self.license
        return f"{named}, from {self.source}" if self.source else named

    def card_fields(self) -> dict[str, str]:
        fields = {"license": self.license or "other"}
        if self.license == "other" or not self.known:
            fields["license_name"] = self.name or "unknown"
        if self.link:
            fields["license_link"] = self.link
        return fields


UNKNOWN_LICENSE = License(None)


def from_card(folder: str | os.PathLike, source: str = "its card") -> License:
    metadata = read_card_metadata(folder)
    if not metadata.get("license"):
        return UNKNOWN_LICENSE
    return License(metadata["license"], metadata.get("license_name"), metadata.get("license_link"), source)


def of_input(name_or_path: str | None, declared: str | None = None) -> License:
    """The licence of a dataset or model: declared, its local card, its cached Hub card, or the table."""
    if declared:
        return License(declared, source="the declaration (--dataset_license)")
    if not name_or_path:
        return UNKNOWN_LICENSE
    if Path(name_or_path).exists():
        # The card that speaks for it: its own, or (a file, a data/ parquet) its folder's.
        found = classify(name_or_path)
        if found.license is None:
            return UNKNOWN_LICENSE
        return License(found.license, found.license_name, found.license_link, "its card")
    cached = _cached_hub_card(name_or_path)
    if cached is not None and cached.known:
        return cached
    if name_or_path in KNOWN_LICENSES:
        license, name = KNOWN_LICENSES[name_or_path]
        return License(license, name, source="its Hub card")
    return UNKNOWN_LICENSE


def _cached_hub_card(repo_id: str) -> License | None:
    """The licence in a Hub card already in the local cache (model or dataset); nothing is downloaded."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    for repo_type in ("model", "dataset"):
        try:
            path = try_to_load_from_cache(repo_id, "README.md", repo_type=repo_type)
        except Exception:  # noqa: BLE001 - an id the cache cannot hold is simply not cached
            continue
        if isinstance(path, str):
            return from_card(Path(path).parent, source="its card in the Hub cache")
    return None


def stricter(*licenses: License) -> License:
    """The licence that governs: the strictest of ``licenses``; ``other`` when they cannot be ranked.

    Every input must be known and on the scale to pick one; otherwise the result is an
    ``other`` licence named after the inputs that could not be ranked (fail closed).
    """
    unranked = [item for item in licenses if item.rank is None]
    if not unranked:
        return max(licenses, key=lambda item: item.rank)
    names = sorted({item.name or item.license or "unknown" for item in unranked})
    if len(unranked) == 1 and unranked[0].known:
        return unranked[0]  # one bespoke licence among ranked ones: it is the one to read
    return License("other", "+".join(names), source="the inputs' licences together")
