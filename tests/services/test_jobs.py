"""services.jobs: the per-connection jobs cache, kept in step with the stand-in's feed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from models import Connection, Health, Job
from personio.feed import FeedFetch, FeedInvalid, FeedJob, parse_feed
from sandbox import JobConfig, SandboxServer
from services.connections import describe_connection, health_message, set_health
from services.events import ListPublisher
from services.jobs import RefreshResult, apply_feed, list_jobs, refresh_jobs
from services.secrets import TokenCipher
from tests.factories import make_connection
from tests.openapi import FEED_FAULT_STATUSES, SpecValidationRecorder

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from tests.conftest import Clock

COMPANY, DOMAIN = 1000, "demo.jobs.personio.de"
JOBS = (1000001, 1000002, 1000003)


class Statements:
    """Every SQL statement the engine runs while recording."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)

    def writes(self) -> list[str]:
        return [s for s in self.seen if s.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}]

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)


@pytest.fixture
def statements(engine: Engine) -> Iterator[Statements]:
    recorder = Statements(engine)
    yield recorder
    recorder.close()


@pytest.fixture
def feed_faults(recorder: SpecValidationRecorder) -> None:
    """The test sets a broken feed mode on purpose: its answers are not reported."""
    recorder.outside_spec_statuses.update(FEED_FAULT_STATUSES)


@pytest.fixture
def connection(session: Session, cipher: TokenCipher, clock: Clock) -> Connection:
    return make_connection(session, cipher, company_id=COMPANY, jobs_domain=DOMAIN, at=clock())


@pytest.fixture
def refresh(session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer, events: ListPublisher, clock: Clock) -> Any:
    def run(force: bool = False, feed_mode: str | None = None) -> RefreshResult:
        """Fetch the feed once; ``feed_mode`` first switches the stand-in's feed (e.g. "html")."""
        if feed_mode is not None:
            sandbox.state.patch_company(COMPANY, {"feed_mode": feed_mode})
        return refresh_jobs(session, connection, http=http, feed_url_template=sandbox.feed_url_template, timeout=(2.0, 5.0), events=events, now=clock(), force=force)

    return run


def cached(session: Session) -> dict[int, Job]:
    session.expire_all()
    return {job.job_position_id: job for job in session.scalars(select(Job))}


def edit_company(sandbox: SandboxServer, change: Any) -> None:
    company = sandbox.state.company(COMPANY)
    assert company is not None
    change(company)
    sandbox.state.upsert_company(company)


# -------------------------------------------------------------- upserting


def test_first_refresh_caches_every_published_job(refresh: Any, session: Session, connection: Connection, clock: Clock) -> None:
    result = refresh()

    assert result == RefreshResult(changed=True, not_modified=False, published=3, added=3, unpublished=0)
    jobs = cached(session)
    assert sorted(jobs) == list(JOBS)
    backend = jobs[1000001]
    assert (backend.name, backend.office, backend.department, backend.subcompany) == ("Backend Engineer (m/w/d)", "Berlin", "Engineering", "Demo GmbH")
    assert (backend.employment_type, backend.seniority, backend.schedule, backend.years_of_experience) == ("permanent", "experienced", "full-time", "2-5")
    assert backend.keywords == "python,backend,celery"
    assert backend.salary == {"min": "60000.00", "max": None, "currency_code": "EUR", "currency_symbol": "€", "type": "yearly"}
    assert backend.personio_created_at == datetime(2024, 1, 15, 9, 30, tzinfo=UTC)
    assert jobs[1000002].additional_offices == ["Remote"]
    assert all(job.published and job.first_seen_at == clock() and job.updated_at == clock() for job in jobs.values())
    session.refresh(connection)
    assert connection.feed_etag and connection.feed_last_modified and connection.feed_sha256
    assert connection.feed_fetched_at == clock()


