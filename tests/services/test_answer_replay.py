"""Every shape of Personio answer, replayed by a local HTTP server through the real client.

Each row is one status × body as Personio sends it (from its OpenAPI file, its developer
pages and public clients), including the ones that used to be misread. A row asserts how the
client classifies it (class, reason code, retried or not) and what one upload step makes of
it: the upload's state and the recruiter's message in English and German (``must``: in the
text; ``never``: not in it). The server is a plain ``http.server`` on 127.0.0.1, so the answer
goes through sockets, ``requests`` and the client's one choke point like a real one.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, Health, Job, Upload, UploadState
from personio.client import APPLICATIONS_PATH, DOCUMENTS_PATH, PersonioClient, PersonioCredentials
from personio.errors import (
    PersonioApplicantExists,
    PersonioError,
    PersonioFeatureDisabled,
    PersonioPayloadTooLarge,
    PersonioRateLimited,
    PersonioServerError,
    PersonioUnauthorized,
    PersonioUnprocessable,
    PersonioValidationError,
)
from ratelimit import CompanyRateLimiter
from services.context import SyncDeps, UploadPolicy
from services.events import ListPublisher
from services.processing import StepOutcome, StepResult, process_upload
from services.secrets import TokenCipher
from tests.factories import make_connection, make_link, make_upload
from tests.services.processing_support import claim, client_factory, load

if TYPE_CHECKING:
    from services.schemas import IntakePolicy
    from tests.conftest import Clock

COMPANY, TOKEN, JOB = 1000, "demo-token", 1000001
ACCOUNT, PROJECT = "acct-1", "proj-1"
CV = b"%PDF-1.4 curriculum vitae"
DOCUMENT_UUID = "0f1e2d3c-0000-4000-8000-00000000000{n}"


# ============================================================ the local server


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def as_json(status: int, body: Any, **headers: str) -> Answer:
    return Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})


class Replayer:
    """Answers each path with its programmed answer; documents succeed unless told otherwise."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.calls: list[str] = []
        self._documents = 0
        replayer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                replayer.calls.append(self.path)
                answer = replayer.answers.get(self.path) or replayer.document_uploaded()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: stop() waits for serve_forever to notice, up to one poll interval.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def document_uploaded(self) -> Answer:
        self._documents += 1
        return as_json(200, {"uuid": DOCUMENT_UUID.format(n=self._documents % 10), "size": len(CV), "mimetype": "application/pdf",
                             "original_filename": "cv.pdf", "extension": "pdf"})

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()


@pytest.fixture
def replayer() -> Iterator[Replayer]:
    server = Replayer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain_http() -> Iterator[requests.Session]:
    # Not the spec-checked ``http`` fixture: the answers are deliberately odd shapes, some
    # outside Personio's OpenAPI file (that is what this module is about).
    with requests.Session() as session:
        yield session


@pytest.fixture
def deps(upload_policy: UploadPolicy, limiter: CompanyRateLimiter, plain_http: requests.Session, replayer: Replayer, cipher: TokenCipher,
         events: ListPublisher, clock: Clock) -> SyncDeps:
    return SyncDeps(
        policy=upload_policy, limiter=limiter, clients=client_factory(plain_http, replayer.url, cipher), events=events,
        wake=lambda connection_id, delay: None, fetch_document=lambda url: b"", clock=clock, rng=random.Random(3),
    )


@pytest.fixture
def connection(session: Session, cipher: TokenCipher, clock: Clock) -> Connection:
    connection = make_connection(session, cipher, account_id=ACCOUNT, company_id=COMPANY, token=TOKEN, at=clock(), commit=False)
    session.add(Job(connection_id=connection.id, job_position_id=JOB, name="Engineer", published=True, first_seen_at=clock(), updated_at=clock()))
    make_link(session, connection, project_id=PROJECT, job_position_id=JOB, at=clock())
    return connection


def record(session: Session, intake_policy: IntakePolicy, clock: Clock, documents: int) -> int:
    files = [
        {"category": "cv" if n == 0 else "other", "filename": "cv.pdf" if n == 0 else f"doc{n}.pdf",
         "content_base64": base64.b64encode(CV + bytes([n]) * (n + 1)).decode()}
        for n in range(documents)
    ]
    return make_upload(session, intake_policy, clock(), "req-1", account_id=ACCOUNT, project_id=PROJECT, email="alex@example.org", documents=files)


def step(session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection_id: int, upload_id: int) -> StepResult:
    leases = claim(session, session_factory, deps, connection_id)
    assert upload_id in leases
    return process_upload(session, deps, upload_id, leases[upload_id])


