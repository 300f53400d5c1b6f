"""MIMIC-III: de-identification tags (our style here; the original's in test_data_deid.py), the
exclusion list (the original's 517 ROW_IDs by default), discharge summaries only, chunked reading."""

from __future__ import annotations

import csv

import pytest
from datasets import load_dataset
from test_data_pipeline import error_line, run_script, script_env

from asclepius.data.deid import GENERIC_TAG, DeidStats, rewrite_brackets, tag_for
from asclepius.data.mimic import (
    MimicCounts,
    default_exclusion_list,
    exclusion_ids,
    iter_discharge_summaries,
    read_exclusion_list,
)
from asclepius.errors import InputError
from asclepius.stage.files import read_card_metadata
from asclepius.stage.provenance import MIMIC_LICENSE_NAME, is_mimic_derived
from asclepius.stage.push import push_folder
from asclepius.testing import OpenAIServer

# Every bracket form named in the issue, with the tag the method's list asks for.
BRACKETS = {
    "Known lastname 123": "[Name]",
    "First Name8 (NamePattern2) ": "[Name]",
    "Hospital1 18": "[Company]",
    "Location (un) 620": "[LOC]",
    "MD Number(3) 1234": "[Reg#]",
    "Medical Record Number 12345": "[Reg#]",
    "Telephone/Fax (1) 5678": "[#]",
    "Month (only) 51": "[MO]",
    "Year (4 digits) 2150": "[YR]",
    "Date range (1) 123": "[DR]",
    "Holiday 1234": "[DAY]",
    "Age over 90 ": "[Age]",
    "State 350": "[State]",
    "Country 1234": "[Country]",
    "URL 1234": "[URL]",
    "E-mail address 123": "[CI]",
    "Apartment Address(1) 123": "[LOC]",
    "Street Address(2) 456": "[LOC]",
    "Company 123": "[Company]",
    "Doctor Last Name 123": "[Name]",
    "Name (NI) 123": "[Name]",
    "Initials (NamePattern4) 4321": "[Name]",
    "Wardname 123": "[LOC]",
    "Unit Number 123": "[Reg#]",
    "Serial Number 123": "[#]",
    "Social Security Number 123": "[#]",
    "Job Number 1234": "[#]",
    "Pager number 123": "[#]",
    "Clip Number (Radiology) 123": "[#]",
    "Day Month 12": "[DAY]",
    "Numeric Identifier 123": "[#]",
    "Hospital Ward Name 52": "[LOC]",
    "Hospital Unit Name 10": "[LOC]",
}


@pytest.mark.parametrize("inner, tag", sorted(BRACKETS.items()))
def test_each_bracket_category_gets_its_tag(inner, tag):
    assert tag_for(inner) == tag
    assert rewrite_brackets(f"seen by [**{inner}**] today", style="ours") == f"seen by {tag} today"


@pytest.mark.parametrize("date", ["2151-8-12", "2101-10-20", "8-12", "12/3/2150"])
def test_literal_dates_are_kept_as_text(date):
    assert rewrite_brackets(f"admitted [**{date}**]", style="ours") == f"admitted {date}"


def test_unknown_categories_get_a_generic_tag_and_are_counted():
    stats = DeidStats()
    text = "Dictated by [**Dictator Info 99**] and [**Dictator Info 12**], [**Known lastname 5**] on [**2150-1-2**]"
    assert (
        rewrite_brackets(text, stats, style="ours")
        == f"Dictated by {GENERIC_TAG} and {GENERIC_TAG}, [Name] on 2150-1-2"
    )
    assert stats.unknown_labels == {"Dictator Info": 2}
    assert stats.tags["[Name]"] == 1 and stats.tags[GENERIC_TAG] == 2 and stats.dates_kept == 1


def test_exclusion_list_allows_header_blank_lines_and_comments(tmp_path):
    path = tmp_path / "exclude.txt"
    path.write_text("ROW_ID\n11\n\n# held out for evaluation\n12  # inline note\n", encoding="utf-8")
    assert read_exclusion_list(path) == {11, 12}


def test_exclusion_list_with_a_non_integer_is_one_line_error(tmp_path):
    path = tmp_path / "exclude.txt"
    path.write_text("11\n12\nabc\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_exclusion_list(path)
    assert str(error.value) == f"{path}: row 3: expected an integer ROW_ID, got 'abc'"


def write_noteevents(path, rows):
    columns = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME", "CATEGORY", "DESCRIPTION",
               "CGID", "ISERROR", "TEXT"]  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})
    return path


