"""MIMIC-III de-identification brackets ``[**...**]`` rewritten as short tags.

MIMIC replaces every identifier with a bracket naming its category and a surrogate id
(``[**Known lastname 123**]``, ``[**Hospital1 18**]``, ``[**MD Number(3) 1234**]``).
The method keeps notes readable by turning each bracket into a short tag ([Name],
[Company], [Reg#], ...), and keeps literal dates (``[**2151-8-12**]`` -> ``2151-8-12``)
because their shifted values still carry the timeline of the stay.

Two styles (``deid_style``):

* ``original`` (the default, and what the Asclepius-R recipes use): the original code's
  rules exactly: its category list in its order (the first category whose name occurs
  in the span, as written or lower-cased), its fallbacks for spans of no category, and
  its joining of the note's pieces with one space on each side of every replacement, so
  a NOTEEVENTS note comes out byte for byte as the original made it. Where the original
  code would have stopped with an error, the span becomes :data:`GENERIC_TAG` and is
  counted (``DeidStats.rejected``) instead.
* ``ours``: keyword rules, most specific first (a "Hospital Ward Name" is a place, not a
  company), the note's own spacing kept, bare years and other shifted dates kept as
  dates. It reads more naturally, but models trained on it see other bytes than the
  released Asclepius-R did.

Either way, labels no rule knows become :data:`GENERIC_TAG`, and the stage counts them
so a new category shows up in the card.
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

# --- the original code's rules (facts in REFERENCE.md; written here in our own code) -------
# (category name, tag) in the original's order: the first name found in the span wins.
ORIGINAL_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("First Name", "[Name]"),
    ("Last Name", "[Name]"),
    ("Clip Number (Radiology)", "[Reg#]"),
    ("Hospital", "[Company]"),
    ("Numeric Identifier", "[Reg#]"),
    ("Location", "[LOC]"),
    ("Initials", "[Name]"),
    ("Known lastname", "[Name]"),
    ("Known firstname", "[Name]"),
    ("Age over 90", "[Age]"),
    ("Medical Record Number", "[Reg#]"),
    ("Telephone/Fax", "[#]"),
    ("Name", "[Name]"),
    ("Street Address", "[LOC]"),
    ("Date Range", "[DR]"),
    ("Date range", "[DR]"),
    ("Serial Number", "[#]"),
    ("Social Security Number", "[#]"),
    ("State", "[State]"),
    ("E-mail address", "[CI]"),
    ("Company", "[Company]"),
    ("Pager number", "[#]"),
    ("Country", "[Country]"),
    ("MD Number", "[Reg#]"),
    ("Wardname", "[LOC]"),
    ("College", "[Company]"),
    ("Apartment Address", "[LOC]"),
    ("URL", "[URL]"),
    ("CC Contact Info", "[CI]"),
    ("Attending Info", "[CI]"),
    ("Job Number", "[Reg#]"),
    ("Year", "[YR]"),
    ("Month", "[MO]"),
    ("Day", "[DAY]"),
    ("Holiday", "[DAY]"),
    ("Unit Number", "[Reg#]"),
    ("PO Box", "[LOC]"),
    ("Dictator Info", "[CI]"),
    ("Provider Number", "[#]"),
)
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
# What the original did with a span of no category (keys of DeidStats.fallbacks).
KEPT_DATE = "kept: two hyphens (a literal date)"
NUMBER_TO_REG = "number -> [Reg#]"
KEPT_NUMERIC = "kept: numeric without - and /"
KEPT_MONTH = "kept: contains a month name"
REMOVED_EMPTY = "removed: empty"
REJECTED = f"rejected by the original -> {GENERIC_TAG}"

DEID_STYLES = ("original", "ours")
DEFAULT_DEID_STYLE = "original"

TAGS: tuple[str, ...] = tuple(
    dict.fromkeys([tag for tag, _ in _RULES] + [t for _, t in ORIGINAL_CATEGORIES])
) + (GENERIC_TAG,)


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


def original_replacement(inner: str) -> tuple[str, str | None]:
    """What the original did with one span's text: (replacement, fallback used or None).

    A category whose name occurs in the span (as written, or lower-cased) gives its tag;
    else the fallbacks in the original's order. A span the original would have failed
    on gets :data:`GENERIC_TAG` and the fallback name :data:`REJECTED`.
    """
    for name, tag in ORIGINAL_CATEGORIES:
        if name in inner or name.lower() in inner:
            return tag, None
    if inner.count("-") == 2:
        return inner, KEPT_DATE
    if inner.strip().isnumeric():
        return "[Reg#]", NUMBER_TO_REG
    if inner.replace("-", "").replace("/", "").isnumeric():
        return inner, KEPT_NUMERIC
    if any(month in inner for month in _MONTH_NAMES):
        return inner, KEPT_MONTH
    if not inner.strip():
        return "", REMOVED_EMPTY
    return GENERIC_TAG, REJECTED


@dataclass
class DeidStats:
    """What the rewriting did, summed over notes: tag counts, fallbacks and unrecognised labels."""

    tags: Counter = field(default_factory=Counter)
    dates_kept: int = 0
    unknown_labels: Counter = field(default_factory=Counter)
    fallbacks: Counter = field(default_factory=Counter)  # original style: spans of no category, by rule

    @property
    def rejected(self) -> int:
        """Spans the original code would have failed on (here tagged [Redacted])."""
        return self.fallbacks[REJECTED]

    def update(self, other: DeidStats) -> None:
        self.tags.update(other.tags)
        self.dates_kept += other.dates_kept
        self.unknown_labels.update(other.unknown_labels)
        self.fallbacks.update(other.fallbacks)


def rewrite_brackets(text: str, stats: DeidStats | None = None, style: str = DEFAULT_DEID_STYLE) -> str:
    """Replace every ``[**...**]`` in ``text`` by its tag in ``style`` (counting into ``stats``)."""
    if style == "original":
        return rewrite_brackets_original(text, stats)
    if style != "ours":
        raise ValueError(f"deid_style must be one of {', '.join(DEID_STYLES)}; got {style!r}")
    return rewrite_brackets_ours(text, stats)


def rewrite_brackets_original(text: str, stats: DeidStats | None = None) -> str:
    """The original's rewriting: the text around the spans and each span's replacement, joined by single spaces.

    The joining puts one space on each side of every replacement whatever spacing the
    note had (``"Dr. [**Last Name 1**]."`` -> ``"Dr.  [Name] ."``); empty pieces (an
    empty span, no text between two spans or at either end) are left out of the join.
    """
    parts = BRACKET.split(text)  # text, span, text, span, ..., text
    pieces = [parts[0]]
    for index in range(1, len(parts), 2):
        inner = parts[index]
        replacement, fallback = original_replacement(inner)
        if stats is not None:
            if fallback is not None:
                stats.fallbacks[fallback] += 1
            if fallback == REJECTED:
                stats.unknown_labels[bracket_label(inner) or "(empty)"] += 1
            if replacement.startswith("[") and replacement.endswith("]"):
                stats.tags[replacement] += 1
            elif replacement:
                stats.dates_kept += 1
        pieces += [replacement, parts[index + 1]]
    return " ".join(piece for piece in pieces if piece)


def rewrite_brackets_ours(text: str, stats: DeidStats | None = None) -> str:
    """Our keyword rules; the note's spacing is kept."""

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