def step_until_given_up(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection_id: int, upload_id: int, clock: Clock
) -> Upload:
    """Run every attempt the policy allows (waiting out each retry delay); the upload after the last."""
    for _ in range(deps.policy.max_attempts):
        result = step(session, session_factory, deps, connection_id, upload_id)
        if result.wake_in is not None:
            clock.advance(result.wake_in + 0.001)
    return load(session, upload_id)


# ================================================================== the table


def _field_error(field_name: str, reason: str, **context: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"reason": reason}
    if context:
        item["context"] = context
    return {"errors": [{"field": field_name, "errors": [item]}]}


def _generic(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"errors": [{"status": str(status), "title": title, "detail": detail}]}


@dataclass(frozen=True)
class Shape:
    path: str
    answer: Answer
    error_class: type[PersonioError]
    code: str
    retryable: bool
    state: UploadState
    must_en: tuple[str, ...] = ()
    must_de: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    documents: int = 1
    health: Health | None = None  # the connection's health after the step, when it changes


NEVER_FALSE = ("could not be reached", "nicht erreichbar", "'?'", "{", "}")

SHAPES = [
    pytest.param(Shape(
        DOCUMENTS_PATH, as_json(422, _generic(422, "Unprocessable Entity", "The document could not be processed")),
        PersonioUnprocessable, "personio.unprocessable", False, UploadState.REJECTED,
        ("Personio refused the request (422).", "The document could not be processed"),
        ("Personio hat die Anfrage (422) abgelehnt.", "The document could not be processed"),
        ("file type", "Dateityp"),
    ), id="422-without-reason-code-is-a-generic-refusal-not-a-file-type"),
    pytest.param(Shape(
        DOCUMENTS_PATH, as_json(422, _field_error("file", "errors.invalid-file-type")),
        PersonioUnprocessable, "errors.invalid-file-type", False, UploadState.REJECTED,
        ("file type of 'cv.pdf'",), ("Dateityp von 'cv.pdf'",),
    ), id="422-invalid-file-type-names-the-file"),
    pytest.param(Shape(
        DOCUMENTS_PATH, Answer(413, b"<html><body>413 Request Entity Too Large</body></html>", {"Content-Type": "text/html"}),
        PersonioPayloadTooLarge, "errors.file-too-big", False, UploadState.REJECTED,
        ("The size of 'cv.pdf' exceeds",), ("Die Größe von 'cv.pdf'",),
    ), id="413-from-the-proxy-is-file-too-big"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _field_error("files", "errors.invalid-file-type")),
        PersonioValidationError, "errors.invalid-file-type", False, UploadState.REJECTED,
        ("file type of 'cv.pdf'",), ("Dateityp von 'cv.pdf'",),
    ), id="application-file-error-names-the-only-file"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _field_error("files", "errors.file-too-big")),
        PersonioValidationError, "errors.file-too-big", False, UploadState.REJECTED,
        ("The size of a document exceeds",), ("Die Größe von einem Dokument",), ("?",), documents=2,
    ), id="application-file-error-of-an-unknown-file-says-a-document"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _field_error("files", "errors.file-validation.unknown-file-category", original_filename="doc1.pdf")),
        PersonioValidationError, "errors.file-validation.unknown-file-category", False, UploadState.REJECTED,
        ("category given for 'doc1.pdf'",), ("Dokumentkategorie von 'doc1.pdf'",), ("cv.pdf",), documents=2,
    ), id="application-file-error-names-the-file-personio-names"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _generic(400, "Bad Request", "Malformed JSON in request body")),
        PersonioValidationError, "personio.bad_request", False, UploadState.REJECTED,
        ("(400) without a reason code", "Malformed JSON in request body"), ("(400) ohne Fehlercode", "Malformed JSON in request body"),
    ), id="reasonless-400-keeps-personios-detail"),
    pytest.param(Shape(
        APPLICATIONS_PATH, Answer(400),
        PersonioValidationError, "personio.bad_request", False, UploadState.REJECTED,
        ("(400) without a reason code",), ("(400) ohne Fehlercode",), ("explanation", "Erläuterung"),
    ), id="400-without-body-says-no-reason-was-given"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(404, _generic(404, "Not Found", "No applicant alex@example.org for job")),
        PersonioValidationError, "personio.bad_request", False, UploadState.REJECTED,
        ("(404)", "No applicant [email] for job"), ("(404)", "No applicant [email] for job"), ("example.org",),
    ), id="404-keeps-the-detail-without-candidate-data"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _generic(400, "Forbidden", "feature.recruiting.disabled")),
        PersonioFeatureDisabled, "feature.recruiting.disabled", False, UploadState.HELD,
        ("waits until the Personio connection works again", "recruiting module"),
        ("wartet, bis die Personio-Verbindung wieder funktioniert", "Recruiting-Modul"),
        health=Health.RECRUITING_DISABLED,
    ), id="feature-code-with-400-holds-the-connection"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _field_error("company", "feature.public-api.disabled")),
        PersonioFeatureDisabled, "feature.public-api.disabled", False, UploadState.HELD,
        ("waits until the Personio connection works again",), ("wartet, bis die Personio-Verbindung wieder funktioniert",),
        health=Health.RECRUITING_DISABLED,
    ), id="feature-code-in-a-field-error-with-400-holds-the-connection"),
    pytest.param(Shape(
        DOCUMENTS_PATH, Answer(403),
        PersonioFeatureDisabled, "feature.public-api.disabled", False, UploadState.HELD,
        ("waits until the Personio connection works again",), ("wartet, bis die Personio-Verbindung wieder funktioniert",),
        health=Health.RECRUITING_DISABLED,
    ), id="403-without-body-is-missing-api-access"),
    pytest.param(Shape(
        DOCUMENTS_PATH, as_json(401, {"success": False, "error": {"code": 0, "message": "Unauthorized"}}),
        PersonioUnauthorized, "personio.unauthorized", False, UploadState.HELD,
        ("waits until the Personio connection works again", "company ID and access token"),
        ("wartet, bis die Personio-Verbindung wieder funktioniert", "Unternehmens-ID und Zugriffs-Token"),
        health=Health.INVALID_CREDENTIALS,
    ), id="401-holds-for-the-credentials"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, {"error": {"code": 0, "message": "Applicant already applied to this position."}}),
        PersonioApplicantExists, "errors.applicant-already-exists", False, UploadState.ALREADY_IN_PERSONIO,
        ("already applied to this job",), ("bereits auf diese Stelle beworben",),
    ), id="deprecated-already-applied-wording-is-a-duplicate"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _field_error("email", "errors.applicant-already-exists")),
        PersonioApplicantExists, "errors.applicant-already-exists", False, UploadState.ALREADY_IN_PERSONIO,
        ("already applied to this job",), ("bereits auf diese Stelle beworben",),
    ), id="duplicate-reason-code"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(400, _field_error("attributes.custom_foo", "errors.brand-new-check")),
        PersonioValidationError, "errors.brand-new-check", False, UploadState.REJECTED,
        ("Personio refused the upload (errors.brand-new-check)",), ("Personio hat den Upload abgelehnt (errors.brand-new-check)",),
    ), id="unknown-reason-code-is-generic-but-true"),
    pytest.param(Shape(
        APPLICATIONS_PATH, as_json(409, _generic(409, "Conflict", "Something conflicts")),
        PersonioValidationError, "personio.bad_request", False, UploadState.REJECTED,
        ("(409) without a reason code", "Something conflicts"), ("(409) ohne Fehlercode", "Something conflicts"),
    ), id="unexpected-status-is-generic-but-true"),
    pytest.param(Shape(
        DOCUMENTS_PATH, Answer(410, b"Gone", {"Content-Type": "text/plain"}),
        PersonioValidationError, "personio.bad_request", False, UploadState.REJECTED,
        ("(410) without a reason code",), ("(410) ohne Fehlercode",),
    ), id="unexpected-status-with-a-text-body-is-generic-but-true"),
    pytest.param(Shape(
        APPLICATIONS_PATH, Answer(400, b"<html><body>Bad Request</body></html>", {"Content-Type": "text/html"}),
        PersonioValidationError, "personio.bad_request", False, UploadState.REJECTED,
        ("(400) without a reason code",), ("(400) ohne Fehlercode",), ("<html", "<body"),
    ), id="html-400-from-a-proxy-is-a-reasonless-refusal"),
    pytest.param(Shape(
        DOCUMENTS_PATH, as_json(503, _generic(503, "Service Unavailable", "maintenance")),
        PersonioServerError, "personio.server_error", True, UploadState.QUEUED,
    ), id="503-is-retried"),
    pytest.param(Shape(
        DOCUMENTS_PATH, Answer(502, b"<html>Bad gateway</html>", {"Content-Type": "text/html"}),
        PersonioServerError, "personio.server_error", True, UploadState.QUEUED,
    ), id="html-502-is-retried"),
    pytest.param(Shape(
        DOCUMENTS_PATH, Answer(429),
        PersonioRateLimited, "personio.rate_limited", True, UploadState.QUEUED,
        health=Health.RATE_LIMITED,
    ), id="429-locks-the-company-out"),
    pytest.param(Shape(
        DOCUMENTS_PATH, Answer(429, b"", {"Retry-After": "7"}),
        PersonioRateLimited, "personio.rate_limited", True, UploadState.QUEUED,
        health=Health.RATE_LIMITED,
    ), id="429-with-retry-after"),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_personio_answer_is_classified_and_told_truthfully(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, replayer: Replayer,
    plain_http: requests.Session, intake_policy: IntakePolicy, clock: Clock, shape: Shape,
) -> None:
    # given: Personio answers this status and body
    replayer.answers[shape.path] = shape.answer

    # then: the real client classifies it
    direct = PersonioClient(plain_http, base_url=replayer.url, credentials=PersonioCredentials(COMPANY, TOKEN), app_id="PERSONIO_SYNC")
    with pytest.raises(PersonioError) as caught:
        if shape.path == DOCUMENTS_PATH:
            direct.upload_document(filename="cv.pdf", content=CV)
        else:
            direct.create_application({"first_name": "A", "last_name": "B", "email": "a@b.example", "job_position_id": JOB})
    assert type(caught.value) is shape.error_class
    assert caught.value.reason_code == shape.code
    assert caught.value.retryable is shape.retryable

    # and: one step of an upload ends (or waits) as it should, told truly in both languages
    upload_id = record(session, intake_policy, clock, shape.documents)
    result = step(session, session_factory, deps, connection.id, upload_id)
    assert result.state == shape.state
    upload = load(session, upload_id)
    session.refresh(connection)
    if shape.health is not None:
        assert connection.health == shape.health
    if shape.retryable:
        assert result.outcome == StepOutcome.PARKED and upload.message_en is None  # nothing to tell yet: it goes on
        assert upload.events[-1].reason_code is not None
        return
    if shape.state != UploadState.HELD:
        assert upload.reason_code == shape.code
        assert upload.personio_status == shape.answer.status
    assert upload.message_en and upload.message_de
    for text in shape.must_en:
        assert text in upload.message_en, upload.message_en
    for text in shape.must_de:
        assert text in upload.message_de, upload.message_de
    for text in shape.never + NEVER_FALSE:
        assert text not in upload.message_en and text not in upload.message_de, (upload.message_en, upload.message_de)