def noteevents_rows():
    return [
        {"ROW_ID": 1, "SUBJECT_ID": 10, "HADM_ID": 100, "CATEGORY": "Discharge summary",
         "TEXT": "Admission Date:  [**2151-7-16**]\nPatient [**Known lastname 1**] went home."},
        {"ROW_ID": 2, "SUBJECT_ID": 10, "HADM_ID": 100, "CATEGORY": "Nursing/other", "TEXT": "Vitals stable."},
        {"ROW_ID": 3, "SUBJECT_ID": 11, "HADM_ID": "", "CATEGORY": "Discharge summary",
         "TEXT": "Seen at [**Hospital1 18**], call [**Telephone/Fax (1) 5**]."},
        {"ROW_ID": 4, "SUBJECT_ID": 12, "HADM_ID": 102, "CATEGORY": "Discharge summary", "TEXT": "Excluded note."},
        {"ROW_ID": 5, "SUBJECT_ID": 13, "HADM_ID": 103, "CATEGORY": "Radiology", "TEXT": "CXR clear."},
    ]  # fmt: skip


def test_discharge_summaries_only_excluded_dropped_tags_rewritten(tmp_path):
    path = write_noteevents(tmp_path / "NOTEEVENTS.csv", noteevents_rows())
    counts = MimicCounts()
    notes = list(
        iter_discharge_summaries(path, exclude_ids={4}, chunk_size=2, counts=counts, deid_style="ours")
    )
    assert [(n.row_id, n.patient_id, n.hadm_id) for n in notes] == [(1, 10, 100), (3, 11, None)]
    assert notes[0].note == "Admission Date:  2151-7-16\nPatient [Name] went home."
    assert notes[1].note == "Seen at [Company], call [#]."
    # The default is the original's rewriting: one space each side of every replacement.
    original = list(iter_discharge_summaries(path, exclude_ids={4}))
    assert original[0].note == "Admission Date:   2151-7-16 \nPatient  [Name]  went home."
    assert original[1].note == "Seen at  [Company] , call  [#] ."
    assert counts.rows_read == 5 and counts.excluded == 1 and counts.kept == 2
    assert counts.by_category["Discharge summary"] == 3


def test_noteevents_without_text_column_names_it(tmp_path):
    path = tmp_path / "NOTEEVENTS.csv"
    path.write_text("ROW_ID,SUBJECT_ID,HADM_ID,CATEGORY\n1,2,3,Discharge summary\n", encoding="utf-8")
    with pytest.raises(InputError, match="field 'TEXT'"):
        list(iter_discharge_summaries(path))


def test_empty_discharge_summary_names_row(tmp_path):
    rows = noteevents_rows()
    rows[2]["TEXT"] = ""
    path = write_noteevents(tmp_path / "NOTEEVENTS.csv", rows)
    with pytest.raises(InputError, match=r"row 3: field 'TEXT': empty text"):
        list(iter_discharge_summaries(path))


# --- the scripts: prepare_mimic, and MIMIC-derivedness travelling downstream -------------
def run_prepare(tmp_path, *args):
    return run_script(
        "prepare_mimic.py", "--config", "recipes/tiny/data.yaml", *args, env=script_env(tmp_path)
    )


@pytest.fixture(scope="module")
def mimic_notes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mimic")
    source = write_noteevents(tmp / "NOTEEVENTS.csv", noteevents_rows())
    (tmp / "exclude.txt").write_text("4\n", encoding="utf-8")
    output = tmp / "mimic-notes"
    args = [
        "--config",
        "recipes/tiny/data.yaml",
        "--input",
        str(source),
        "--exclude_ids",
        str(tmp / "exclude.txt"),
    ]
    process = run_script("prepare_mimic.py", *args, "--output_dir", str(output), env=script_env(tmp))
    assert process.returncode == 0, process.stderr[-3000:]
    return output


def test_prepare_mimic_writes_a_private_notes_folder(mimic_notes, tmp_path):

    notes = load_dataset(str(mimic_notes), cache_dir=str(tmp_path / "load"))["train"]
    assert notes.column_names == ["patient_id", "row_id", "hadm_id", "note"]
    assert notes["row_id"] == [1, 3] and notes["hadm_id"] == [100, None]
    assert notes["note"][1] == "Seen at  [Company] , call  [#] ."  # deid_style original, the default
    metadata = read_card_metadata(mimic_notes)
    assert metadata["mimic_derived"] is True and metadata["license"] == "other"
    assert metadata["license_name"] == MIMIC_LICENSE_NAME
    assert "mimic" in metadata["tags"] and "synthetic" not in metadata["tags"]
    assert is_mimic_derived(mimic_notes)
    card = (mimic_notes / "README.md").read_text()
    assert "do not share" in card and "| [Name] | 1 |" in card and "| `excluded` | 1 |" in card