def test_changed_job_is_updated_in_place(refresh: Any, session: Session, sandbox: SandboxServer, clock: Clock) -> None:
    refresh()
    first_ids = {job_id: job.id for job_id, job in cached(session).items()}
    clock.advance(60)

    def rename(company: Any) -> None:
        company.jobs[0].name = "Senior Backend Engineer (m/w/d)"
        company.jobs[0].office = "Hamburg"

    edit_company(sandbox, rename)
    result = refresh()

    assert (result.changed, result.added, result.unpublished) == (True, 0, 0)
    jobs = cached(session)
    assert {job_id: job.id for job_id, job in jobs.items()} == first_ids  # same rows
    assert (jobs[1000001].name, jobs[1000001].office) == ("Senior Backend Engineer (m/w/d)", "Hamburg")
    assert jobs[1000001].updated_at == clock()
    assert jobs[1000002].updated_at != clock()  # untouched jobs keep their time


def test_vanished_job_is_kept_and_marked_unpublished_with_the_time(refresh: Any, session: Session, sandbox: SandboxServer, clock: Clock) -> None:
    refresh()
    clock.advance(60)
    edit_company(sandbox, lambda company: setattr(company, "jobs", [j for j in company.jobs if j.id != 1000002]))

    result = refresh()

    assert (result.changed, result.published, result.unpublished) == (True, 2, 1)
    jobs = cached(session)
    assert sorted(jobs) == list(JOBS)
    gone = jobs[1000002]
    assert gone.published is False
    assert gone.unpublished_at == clock()
    assert gone.name == "Recruiter (m/w/d)"

    # and: when it comes back it is published again
    clock.advance(60)
    edit_company(sandbox, lambda company: company.jobs.append(JobConfig(id=1000002, name="Recruiter (m/w/d)", office="München")))
    refresh()
    back = cached(session)[1000002]
    assert back.published is True and back.unpublished_at is None


def test_job_unpublished_in_personio_leaves_the_feed(refresh: Any, session: Session, sandbox: SandboxServer) -> None:
    refresh()

    def close(company: Any) -> None:
        company.jobs[2].published = False

    edit_company(sandbox, close)
    refresh()

    assert cached(session)[1000003].published is False


def test_empty_feed_unpublishes_everything(session: Session, connection: Connection, clock: Clock) -> None:
    job = FeedJob(id=7, name="", office=None, additional_offices=(), department=None, recruiting_category=None, employment_type=None, seniority=None, schedule=None, years_of_experience=None, keywords=None, occupation=None, occupation_category=None, subcompany=None, created_at=None, salary=None)
    assert apply_feed(session, connection, [job], now=clock()).added == 1
    session.commit()
    assert cached(session)[7].name == "Job 7"  # a nameless job still gets a readable name

    result = apply_feed(session, connection, [], now=clock())
    session.commit()

    assert (result.changed, result.published, result.unpublished) == (True, 0, 1)
    assert cached(session)[7].published is False


def test_apply_feed_twice_changes_nothing_the_second_time(session: Session, connection: Connection, clock: Clock) -> None:
    from personio.feed import FeedSalary

    job = FeedJob(id=9, name="Dev", office="Köln", additional_offices=("Remote",), department="IT", recruiting_category=None, employment_type="permanent", seniority=None, schedule=None, years_of_experience=None, keywords=None, occupation=None, occupation_category=None, subcompany=None, created_at=datetime(2024, 5, 1, tzinfo=UTC), salary=FeedSalary(min=Decimal("50000.00"), max=None, currency_code="EUR", currency_symbol="€", type="yearly"))
    apply_feed(session, connection, [job], now=clock())
    session.commit()

    assert apply_feed(session, connection, [job], now=clock()).changed is False


# ------------------------------------------------------ unchanged feeds


def test_unchanged_feed_304_writes_nothing(refresh: Any, session: Session, connection: Connection, statements: Statements, clock: Clock) -> None:
    refresh()
    session.refresh(connection)
    fetched_at = connection.feed_fetched_at
    before = {job_id: job.updated_at for job_id, job in cached(session).items()}
    clock.advance(60)
    statements.seen.clear()

    result = refresh()

    assert result == RefreshResult(changed=False, not_modified=True, published=0, added=0, unpublished=0)
    assert statements.writes() == []
    assert {job_id: job.updated_at for job_id, job in cached(session).items()} == before
    session.refresh(connection)
    assert connection.feed_fetched_at == fetched_at


