"""What a request may ask of Personio beyond the candidate (issue 9): phase, external posting id,
free-text available_from and numbers as attribute text — through the real client, checked
against Personio's OpenAPI file, arriving at the stand-in as Personio takes them.

The processing fixtures (``deps``, ``connection`` and the fakes behind them) are those of
tests/services/test_processing.py, imported by name; a test's parameter of the same name is that
fixture, not a redefinition.
"""
# ruff: noqa: F811

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests
import responses
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, ProjectLink, Upload, UploadState
from personio.client import APPLICATIONS_PATH, PersonioClient, PersonioCredentials
from personio.phases import PhaseInvalid, canonical_phase, describe_phase, parse_phase
from sandbox import SandboxServer
from services.connections import link_project, list_links
from services.context import SyncDeps
from services.processing import build_application, submission_phase
from services.schemas import IntakePolicy
from tests.openapi import SpecValidationRecorder
from tests.services.test_processing import (  # noqa: F401  (fixtures are found by name)
    ACCOUNT,
    COMPANY,
    JOB,
    MOCK_BASE,
    PROJECT,
    TOKEN,
    connection,
    deps,
    fetcher,
    load,
    mocked,
    mocked_deps,
    record,
    refresher,
    step,
    wakes,
)

if TYPE_CHECKING:
    from tests.conftest import Clock

OFFER = {"type": "system", "id": "offer"}
REJECTED = {"type": "system", "id": "rejected"}
CUSTOM_7 = {"type": "custom", "id": 7}  # a custom phase of the demo company (sandbox/data/demo.json)
CUSTOM_UNKNOWN = {"type": "custom", "id": 999}


# ================================================================ personio.phases


@pytest.mark.parametrize(
    ("typed", "phase"),
    [
        ("system:offer", OFFER),
        ("SYSTEM:Offer", OFFER),
        ("offer", OFFER),
        ("custom:7", CUSTOM_7),
        ("7", CUSTOM_7),
        (" custom : 7 ", CUSTOM_7),
    ],
)
def test_an_admin_types_a_phase_in_its_short_form(typed: str, phase: dict[str, Any]) -> None:
    assert parse_phase(typed) == phase
    assert parse_phase(describe_phase(phase) or "") == phase


@pytest.mark.parametrize(
    ("typed", "part"),
    [("hired", "id"), ("system:7", "id"), ("custom:offer", "id"), ("custom:-1", "id"), ("custom:0", "id"), ("stage:1", "type"), ("", "id")],
)
def test_a_phase_personio_would_not_take_is_refused_with_the_accepted_form(typed: str, part: str) -> None:
    with pytest.raises(PhaseInvalid) as caught:
        parse_phase(typed)

    assert caught.value.part == part
    assert "system:offer or custom:42" in caught.value.fix


def test_a_custom_phase_id_is_an_integer_as_personio_expects() -> None:
    assert canonical_phase("custom", "42") == {"type": "custom", "id": 42}
    for bad in (True, 4.0, 2**53, "4 2", None):
        with pytest.raises(PhaseInvalid):
            canonical_phase("custom", bad)


# ================================================================ precedence


@pytest.mark.parametrize(
    ("on_request", "on_link", "on_connection", "sent"),
    [
        (OFFER, REJECTED, CUSTOM_7, OFFER),
        (None, REJECTED, CUSTOM_7, REJECTED),
        (None, None, CUSTOM_7, CUSTOM_7),
        (None, None, None, None),
        (OFFER, None, None, OFFER),
        (None, REJECTED, None, REJECTED),
    ],
    ids=["request-wins", "link-over-connection", "connection-default", "none", "request-only", "link-only"],
)
def test_the_phase_sent_is_the_requests_then_the_links_then_the_connections(
    session: Session, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
    on_request: Any, on_link: Any, on_connection: Any, sent: Any,
) -> None:
    # given
    connection.phase = on_connection
    link = session.scalars(select(ProjectLink).where(ProjectLink.project_id == PROJECT)).one()
    link.phase = on_link
    session.commit()
    upload = load(session, record(session, intake_policy, clock, documents=[], phase=on_request))

    # when
    phase = submission_phase(upload, link, connection)
    body = build_application(upload, JOB, None, phase)

    # then
    assert phase == sent
    assert body.get("phase") == sent