def test_mimic_folder_is_never_pushed_publicly(mimic_notes, tmp_path):

    with pytest.raises(InputError, match="public repository"):
        push_folder(mimic_notes, "someone/mimic-notes", private=False)
    # Through the script, on the finished folder: one line, exit 2, nothing uploaded.
    process = run_prepare(
        tmp_path,
        "--output_dir",
        str(mimic_notes),
        "--push_to_hub",
        "true",
        "--hub_dataset_id",
        "someone/mimic-notes",
    )
    assert process.returncode == 2
    assert "never be pushed to a public repository" in error_line(process)


def test_exclusion_list_with_non_integer_fails_the_script(tmp_path):
    source = write_noteevents(tmp_path / "NOTEEVENTS.csv", noteevents_rows())
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("4\nrow-5\n", encoding="utf-8")
    output = tmp_path / "out"
    process = run_prepare(
        tmp_path, "--input", str(source), "--exclude_ids", str(exclude), "--output_dir", str(output)
    )
    assert process.returncode == 2
    assert error_line(process) == f"error: {exclude}: row 2: expected an integer ROW_ID, got 'row-5'"
    assert not (output / "README.md").exists()


def test_questions_from_mimic_notes_are_mimic_derived(mimic_notes, tmp_path):

    output = tmp_path / "mimic-questions"
    with OpenAIServer() as server:
        flags = ["--config", "recipes/tiny/data.yaml", "--base_url", server.base_url, "--model", "teacher-test",
                 "--input", str(mimic_notes), "--output_dir", str(output), "--show_progress", "false"]  # fmt: skip
        refused = run_script(
            "make_questions.py",
            *flags,
            "--push_to_hub",
            "true",
            "--hub_dataset_id",
            "someone/q",
            env=script_env(tmp_path),
        )
        assert refused.returncode == 2 and "public repository" in error_line(refused)
        assert len(server.billing) == 0  # refused before anything was sent
        process = run_script("make_questions.py", *flags, env=script_env(tmp_path))
        assert process.returncode == 0, process.stderr[-3000:]
        assert len(server.billing) == 2
    assert is_mimic_derived(output)
    metadata = read_card_metadata(output)
    assert metadata["mimic_derived"] is True and metadata["license"] == "other"
    assert "mimic" in metadata["tags"] and "synthetic" in metadata["tags"]
    with pytest.raises(InputError, match="public repository"):
        push_folder(output, "someone/q", private=False)


def test_the_original_exclusion_list_ships_with_the_package_and_is_the_default(tmp_path):
    shipped = read_exclusion_list(default_exclusion_list())
    assert len(shipped) == 517 and {917067, 787157, 2042} <= shipped
    assert "starmpcc/Asclepius" in default_exclusion_list().read_text().splitlines()[1]  # credited
    assert exclusion_ids(None)[0] == shipped
    assert exclusion_ids("none") == (set(), "none")
    own = tmp_path / "mine.txt"
    own.write_text("7\n", encoding="utf-8")
    assert exclusion_ids(str(own)) == ({7}, str(own))


def test_prepare_mimic_drops_the_original_list_by_default_and_records_the_style(tmp_path):
    rows = noteevents_rows()
    rows[3]["ROW_ID"] = 917067  # on the original's list
    rows[0]["TEXT"] += " Seen by [**Unrecognised Thing 4**]."
    source = write_noteevents(tmp_path / "NOTEEVENTS.csv", rows)
    output = tmp_path / "notes"
    process = run_prepare(tmp_path, "--input", str(source), "--output_dir", str(output))
    assert process.returncode == 0, process.stderr[-3000:]
    notes = load_dataset(str(output), cache_dir=str(tmp_path / "load"))["train"]
    assert notes["row_id"] == [1, 3] and notes["note"][0].endswith("Seen by  [Redacted] .")
    card = (output / "README.md").read_text()
    assert "| `excluded` | 1 |" in card and "deid_style: original" in card
    assert "spans_rejected_by_original" in card and "original Asclepius list" in card
    # --exclude_ids none keeps every discharge summary; --deid_style ours keeps the note's spacing.
    output = tmp_path / "notes-all"
    args = [
        "--input",
        str(source),
        "--output_dir",
        str(output),
        "--exclude_ids",
        "none",
        "--deid_style",
        "ours",
    ]
    process = run_prepare(tmp_path, *args)
    assert process.returncode == 0, process.stderr[-3000:]
    notes = load_dataset(str(output), cache_dir=str(tmp_path / "load2"))["train"]
    assert notes["row_id"] == [1, 3, 917067] and notes["note"][1] == "Seen at [Company], call [#]."
