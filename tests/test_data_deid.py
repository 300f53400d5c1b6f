"""De-identification in the original code's style: every category, every fallback, its spacing.

The expected tags below were worked out by hand from the original's rules as written in
REFERENCE.md (first category in its order whose name occurs in the span, as written or
lower-cased; then the fallbacks), not from the implementation.
"""

from __future__ import annotations

import pytest

from asclepius.data.deid import (
    GENERIC_TAG,
    KEPT_DATE,
    KEPT_MONTH,
    KEPT_NUMERIC,
    NUMBER_TO_REG,
    ORIGINAL_CATEGORIES,
    REJECTED,
    REMOVED_EMPTY,
    DeidStats,
    rewrite_brackets,
)

# One span per category of the original list (and a few whose order decides), with its tag.
CATEGORY_SPANS = {
    "First Name8 (NamePattern2) ": "[Name]",
    "Last Name (NamePattern1) 123": "[Name]",
    "Clip Number (Radiology) 123": "[Reg#]",
    "Hospital1 18": "[Company]",
    "Hospital Ward Name 52": "[Company]",  # "Hospital" comes before any place or name
    "Hospital Unit Name 10": "[Company]",
    "Numeric Identifier 123": "[Reg#]",
    "Location (un) 620": "[LOC]",
    "Initials (NamePattern4) 4321": "[Name]",
    "Known lastname 123": "[Name]",
    "Known firstname 12": "[Name]",
    "Age over 90 ": "[Age]",
    "Medical Record Number 12345": "[Reg#]",
    "Telephone/Fax (1) 5678": "[#]",
    "Name (NI) 123": "[Name]",
    "Street Address(2) 456": "[LOC]",
    "Date Range ": "[DR]",
    "Date range (1) 123": "[DR]",
    "Serial Number 123": "[#]",
    "Social Security Number 123": "[#]",
    "State 350": "[State]",
    "E-mail address 123": "[CI]",
    "Company 123": "[Company]",
    "Pager number 123": "[#]",
    "Country 1234": "[Country]",
    "MD Number(3) 1234": "[Reg#]",
    "Wardname 123": "[Name]",  # "name" (Name, lower-cased) occurs before Wardname is tried
    "College 12": "[Company]",
    "Apartment Address(1) 123": "[LOC]",
    "URL 1234": "[URL]",
    "CC Contact Info 55": "[CI]",
    "Attending Info 7": "[CI]",
    "Job Number 1234": "[Reg#]",
    "Year (4 digits) 2150": "[YR]",
    "Month (only) 51": "[MO]",
    "Month/Day (2) 123": "[MO]",  # Month is tried before Day
    "Day Month 12": "[MO]",
    "Holiday 1234": "[DAY]",  # "day" (Day, lower-cased) occurs in "Holiday"
    "Day 3": "[DAY]",
    "Unit Number 123": "[Reg#]",
    "PO Box 12": "[LOC]",
    "Dictator Info 99": "[CI]",
    "Provider Number 123": "[#]",
}
# Spans of no category: the original's fallbacks, in its order.
FALLBACK_SPANS = {
    "2118-6-2": ("2118-6-2", KEPT_DATE),
    "2118-06-02 12:30": ("2118-06-02 12:30", KEPT_DATE),
    "1234": ("[Reg#]", NUMBER_TO_REG),
    " 1234 ": ("[Reg#]", NUMBER_TO_REG),  # numeric once stripped
    "2150": ("[Reg#]", NUMBER_TO_REG),  # a bare year is a number to the original
    "6-2": ("6-2", KEPT_NUMERIC),
    "6/2/2118": ("6/2/2118", KEPT_NUMERIC),
    "January 5": ("January 5", KEPT_MONTH),
    "Foo Bar 12": (GENERIC_TAG, REJECTED),  # the original stopped here; we tag and count it
}


def test_every_category_of_the_original_is_covered():
    names = {name for name, _ in ORIGINAL_CATEGORIES}
    assert len(ORIGINAL_CATEGORIES) == 39 and all(
        any(name in span for span in CATEGORY_SPANS) for name in names
    )


@pytest.mark.parametrize("span, tag", sorted(CATEGORY_SPANS.items()))
def test_each_category_gets_the_original_tag_with_single_spaces_around(span, tag):
    # The original joins text and replacements with one space each side, whatever was there.
    assert rewrite_brackets(f"seen by [**{span}**] today", style="original") == f"seen by  {tag}  today"


@pytest.mark.parametrize("span, expected", sorted(FALLBACK_SPANS.items()))
def test_each_fallback_of_the_original(span, expected):
    replacement, fallback = expected
    stats = DeidStats()
    assert rewrite_brackets(f"on [**{span}**].", stats, style="original") == f"on  {replacement} ."
    assert stats.fallbacks == {fallback: 1}
    assert stats.rejected == (1 if fallback == REJECTED else 0)


def test_a_note_with_every_category_and_fallback_byte_for_byte():
    spans = [*CATEGORY_SPANS, *FALLBACK_SPANS, "", "  "]
    note = "Admission Date: " + ", ".join(f"[**{span}**]" for span in spans) + "\nEnd."
    stats = DeidStats()
    out = rewrite_brackets(note, stats, style="original")
    # Written out from the rules: "Admission Date: " + sep.join(...) with one space each side of a
    # replacement; an empty span gives no piece, so only the join spaces around it remain.
    replacements = [*CATEGORY_SPANS.values(), *(r for r, _ in FALLBACK_SPANS.values())]
    expected = "Admission Date:  " + " ,  ".join(replacements) + " ,  ,  \nEnd."
    assert out == expected
    assert stats.rejected == 1 and stats.unknown_labels == {"Foo Bar": 1}
    assert stats.fallbacks[REMOVED_EMPTY] == 2 and stats.fallbacks[KEPT_DATE] == 2
    assert sum(stats.tags.values()) == len(CATEGORY_SPANS) + 4  # three [Reg#] numbers and one [Redacted]


def test_adjacent_and_empty_spans_and_the_ours_style_spacing():
    # Empty pieces (no text between or around spans, an empty span) are left out of the join.
    assert (
        rewrite_brackets("[**Known lastname 1**][**Known firstname 2**]", style="original") == "[Name] [Name]"
    )
    assert rewrite_brackets("[**Known lastname 1**] went home", style="original") == "[Name]  went home"
    assert rewrite_brackets("a[****]b", style="original") == "a b"
    assert rewrite_brackets("a [**  **] b", style="original") == "a   b"
    # Ours keeps the note's own spacing and reads a bare year as a date.
    assert rewrite_brackets("Dr. [**Last Name (NamePattern1) 12**] in [**2150**].", style="ours") == (
        "Dr. [Name] in 2150."
    )
    with pytest.raises(ValueError, match="deid_style must be one of original, ours"):
        rewrite_brackets("x", style="mimic")
