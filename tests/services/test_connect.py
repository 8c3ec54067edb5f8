"""services.connect.connect_account against the Personio stand-in: check, explain, store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Connection, Health, Job
from personio.client import PersonioClient, PersonioCredentials
from ratelimit import CompanyRateLimiter
from sandbox import SandboxServer
from services.connect import ConnectReport, ConnectRequest, connect_account
from services.events import ListPublisher
from services.secrets import TokenCipher
from tests.openapi import FEED_FAULT_STATUSES, SpecValidationRecorder

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from tests.conftest import Clock

COMPANY, TOKEN, DOMAIN, CHANNEL = "1000", "demo-token-please-change", "demo.jobs.personio.de", "4242"
MENU_API_EN = "Personio → Settings → Integrations → API credentials → Recruiting API key"
MENU_API_DE = "Personio → Einstellungen → Integrationen → API-Zugriffsdaten → Recruiting-API-Schlüssel"
MENU_FEED_EN = "Personio → Settings → Recruiting → Career page → Activations → Enable XML feed"
MENU_FEED_DE = "Personio → Einstellungen → Recruiting → Karriereseite → Aktivierungen → XML-Schnittstelle aktivieren"


class Connector:
    """connect_account wired to the stand-in, recording every HTTP request and client built."""

    def __init__(self, session: Session, sandbox: SandboxServer, cipher: TokenCipher, limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock, http: requests.Session) -> None:
        self.session, self.sandbox, self.cipher, self.limiter, self.events, self.clock, self.http = session, sandbox, cipher, limiter, events, clock, http
        self.urls: list[str] = []
        self.clients: list[PersonioCredentials] = []
        http.hooks["response"].append(lambda response, *a, **k: self.urls.append(response.request.url))

    def client(self, credentials: PersonioCredentials) -> PersonioClient:
        self.clients.append(credentials)
        return PersonioClient(self.http, base_url=self.sandbox.url, credentials=credentials, app_id="PERSONIO_SYNC", timeout=(2.0, 5.0))

    def __call__(self, **changes: Any) -> ConnectReport:
        values: dict[str, Any] = {"account_id": "acct-1", "company_id": COMPANY, "access_token": TOKEN, "domain": DOMAIN, "channel_id": CHANNEL, "feed_language": "de"}
        values.update(changes)
        return connect_account(
            self.session,
            ConnectRequest(**values),
            cipher=self.cipher,
            client_factory=self.client,
            limiter=self.limiter,
            http=self.http,
            feed_url_template=self.sandbox.feed_url_template,
            timeout=(2.0, 5.0),
            events=self.events,
            lockout=2.0,
            now=self.clock(),
        )


@pytest.fixture(autouse=True)
def _probe_allowed(recorder: SpecValidationRecorder) -> None:
    """Connecting starts with the credential probe, whose empty body is invalid on purpose."""
    recorder.allow_credential_probe = True


@pytest.fixture
def feed_faults(recorder: SpecValidationRecorder) -> None:
    """The test breaks the feed (or names no feed) on purpose: those answers are not reported."""
    recorder.outside_spec_statuses.update(FEED_FAULT_STATUSES)


@pytest.fixture
def connect(session: Session, sandbox: SandboxServer, cipher: TokenCipher, limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock, http: requests.Session) -> Connector:
    return Connector(session, sandbox, cipher, limiter, events, clock, http)


def check(report: ConnectReport, field: str) -> Any:
    [found] = [c for c in report.checks if c.field == field]
    return found


def stored(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Connection)) or 0


def api_statuses(sandbox: SandboxServer) -> dict[str, int]:
    company = sandbox.state.stats()["companies"].get(COMPANY)
    return company["statuses"] if company else {}


# ------------------------------------------------------------------ all good


def test_everything_right_is_saved_with_the_jobs(connect: Connector, session: Session, sandbox: SandboxServer, cipher: TokenCipher, clock: Clock, events: ListPublisher) -> None:
    # when: the admin pastes the career page URL with a trailing slash
    report = connect(domain=f" https://{DOMAIN.upper()}/ ", feed_language="EN")

    # then: each input has a verdict
    assert report.saved is True
    assert report.problems == []
    assert (check(report, "access_token").ok, check(report, "access_token").code) == (True, "connect.credentials_ok")
    feed = check(report, "domain")
    assert (feed.ok, feed.code) == (True, "connect.feed_ok")
    assert feed.message["en"] == f"The jobs feed of {DOMAIN} works: 3 published jobs."
    assert "3 veröffentlichte Stellen" in feed.message["de"]
    assert (check(report, "channel_id").ok, check(report, "channel_id").code) == (None, "connect.channel_unverified")
    # and: the connection is stored, token encrypted
    connection = session.scalars(select(Connection)).one()
    assert (connection.account_id, connection.company_id, connection.jobs_domain, connection.channel_id, connection.feed_language) == ("acct-1", 1000, DOMAIN, 4242, "en")
    assert TOKEN not in connection.access_token_encrypted
    assert cipher.decrypt(connection.access_token_encrypted) == TOKEN
    assert connection.health == Health.HEALTHY
    assert connection.credentials_ok_at == clock() and connection.feed_fetched_at == clock()
    # and: the jobs are cached
    jobs = session.scalars(select(Job).order_by(Job.job_position_id)).all()
    assert [(j.job_position_id, j.published) for j in jobs] == [(1000001, True), (1000002, True), (1000003, True)]
    assert jobs[0].name == "Backend Engineer (m/w/d)"
    # and: the report and events never carry the token
    assert report.connection is not None and report.connection["health"] == "healthy"
    assert TOKEN not in json.dumps(report.connection, default=str)
    assert TOKEN not in json.dumps(events.events, default=str)
    assert [e["health"] for e in events.events] == ["healthy"]
    # and: nothing was created in Personio
    assert sandbox.state.applications() == []


def test_the_probe_takes_one_slot_of_the_company_budget(connect: Connector, limiter: CompanyRateLimiter, sandbox: SandboxServer) -> None:
    connect()

    assert limiter.usage(COMPANY) == 1
    assert api_statuses(sandbox) == {"400": 1}  # the empty probe body, refused after auth


def test_reconnect_with_new_channel_clears_the_channel_flag(connect: Connector, session: Session, clock: Clock) -> None:
    connect()
    connection = session.scalars(select(Connection)).one()
    connection.channel_invalid_at = clock()
    session.commit()
    clock.advance(3)

    report = connect(channel_id="")

    assert report.saved is True
    session.refresh(connection)
    assert connection.channel_id is None
    assert connection.channel_invalid_at is None
    assert stored(session) == 1


# ------------------------------------------------------------ credentials


def test_wrong_token_is_not_saved_and_says_where_to_copy_it(connect: Connector, session: Session) -> None:
    report = connect(access_token="wrong-token")

    assert report.saved is False
    token = check(report, "access_token")
    assert (token.ok, token.code) == (False, "health.invalid_credentials")
    assert MENU_API_EN in token.message["en"]
    assert MENU_API_DE in token.message["de"]
    assert report.problems == [token]
    assert stored(session) == 0
    assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_wrong_company_id_is_an_invalid_credential(connect: Connector, session: Session) -> None:
    report = connect(company_id="2000")

    assert check(report, "access_token").code == "health.invalid_credentials"
    assert stored(session) == 0


@pytest.mark.parametrize(("change", "code", "text"), [({"recruiting_enabled": False}, "feature.recruiting.disabled", "no recruiting module"), ({"public_api_enabled": False}, "feature.public-api.disabled", "no access to the recruiting API")])
def test_missing_recruiting_feature_is_not_saved(connect: Connector, session: Session, sandbox: SandboxServer, change: dict[str, bool], code: str, text: str) -> None:
    sandbox.state.patch_company(int(COMPANY), change)

    report = connect()

    assert report.saved is False
    token = check(report, "access_token")
    assert (token.ok, token.code) == (False, code)
    assert text in token.message["en"]
    assert "Personio-Admin" in token.message["de"]
    assert stored(session) == 0


def test_busy_budget_leaves_credentials_unchecked_but_saves(connect: Connector, session: Session, sandbox: SandboxServer, limiter: CompanyRateLimiter) -> None:
    for _ in range(20):
        limiter.try_acquire(COMPANY)

    report = connect()

    assert report.saved is True
    token = check(report, "access_token")
    assert (token.ok, token.code) == (None, "connect.credentials_unknown")
    assert "rate budget busy" in token.message["en"]
    assert "Anfragekontingent" in token.message["de"] and "rate budget busy" not in token.message["de"]
    assert api_statuses(sandbox) == {}
    assert session.scalars(select(Connection)).one().health == Health.UNCHECKED


# ----------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("domain", "code"),
    [
        ("", "domain.empty"),
        ("app.personio.de", "domain.no_company"),
        ("https://evil.example.com/xml", "domain.wrong_suffix"),
        ("demo.jobs.personio.de.evil.com", "domain.wrong_suffix"),
        ("127.0.0.1", "domain.ip_literal"),
        ("http://169.254.169.254/latest/meta-data", "domain.ip_literal"),
        ("file:///etc/passwd", "domain.scheme"),
    ],
)
def test_bad_domain_is_explained_and_nothing_is_fetched(connect: Connector, session: Session, sandbox: SandboxServer, limiter: CompanyRateLimiter, domain: str, code: str) -> None:
    report = connect(domain=domain)

    assert report.saved is False
    problem = check(report, "domain")
    assert (problem.ok, problem.code) == (False, code)
    # The fix: what a valid value looks like, in both languages.
    assert "jobs.personio.de" in problem.message["en"] and "jobs.personio.de" in problem.message["de"]
    assert problem.message["de"] != problem.message["en"]
    # No request at all: neither the probe nor the feed.
    assert connect.urls == [] and connect.clients == []
    assert api_statuses(sandbox) == {} and limiter.usage(COMPANY) == 0
    assert stored(session) == 0


@pytest.mark.parametrize("mode", ["html", "redirect", "not_found"])
def test_disabled_feed_says_where_to_switch_it_on(connect: Connector, session: Session, sandbox: SandboxServer, feed_faults: None, mode: str) -> None:
    sandbox.state.patch_company(int(COMPANY), {"feed_mode": mode})

    report = connect()

    assert report.saved is False
    problem = check(report, "domain")
    assert (problem.ok, problem.code) == (False, "health.feed_disabled")
    assert DOMAIN in problem.message["en"]
    assert MENU_FEED_EN in problem.message["en"]
    assert MENU_FEED_DE in problem.message["de"]
    assert check(report, "access_token").ok is True
    assert stored(session) == 0


def test_unknown_domain_is_a_disabled_feed(connect: Connector, session: Session, feed_faults: None) -> None:
    report = connect(domain="nobody")

    assert check(report, "domain").code == "health.feed_disabled"
    assert "nobody.jobs.personio.de" in check(report, "domain").message["en"]
    assert stored(session) == 0


def test_broken_feed_is_not_saved(connect: Connector, session: Session, sandbox: SandboxServer) -> None:
    sandbox.state.patch_company(int(COMPANY), {"feed_mode": "truncated"})

    report = connect()

    problem = check(report, "domain")
    assert (problem.ok, problem.code) == (False, "connect.feed_invalid")
    assert "not with Personio's jobs XML" in problem.message["en"]
    assert stored(session) == 0


def test_feed_down_right_now_does_not_block_saving(connect: Connector, session: Session, sandbox: SandboxServer, feed_faults: None) -> None:
    sandbox.state.patch_company(int(COMPANY), {"feed_mode": "server_error"})

    report = connect()

    assert report.saved is True
    problem = check(report, "domain")
    assert (problem.ok, problem.code) == (None, "health.feed_unreachable")
    assert "feed.server_error" in problem.message["en"]
    connection = session.scalars(select(Connection)).one()
    assert connection.feed_fetched_at is None
    assert session.scalar(select(func.count()).select_from(Job)) == 0


@pytest.mark.parametrize("channel", ["abc", "-5", "0", "12.5", "42 42"])
def test_channel_id_must_be_a_positive_number(connect: Connector, session: Session, channel: str) -> None:
    report = connect(channel_id=channel)

    assert report.saved is False
    problem = check(report, "channel_id")
    assert (problem.ok, problem.code) == (False, "connect.channel_id")
    assert repr(channel) in problem.message["en"]
    assert "Personio → Settings → Recruiting → Channels" in problem.message["en"]
    assert "Kanäle" in problem.message["de"]
    assert connect.urls == []
    assert stored(session) == 0


def test_no_channel_is_fine(connect: Connector, session: Session) -> None:
    report = connect(channel_id=None)

    assert report.saved is True
    assert [c.field for c in report.checks] == ["access_token", "domain"]
    assert session.scalars(select(Connection)).one().channel_id is None


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"company_id": "acme"}, "company_id", "connect.company_id"),
        ({"company_id": "0"}, "company_id", "connect.company_id"),
        ({"access_token": "   "}, "access_token", "connect.access_token"),
        ({"access_token": "two words"}, "access_token", "connect.access_token"),
        ({"feed_language": "xx"}, "feed_language", "connect.feed_language"),
        ({"phase": "system:hired"}, "phase", "connect.phase"),
        ({"phase": "custom:interview"}, "phase", "connect.phase"),
        ({"phase": "stage:1"}, "phase", "connect.phase"),
        ({"phase": "custom:0"}, "phase", "connect.phase"),
    ],
)
def test_other_bad_inputs_are_explained_before_any_request(connect: Connector, session: Session, changes: dict[str, str], field: str, code: str) -> None:
    report = connect(**changes)

    assert report.saved is False
    problem = check(report, field)
    assert (problem.ok, problem.code) == (False, code)
    assert problem.message["en"] and problem.message["de"]
    assert connect.urls == []
    assert stored(session) == 0


def test_several_bad_inputs_are_all_reported(connect: Connector) -> None:
    report = connect(company_id="x", access_token="", domain="evil.com", channel_id="y", feed_language="zz")

    assert [c.field for c in report.problems] == ["company_id", "access_token", "domain", "channel_id", "feed_language"]


def test_request_repr_hides_the_token() -> None:
    assert TOKEN not in repr(ConnectRequest("a", COMPANY, TOKEN, DOMAIN))


# ------------------------------------------------------------------ phase


@pytest.mark.parametrize(
    ("typed", "stored_phase", "shown"),
    [
        ("system:offer", {"type": "system", "id": "offer"}, "system:offer"),
        (" Custom:42 ", {"type": "custom", "id": 42}, "custom:42"),
        ("rejected", {"type": "system", "id": "rejected"}, "system:rejected"),
        ("7", {"type": "custom", "id": 7}, "custom:7"),
        ("", None, None),
        (None, None, None),
    ],
)
def test_the_connection_phase_is_stored_as_personio_takes_it(
    connect: Connector, session: Session, typed: str | None, stored_phase: Any, shown: str | None
) -> None:
    report = connect(phase=typed)

    assert report.saved is True
    connection = session.scalars(select(Connection)).one()
    assert connection.phase == stored_phase
    assert report.connection is not None and report.connection["phase"] == shown


def test_a_system_phase_is_confirmed_and_a_custom_one_flagged_as_unverifiable(connect: Connector) -> None:
    system = check(connect(phase="offer"), "phase")
    custom = check(connect(phase="custom:42"), "phase")

    assert (system.ok, system.code) == (True, "connect.phase_ok")
    assert "system:offer" in system.message["en"] and "system:offer" in system.message["de"]
    assert (custom.ok, custom.code) == (None, "connect.phase_unverified")
    assert "custom:42" in custom.message["en"] and "'unassigned'" in custom.message["en"]
    assert "Einstellungen → Recruiting → Phasen" in custom.message["de"]
    assert not [c for c in connect().checks if c.field == "phase"]


def test_reconnecting_without_a_phase_clears_it(connect: Connector, session: Session) -> None:
    connect(phase="system:offer")
    connect()

    assert session.scalars(select(Connection)).one().phase is None


def test_a_wrong_phase_is_explained_in_both_languages_and_nothing_is_saved(connect: Connector, session: Session) -> None:
    report = connect(phase="system:hired")

    problem = check(report, "phase")
    assert problem.ok is False
    assert "system:offer" in problem.message["en"] and "custom:<number>" in problem.message["en"]
    assert "Settings → Recruiting → Phases" in problem.message["en"] and "'system:hired'" in problem.message["en"]
    assert "Einstellungen → Recruiting → Phasen" in problem.message["de"] and "custom:<Nummer>" in problem.message["de"]
    assert connect.urls == []
    assert stored(session) == 0
