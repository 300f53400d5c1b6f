"""MIMIC-III de-identification brackets ``[**...**]`` rewritten as short tags.

MIMIC replaces every identifier with a bracket naming its category and a surrogate id
(``[**Known lastname 123**]``, ``[**Hospital1 18**]``, ``[**MD Number(3) 1234**]``).
The method keeps notes readable by turning each bracket into a short tag ([Name],
[Company], [Reg#], ...), and keeps literal dates (``[**2151-8-12**]`` -> ``2151-8-12``)
because their shifted values still carry the timeline of the stay.

Categories are recognised by keywords, most specific first (a "Hospital Ward Name" is a
place, not a company nor a name). Anything unrecognised becomes :data:`GENERIC_TAG`,
and the stage counts those labels so a new category shows up in the card.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

BRACKET = re.compile(r"\[\*\*(.*?)\*\*\]", re.DOTALL)
GENERIC_TAG = "[Redacted]"

# Shifted dates written out: 2151-8-12, 8-12, 8/12, 8/12/2151, a bare year.
_LITERAL_DATE = re.compile(
    r"^(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}(?:-\d{2,4})?|\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{4})$"
)

# (tag, patterns) in priority order: the first whose pattern occurs in the label wins.
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("[URL]", (r"\burl\b",)),
    ("[CI]", (r"e-?mail", r"contact info")),
    ("[DR]", (r"date range",)),
    ("[Age]", (r"age over 90",)),
    ("[Country]", (r"\bcountry\b",)),
    ("[State]", (r"\bstate\b",)),
    (
        "[LOC]",
        (r"ward", r"address", r"location", r"apartment", r"street", r"po box", r"unit name", r"\bcity\b"),
    ),
    ("[Company]", (r"hospital", r"company", r"university", r"college")),
    ("[Reg#]", (r"medical record", r"record number", r"md number", r"unit number", r"provider number")),
    (
        "[#]",
        (
            r"telephone",
            r"\bfax\b",
            r"phone",
            r"pager",
            r"serial",
            r"social security",
            r"\bssn\b",
            r"job number",
            r"clip number",
            r"numeric identifier",
            r"\bnumber\b",
        ),
    ),
    ("[Name]", (r"name", r"initials", r"attending info")),
    ("[DAY]", (r"holiday", r"\bday\b")),
    ("[MO]", (r"\bmonth\b",)),
    ("[YR]", (r"\byear\b",)),
)
_COMPILED_RULES = tuple(
    (tag, tuple(re.compile(p, re.IGNORECASE) for p in patterns)) for tag, patterns in _RULES
)

TAGS: tuple[str, ...] = tuple(tag for tag, _ in _RULES) + (GENERIC_TAG,)


def bracket_label(inner: str) -> str:
    """The category part of a bracket: 'Known lastname 123' -> 'Known lastname'."""
    label = re.sub(r"\s+\d+\s*$", "", inner.strip())
    return re.sub(r"\s+", " ", label).strip()


def tag_for(inner: str) -> str | None:
    """The tag for a bracket's content; the literal date text for dates; None when unknown."""
    content = inner.strip()
    if _LITERAL_DATE.match(content):
        return content
    for tag, patterns in _COMPILED_RULES:
        if any(pattern.search(content) for pattern in patterns):
            return tag
    return None


@dataclass
class DeidStats:
    """What the rewriting did, summed over notes: tag counts and unrecognised labels."""

    tags: Counter = field(default_factory=Counter)
    dates_kept: int = 0
    unknown_labels: Counter = field(default_factory=Counter)

    def update(self, other: DeidStats) -> None:
        self.tags.update(other.tags)
        self.dates_kept += other.dates_kept
        self.unknown_labels.update(other.unknown_labels)


def rewrite_brackets(text: str, stats: DeidStats | None = None) -> str:
    """Replace every ``[**...**]`` in ``text`` with its short tag (counting into ``stats``)."""

    def replace(match: re.Match) -> str:
        inner = match.group(1)
        tag = tag_for(inner)
        if tag is None:
            if stats is not None:
                stats.unknown_labels[bracket_label(inner) or "(empty)"] += 1
                stats.tags[GENERIC_TAG] += 1
            return GENERIC_TAG
        if stats is not None:
            if tag.startswith("["):
                stats.tags[tag] += 1
            else:
                stats.dates_kept += 1
        return tag

    return BRACKET.sub(replace, text)