def test_unchanged_feed_same_hash_writes_nothing(refresh: Any, session: Session, connection: Connection, http: requests.Session, statements: Statements, clock: Clock) -> None:
    # given: a server that ignores validators (a 200 with the same body)
    refresh()
    connection.feed_etag = None
    connection.feed_last_modified = None
    session.commit()
    sent: list[requests.PreparedRequest] = []
    http.hooks["response"].append(lambda response, *a, **k: sent.append(response.request))
    clock.advance(60)
    statements.seen.clear()

    result = refresh()

    assert "If-None-Match" not in sent[0].headers
    assert result.not_modified is True and result.changed is False
    assert statements.writes() == []


def test_forced_refresh_fetches_the_whole_feed(refresh: Any, http: requests.Session, statements: Statements, clock: Clock) -> None:
    refresh()
    clock.advance(60)
    statements.seen.clear()
    sent: list[requests.Response] = []
    http.hooks["response"].append(lambda response, *a, **k: sent.append(response))

    result = refresh(force=True)

    assert sent[0].status_code == 200
    assert "If-None-Match" not in sent[0].request.headers
    assert result.not_modified is False and result.changed is False
    # The listener sees writes: only the connection's fetch time changed.
    assert [w.split()[1].strip('"') for w in statements.writes()] == ["connections"]


# ----------------------------------------------------------- feed errors


@pytest.mark.parametrize(("mode", "health", "code"), [("html", Health.FEED_DISABLED, "feed.html"), ("redirect", Health.FEED_DISABLED, "feed.redirect"), ("not_found", Health.FEED_DISABLED, "feed.not_found"), ("server_error", Health.FEED_UNREACHABLE, "feed.server_error")])
def test_feed_error_sets_the_feed_health(refresh: Any, session: Session, connection: Connection, sandbox: SandboxServer, events: ListPublisher, feed_faults: None, mode: str, health: Health, code: str) -> None:
    refresh()

    result = refresh(feed_mode=mode)

    assert (result.error, result.error_health, result.changed) == (code, health, False)
    session.refresh(connection)
    assert connection.health == health
    assert connection.health_reason == code
    assert connection.feed_error == code
    assert all(job.published for job in cached(session).values())  # an error unpublishes nothing
    assert events.events[-1]["health"] == health.value

    # and: the feed recovers
    refresh(feed_mode="xml")
    session.refresh(connection)
    assert connection.health == Health.HEALTHY
    assert connection.feed_error is None


@pytest.mark.parametrize("held", [Health.INVALID_CREDENTIALS, Health.RECRUITING_DISABLED])
def test_feed_error_does_not_hide_a_credentials_problem(refresh: Any, session: Session, connection: Connection, sandbox: SandboxServer, events: ListPublisher, clock: Clock, held: Health) -> None:
    set_health(session, connection, held, "personio.unauthorized", now=clock(), events=events)

    result = refresh(feed_mode="html")

    assert result.error_health == Health.FEED_DISABLED
    session.refresh(connection)
    assert connection.health == held
    assert connection.feed_error == "feed.html"  # still recorded

    # and: a recovered feed does not clear the credentials problem either
    refresh(feed_mode="xml")
    session.refresh(connection)
    assert connection.health == held


def test_unreachable_feed_does_not_hide_a_disabled_feed_but_is_replaced_by_it(refresh: Any, session: Session, connection: Connection, sandbox: SandboxServer, feed_faults: None) -> None:
    refresh(feed_mode="server_error")

    refresh(feed_mode="html")

    session.refresh(connection)
    assert connection.health == Health.FEED_DISABLED


def test_recovered_feed_returns_to_channel_invalid_when_the_channel_is_flagged(refresh: Any, session: Session, connection: Connection, sandbox: SandboxServer, clock: Clock, feed_faults: None) -> None:
    connection.channel_id = 999
    connection.channel_invalid_at = clock()
    session.commit()
    refresh(feed_mode="not_found")

    refresh(feed_mode="xml")

    session.refresh(connection)
    assert connection.health == Health.CHANNEL_INVALID