# ===================================================== answers that keep coming


def test_persistent_file_not_exists_is_uploaded_again_once_then_rejected(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, replayer: Replayer,
    intake_policy: IntakePolicy, clock: Clock,
) -> None:
    replayer.answers[APPLICATIONS_PATH] = as_json(400, _field_error("files", "errors.file-validation.file-not-exists"))
    upload_id = record(session, intake_policy, clock, 1)

    first = step(session, session_factory, deps, connection.id, upload_id)
    assert first.outcome == StepOutcome.PARKED and first.wake_in is not None
    clock.advance(first.wake_in + 0.001)
    second = step(session, session_factory, deps, connection.id, upload_id)

    assert second.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert upload.reason_code == "errors.file-validation.file-not-exists"
    assert upload.message_en is not None and upload.message_de is not None
    assert "even after they were uploaded again" in upload.message_en
    assert "auch nach erneutem Hochladen nicht gefunden" in upload.message_de
    assert replayer.calls.count(DOCUMENTS_PATH) == 2  # uploaded again exactly once, then not retried forever


def test_server_errors_until_given_up_do_not_say_personio_could_not_be_reached(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, replayer: Replayer,
    intake_policy: IntakePolicy, clock: Clock,
) -> None:
    replayer.answers[DOCUMENTS_PATH] = as_json(503, _generic(503, "Service Unavailable", "maintenance"))
    upload_id = record(session, intake_policy, clock, 1)

    upload = step_until_given_up(session, session_factory, deps, connection.id, upload_id, clock)
    assert upload.state == UploadState.FAILED and upload.reason_code == "personio-sync.retries-exhausted"
    assert upload.message_en is not None and upload.message_de is not None
    assert f"after {deps.policy.max_attempts} attempts" in upload.message_en
    assert "Personio answered each time with a temporary error of its own" in upload.message_en
    assert "Personio hat jedes Mal mit einem eigenen vorübergehenden Fehler geantwortet" in upload.message_de
    for text in NEVER_FALSE:
        assert text not in upload.message_en and text not in upload.message_de


def test_no_answer_at_all_until_given_up_says_personio_could_not_be_reached(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, replayer: Replayer,
    intake_policy: IntakePolicy, clock: Clock,
) -> None:
    replayer.stop()  # nothing listens on the port any more
    upload_id = record(session, intake_policy, clock, 1)

    upload = step_until_given_up(session, session_factory, deps, connection.id, upload_id, clock)
    assert upload.state == UploadState.FAILED
    assert upload.message_en is not None and "Personio could not be reached" in upload.message_en
    assert upload.message_de is not None and "Personio war nicht erreichbar" in upload.message_de
