"""The CLI as an admin uses it: explanations for wrong inputs, JSON output, config errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from config import load_settings
from sandbox import CompanyConfig, JobConfig, SandboxConfig, SandboxServer, start_sandbox
from worker import embedded_redis


@pytest.fixture()
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    sandbox = start_sandbox(SandboxConfig(
        companies=[CompanyConfig(company_id=555, access_token="right-token", domain="acme.jobs.personio.de", jobs=[JobConfig(id=9, name="Engineer")])],
        rate_limit=50, rate_window=1.0, lockout=1.0,
    ))
    monkeypatch.setenv("PERSONIO_SYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PERSONIO_API_URL", sandbox.url)
    monkeypatch.setenv("PERSONIO_FEED_URL", sandbox.feed_url_template)
    if "DATABASE_URL" in __import__("os").environ:
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        yield sandbox
    finally:
        sandbox.stop()
        settings = load_settings()
        if settings.embedded_redis:
            embedded_redis.stop(settings.embedded_redis_socket)


def test_connect_explains_each_wrong_input_and_saves_nothing(cli_env: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PERSONIO_ACCESS_TOKEN", "wrong-token")
    code = main(["connect", "--account", "a1", "--company-id", "555", "--domain", "https://ACME.jobs.personio.de/xml?language=de", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["saved"] is False
    token_check = next(c for c in out["checks"] if c["field"] == "access_token")
    assert token_check["ok"] is False and "Recruiting API key" in token_check["message"]
    domain_check = next(c for c in out["checks"] if c["field"] == "domain")
    assert domain_check["ok"] is True  # the pasted URL was normalised and its feed works

    code = main(["connect", "--account", "a1", "--company-id", "555", "--domain", "acme.personio.de", "--language", "de"])
    text = capsys.readouterr().out
    assert code == 1
    assert "HR-App" in text and "Karriereseite" in text

    assert main(["connections", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_connect_link_jobs_and_status(cli_env: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PERSONIO_ACCESS_TOKEN", "right-token")
    assert main(["connect", "--account", "a1", "--company-id", "555", "--domain", "acme"]) == 0
    assert "✓ access_token" in capsys.readouterr().out
    assert main(["jobs", "a1", "--json"]) == 0
    assert [job["job_position_id"] for job in json.loads(capsys.readouterr().out)] == [9]
    assert main(["link", "a1", "p1", "12345"]) == 1
    assert "not in the jobs feed" in capsys.readouterr().err
    assert main(["link", "a1", "p1", "9", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["job_position_id"] == 9
    assert main(["links", "a1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"project_id": "p1", "job_position_id": 9, "phase": None, "flag": None, "flagged_at": None}]
    assert main(["status", "no-such-request"]) == 1


def test_connect_and_link_take_a_personio_phase(cli_env: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PERSONIO_ACCESS_TOKEN", "right-token")
    code = main(["connect", "--account", "a1", "--company-id", "555", "--domain", "acme", "--phase", "system:hired", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["saved"] is False
    [phase_check] = [c for c in out["checks"] if c["field"] == "phase"]
    assert phase_check["ok"] is False and "custom:<number>" in phase_check["message"] and "Phases" in phase_check["message"]

    assert main(["connect", "--account", "a1", "--company-id", "555", "--domain", "acme", "--phase", "custom:42", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["connection"]["phase"] == "custom:42"

    assert main(["link", "a1", "p1", "9", "--phase", "interview"]) == 2
    assert "--phase for a system phase it must be one of" in capsys.readouterr().err
    assert main(["link", "a1", "p1", "9", "--phase", "offer", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["phase"] == "system:offer"
    assert main(["links", "a1"]) == 0
    assert "p1 → job 9 (phase system:offer)" in capsys.readouterr().out


def test_jobs_show_what_the_feed_tells_about_a_job(cli_env: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = cli_env
    assert isinstance(sandbox, SandboxServer)
    company = sandbox.state.company(555)
    assert company is not None
    company.jobs = [JobConfig(
        id=9, name="Engineer", subcompany="Acme Labs GmbH", years_of_experience="2-5", keywords="python, sql",
        occupation="software_development", occupation_category="it_and_software",
        salary={"min": "60000", "max": "75000", "currencySymbol": "€", "currencyCode": "EUR", "type": "yearly"},
        descriptions=[("Your tasks", "<p>Build things</p>"), ("Your profile", "<p>Python</p>")],
    )]
    sandbox.state.upsert_company(company)
    monkeypatch.setenv("PERSONIO_ACCESS_TOKEN", "right-token")
    assert main(["connect", "--account", "a1", "--company-id", "555", "--domain", "acme"]) == 0
    capsys.readouterr()

    assert main(["jobs", "a1", "--json"]) == 0
    [job] = json.loads(capsys.readouterr().out)
    assert job["sections"] == ["Your tasks", "Your profile"]
    assert job["keywords"] == ["python", "sql"]
    assert (job["occupation"], job["occupation_category"], job["subcompany"]) == ("software_development", "it_and_software", "Acme Labs GmbH")
    assert job["years_of_experience"] == "2-5"
    assert job["salary"]["min"] == "60000" and job["salary"]["currency_code"] == "EUR"

    assert main(["jobs", "a1"]) == 0
    assert "Engineer — Berlin · Acme Labs GmbH · permanent · 2-5 years · 60000–75000 EUR yearly" in capsys.readouterr().out


def test_connections_show_skipped_feed_positions_in_the_chosen_language() -> None:
    from cli.main import _feed_line

    row = {"health": "healthy", "feed_status": "2 positions skipped", "feed_message": {"en": "2 positions skipped (en)", "de": "2 Stellen übersprungen"}}
    assert _feed_line(row, "de") == "\n    2 Stellen übersprungen"
    assert _feed_line({**row, "feed_status": "ok"}, "de") == ""
    assert _feed_line({**row, "health": "feed_unreachable"}, "en") == ""  # the health message says it already


def test_token_is_never_taken_from_the_command_line(cli_env: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PERSONIO_ACCESS_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["connect", "--account", "a1", "--company-id", "555", "--domain", "acme"])
    assert exit_info.value.code == 2
    assert "never accepted as a command-line argument" in capsys.readouterr().err


def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PERSONIO_RATE_LIMIT", "lots")
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate"])
    assert exit_info.value.code == 2
    assert "PERSONIO_RATE_LIMIT='lots'" in capsys.readouterr().err