FEEDS = Path(__file__).parents[1] / "personio" / "feeds"


def serve_parsed(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The next fetches answer 200 with the fixture feed ``name`` (parsed as fetch_feed would)."""
    body = (FEEDS / name).read_bytes()
    fetched = FeedFetch(not_modified=False, jobs=parse_feed(body), etag=None, last_modified=None, content_sha256=name, status=200)
    monkeypatch.setattr("services.jobs.fetch_feed", lambda *args, **kwargs: fetched)


def test_invalid_positions_are_skipped_and_the_count_is_the_feed_status(refresh: Any, session: Session, connection: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a real-shaped feed with a position without id, a blank id and a duplicate id
    serve_parsed(monkeypatch, "real_de_mixed.xml")

    result = refresh()

    # then: the valid jobs are cached, the first of the duplicates wins
    assert (result.error, result.published, result.added, result.skipped) == (None, 3, 3, 3)
    jobs = cached(session)
    assert sorted(jobs) == [2101001, 2101002, 2101003]
    assert jobs[2101001].name == "Fachkraft für Lagerlogistik (m/w/d)"
    # and: the feed is healthy but says what it left out
    session.refresh(connection)
    assert connection.health == Health.HEALTHY
    assert (connection.feed_error, connection.feed_skipped) == (None, 3)
    view = describe_connection(connection)
    assert (view["feed_skipped"], view["feed_status"]) == (3, "3 positions skipped")

    # and: a clean feed clears the count
    serve_parsed(monkeypatch, "normal.xml")
    assert refresh().skipped == 0
    session.refresh(connection)
    assert connection.feed_skipped == 0
    assert describe_connection(connection)["feed_status"] == "ok"


def test_one_skipped_position_is_singular(refresh: Any, session: Session, connection: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_parsed(monkeypatch, "real_fr_unknown_elements.xml")

    refresh()

    session.refresh(connection)
    assert describe_connection(connection)["feed_status"] == "1 position skipped"


@pytest.mark.parametrize("code", ["feed.wrong_root", "feed.not_xml", "feed.malformed", "feed.no_valid_position"])
def test_a_feed_that_is_not_personio_xml_is_permanent_not_retried(refresh: Any, session: Session, connection: Connection, events: ListPublisher, monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    refresh()  # jobs cached from the stand-in's good feed

    def invalid(*args: Any, **kwargs: Any) -> FeedFetch:
        raise FeedInvalid(code, "not a Personio feed")

    monkeypatch.setattr("services.jobs.fetch_feed", invalid)

    result = refresh()

    assert (result.error, result.error_health) == (code, Health.FEED_DISABLED)
    session.refresh(connection)
    assert (connection.health, connection.feed_error) == (Health.FEED_DISABLED, code)
    assert describe_connection(connection)["feed_status"] == code
    message = health_message(connection)
    assert all("retried automatically" not in text and "automatisch erneut" not in text for text in message.values())
    # It is not "switched off": the address answers, but not with Personio's XML.
    assert "does not answer with Personio's jobs XML feed" in message["en"] and code in message["en"]
    assert "antwortet nicht der Stellen-XML-Feed von Personio" in message["de"]
    assert all(job.published for job in cached(session).values())  # an invalid feed unpublishes nothing


def test_an_unreachable_feed_is_still_retried(refresh: Any, session: Session, connection: Connection, sandbox: SandboxServer, feed_faults: None) -> None:

    result = refresh(feed_mode="server_error")

    assert result.error_health == Health.FEED_UNREACHABLE
    session.refresh(connection)
    assert "retried automatically" in health_message(connection)["en"]


# ------------------------------------------------------------- listing


def test_list_jobs_hides_unpublished_unless_asked(refresh: Any, session: Session, connection: Connection, sandbox: SandboxServer) -> None:
    refresh()
    edit_company(sandbox, lambda company: setattr(company, "jobs", company.jobs[:1]))
    refresh()

    published = list_jobs(session, connection)
    everything = list_jobs(session, connection, include_unpublished=True)

    assert [j["job_position_id"] for j in published] == [1000001]
    assert len(everything) == 3
    assert [j["published"] for j in everything] == [True, False, False]
    assert everything[1]["unpublished_at"] is not None
    assert published[0]["created_at"] == "2024-01-15T09:30:00+00:00"


def test_list_jobs_shows_what_recruiters_pick_a_job_by(refresh: Any, session: Session, connection: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: the real-shaped German feed, one job with every detail and one with every detail empty
    serve_parsed(monkeypatch, "real_de_mixed.xml")

    refresh()

    jobs = {job["job_position_id"]: job for job in list_jobs(session, connection)}
    full, empty = jobs[2101001], jobs[2101002]
    assert full["subcompany"] == "Beispiel Logistik GmbH"
    assert full["sections"] == ["Deine Aufgaben", "Das bringst du mit"]
    assert full["keywords"] == ["Lager", "Stapler", "Logistik"]
    assert (full["occupation"], full["occupation_category"]) == ("warehouse_and_logistics", "logistics")
    assert full["years_of_experience"] == "1-2"
    assert full["salary"] == {"min": "2800", "max": "3200", "currency_code": "EUR", "currency_symbol": "€", "type": "monthly"}
    assert full["additional_offices"] == ["Nürnberg", "Remote"]
    # and: empty elements are absent values, not empty strings
    assert empty["sections"] == [] and empty["keywords"] == []
    assert (empty["subcompany"], empty["occupation"], empty["years_of_experience"], empty["salary"]) == (None, None, None, None)
    # and: the view is JSON as it is
    assert json.loads(json.dumps(list(jobs.values()))) == list(jobs.values())


def test_changed_section_names_are_stored(refresh: Any, session: Session, connection: Connection, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    serve_parsed(monkeypatch, "real_en_mixed.xml")
    refresh()
    before = {job.job_position_id: job.sections for job in cached(session).values()}
    assert any(before.values())

    # when: every job's sections are forgotten (a cache from before revision 0006)
    for job in cached(session).values():
        job.sections = None
    session.commit()
    result = apply_feed(session, connection, parse_feed((FEEDS / "real_en_mixed.xml").read_bytes()), now=clock())
    session.commit()

    # then: the next application of the feed fills them in again
    assert result.changed
    assert {job.job_position_id: job.sections for job in cached(session).values()} == before


def test_the_feed_status_is_told_in_english_and_german(refresh: Any, session: Session, connection: Connection, monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, feed_faults: None) -> None:
    # before the first fetch: nothing to say
    assert describe_connection(connection)["feed_message"] is None

    refresh()
    session.refresh(connection)
    assert describe_connection(connection)["feed_message"] == {
        "en": f"The jobs feed of {DOMAIN} works; every position in it is used.",
        "de": f"Der Stellen-Feed von {DOMAIN} funktioniert; alle Stellen darin werden übernommen.",
    }

    serve_parsed(monkeypatch, "real_de_mixed.xml")
    refresh()
    session.refresh(connection)
    message = describe_connection(connection)["feed_message"]
    assert message is not None
    assert "3 positions in it were skipped" in message["en"]
    assert "3 Stellen darin wurden übersprungen" in message["de"]

    serve_parsed(monkeypatch, "real_fr_unknown_elements.xml")
    refresh()
    session.refresh(connection)
    message = describe_connection(connection)["feed_message"]
    assert message is not None and "1 position in it was skipped" in message["en"] and "1 Stelle darin wurde übersprungen" in message["de"]

    monkeypatch.undo()
    refresh(feed_mode="server_error")
    session.refresh(connection)
    message = describe_connection(connection)["feed_message"]
    assert message is not None
    assert "retried automatically" in message["en"] and "automatisch erneut versucht" in message["de"]
    assert "feed.server_error" in message["de"]
