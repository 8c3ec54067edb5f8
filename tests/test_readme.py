"""The README stays true: every setting is documented, and the message contract matches the code."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

from config.settings import EVENTS_STREAM
from services.schemas import IntakePolicy, load_upload_request
from tasks.producer import BACKFILL_TASK, INTAKE_QUEUE, UPLOAD_TASK

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    source = (ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r'"((?:PERSONIO_[A-Z_]+)|REDIS_URL|DATABASE_URL)"', source)) - {"PERSONIO_SYNC"}
    assert names, "no settings found"
    missing = sorted(name for name in names if f"`{name}`" not in README)
    assert not missing, f"README's configuration table lacks {missing}"


def test_contract_names_match_the_code() -> None:
    assert f"`{UPLOAD_TASK}`" in README
    assert f"`{BACKFILL_TASK}`" in README
    assert f"`{INTAKE_QUEUE}`" in README
    assert f"`{EVENTS_STREAM}`" in README


def test_the_readme_example_request_is_accepted_as_written() -> None:
    example = re.search(r"## The message contract.*?```json\n(.*?)```", README, re.S)
    assert example is not None
    request = json.loads(example.group(1).replace("JVBERi0xLjQK…", "JVBERi0xLjQK"))
    policy = IntakePolicy(
        inline_document_max_bytes=10 * 1024 * 1024,
        url_document_max_bytes=20 * 1024 * 1024,
        document_url_hosts=("files.example.com",),
        today=date(2026, 11, 24),
    )
    loaded = load_upload_request(request, policy)
    assert loaded["candidate"]["documents"][0]["content"].startswith(b"%PDF")
    assert loaded["candidate"]["attributes"]["custom_attribute_123"] == "Python"
    # What Personio accepts (issue 9): free-text available_from, numbers sent as text, the
    # request's phase and external posting id.
    assert loaded["candidate"]["attributes"]["available_from"] == "As soon as possible"
    assert loaded["candidate"]["attributes"]["custom_attribute_124"] == "5"
    assert loaded["phase"] == {"type": "system", "id": "offer"}
    assert loaded["external_posting_id"] == "gohiring-8841"


def test_the_readme_names_every_phase_personio_accepts() -> None:
    from personio.phases import SYSTEM_PHASES

    contract = README.split("## The message contract", 1)[1].split("\n## ", 1)[0]
    for phase in SYSTEM_PHASES:
        assert f'"{phase}"' in contract, phase
        assert f"`system:{phase}`" in README, phase