def test_without_a_phase_none_is_sent_and_personio_uses_the_categorys_initial_phase(
    session: Session, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    upload = load(session, record(session, intake_policy, clock, documents=[]))

    body = build_application(upload, JOB, None, submission_phase(upload, None, connection))

    assert "phase" not in body and "external_posting_id" not in body


# ============================================================ the client, against the stand-in


@pytest.fixture
def client(http: requests.Session, sandbox: SandboxServer) -> PersonioClient:
    return PersonioClient(http, base_url=sandbox.url, credentials=PersonioCredentials(COMPANY, TOKEN), app_id="PERSONIO_SYNC", timeout=(2.0, 5.0))


@pytest.mark.parametrize(
    ("phase", "filed"),
    [(OFFER, OFFER), (CUSTOM_7, CUSTOM_7), (CUSTOM_UNKNOWN, {"type": "system", "id": "unassigned"})],
    ids=["system", "custom", "unknown-custom"],
)
def test_the_client_sends_phase_and_posting_id_as_the_openapi_file_defines_them(
    session: Session, connection: Connection, intake_policy: IntakePolicy, clock: Clock, client: PersonioClient,
    sandbox: SandboxServer, recorder: SpecValidationRecorder, phase: dict[str, Any], filed: dict[str, Any],
) -> None:
    # given: an upload with every option Personio takes beyond the candidate
    upload = load(session, record(
        session, intake_policy, clock, documents=[], phase=phase, external_posting_id="gohiring-4711",
        attributes={"available_from": "As soon as possible", "custom_attribute_1": 42, "salary_expectations": 65000.5},
    ))

    # when
    client.create_application(build_application(upload, JOB, None, submission_phase(upload, None, connection)))

    # then: the stand-in took it (the recorder checks the request against the OpenAPI file)
    [application] = sandbox.state.applications(COMPANY)
    assert application["phase"] == phase
    assert application["filed_phase"] == filed
    assert application["external_posting_id"] == "gohiring-4711"
    assert {a["id"]: a["value"] for a in application["payload"]["attributes"]} == {
        "phone": "+49 30 1234567",
        "location": "Berlin",
        "available_from": "As soon as possible",
        "custom_attribute_1": "42",
        "salary_expectations": "65000.5",
    }
    recorder.assert_clean(min_exchanges=1)


# ================================================================ end to end


def test_phase_and_posting_id_of_a_request_arrive_at_personio(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: a connection default the request overrides
    connection.phase = dict(REJECTED)
    session.commit()
    upload_id = record(session, intake_policy, clock, phase={"type": "custom", "id": "7"}, external_posting_id="pid-123",
                       attributes={"available_from": "ab sofort", "custom_attribute_1": True})

    # when
    result = step(session, session_factory, deps, upload_id)

    # then
    assert result.state == UploadState.SUBMITTED
    [application] = sandbox.state.applications(COMPANY)
    assert application["phase"] == application["filed_phase"] == CUSTOM_7
    assert application["external_posting_id"] == "pid-123"
    assert {a["id"]: a["value"] for a in application["payload"]["attributes"]}["available_from"] == "ab sofort"
    assert {a["id"]: a["value"] for a in application["payload"]["attributes"]}["custom_attribute_1"] == "true"
    upload = load(session, upload_id)
    assert (upload.phase, upload.external_posting_id) == (CUSTOM_7, "pid-123")


def test_the_links_phase_is_used_when_the_request_has_none(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    connection.phase = dict(REJECTED)
    link_project(session, connection, PROJECT, JOB, now=clock(), require_cached=True, phase=parse_phase("offer"))
    session.commit()
    upload_id = record(session, intake_policy, clock)

    assert step(session, session_factory, deps, upload_id).state == UploadState.SUBMITTED

    [application] = sandbox.state.applications(COMPANY)
    assert application["phase"] == OFFER
    assert "external_posting_id" not in application["payload"]


def test_relinking_replaces_the_links_phase_and_links_show_it(session: Session, connection: Connection, clock: Clock) -> None:
    link_project(session, connection, PROJECT, JOB, now=clock(), require_cached=True, phase=parse_phase("custom:7"))
    assert [link["phase"] for link in list_links(session, connection)] == ["custom:7"]

    link_project(session, connection, PROJECT, JOB, now=clock(), require_cached=True)

    assert [link["phase"] for link in list_links(session, connection)] == [None]


@pytest.mark.parametrize(
    ("code", "personio_field", "field", "en", "de"),
    [
        ("errors.phase-validation.invalid-system-phase", "phase", "phase", "Settings → Recruiting → Phases", "Einstellungen → Recruiting → Phasen"),
        ("errors.posting-validation.posting-not-found", "external_posting_id", "external_posting_id", "job posting", "Stellenausschreibung"),
    ],
)
def test_personio_refusing_a_phase_or_posting_rejects_naming_the_field_in_both_languages(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock,
    connection: Connection, intake_policy: IntakePolicy, clock: Clock,
    code: str, personio_field: str, field: str, en: str, de: str,
) -> None:
    # given: Personio refuses what we validated (its rules may change)
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=400, json={"errors": [{"field": personio_field, "errors": [{"reason": code}]}]})
    upload_id = record(session, intake_policy, clock, documents=[], phase=OFFER, external_posting_id="pid-123")

    # when
    result = step(session, session_factory, mocked_deps, upload_id)

    # then
    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert (upload.reason_code, upload.error_field) == (code, field)
    assert upload.message_en and en in upload.message_en
    assert upload.message_de and de in upload.message_de


def test_an_upload_keeps_its_options_but_no_candidate_data_in_them(session: Session, connection: Connection, intake_policy: IntakePolicy, clock: Clock) -> None:
    upload_id = record(session, intake_policy, clock, documents=[], phase=OFFER, external_posting_id="pid-9")

    upload = session.scalars(select(Upload).where(Upload.id == upload_id)).one()

    assert (upload.account_id, upload.phase, upload.external_posting_id) == (ACCOUNT, OFFER, "pid-9")
    assert "phase" not in upload.candidate and "external_posting_id" not in upload.candidate
