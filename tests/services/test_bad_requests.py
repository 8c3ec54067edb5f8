"""The corpus of bad requests (tests/services/bad_requests.py): each gets its outcome, none leaks.

For every case: validation names the expected field; through ``receive_upload`` against the
test database nothing raises, the upload is ``rejected`` with
``personio-sync.invalid-request`` (or only an ``upload.invalid`` event when the request_id
itself is unusable, or the case's other reason), and no event carries a submitted value or
text that cannot be encoded.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.orm import Session

from models import Upload, UploadState
from services.events import ListPublisher
from services.schemas import MAX_ERRORS, IntakePolicy, UploadRequestInvalid, load_upload_request
from services.secrets import TokenCipher
from services.uploads import receive_upload
from tests.factories import make_connection
from tests.services.bad_requests import ACCOUNT, INVALID, POLICY, REJECTED, Case, cases, secrets
from tests.services.german_checks import english_in

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from tests.conftest import Clock

CASES = cases()


def names_field(errors: list[str], field: str) -> bool:
    return any(line.startswith(f"{field}: ") for line in errors)


def leaks(case: Case, published: Any) -> list[str]:
    """What is wrong with something published for ``case``: unencodable text or a submitted value."""
    text = json.dumps(published, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ["not encodable as UTF-8"]
    return [f"quotes {value[:40]!r}" for value in secrets(case) if value in text]


def test_the_corpus_is_large_and_each_case_is_named_once() -> None:
    assert len(CASES) >= 200
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert {case.expect for case in CASES} >= {REJECTED, INVALID, "personio-sync.connection-not-found"}


@pytest.mark.parametrize("case", [c for c in CASES if c.expect in (REJECTED, INVALID)], ids=lambda c: c.name)
def test_validation_names_the_field_and_quotes_nothing(case: Case) -> None:
    with pytest.raises(UploadRequestInvalid) as caught:
        load_upload_request(case.payload, POLICY)

    invalid = caught.value
    assert names_field(invalid.errors, case.field), invalid.errors
    assert case.field in invalid.fields
    assert (invalid.request_id is None) == (case.expect == INVALID)
    assert len(invalid.errors) <= MAX_ERRORS + 1
    assert all(line.endswith(".") for line in invalid.errors), invalid.errors
    assert not leaks(case, invalid.errors), leaks(case, invalid.errors)


@pytest.mark.parametrize("case", [c for c in CASES if c.expect not in (REJECTED, INVALID)], ids=lambda c: c.name)
def test_valid_requests_of_the_corpus_pass_validation(case: Case) -> None:
    load_upload_request(case.payload, POLICY)


def test_every_case_through_receive_upload(
    session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock
) -> None:
    # given: the corpus's account is connected, and the corpus was written for these limits
    assert intake_policy == POLICY
    make_connection(session, cipher, account_id=ACCOUNT, token="t")
    failures: list[str] = []

    for case in CASES:
        before = len(events.events)
        # when
        try:
            received = receive_upload(session, case.payload, policy=intake_policy, events=events, now=clock())
        except Exception as exc:  # the point of the test: nothing may escape
            failures.append(f"{case.name}: raised {type(exc).__name__}")
            session.rollback()
            continue
        new = events.events[before:]

        # then
        problems: list[str] = []
        if len(new) != 1:
            problems.append(f"published {len(new)} events")
        event = new[-1] if new else {}
        if case.expect == INVALID:
            if received.upload_id is not None:
                problems.append("recorded an upload without a usable request_id")
            if event.get("type") != "upload.invalid" or event.get("reason_code") != "personio-sync.invalid-request":
                problems.append(f"event {event.get('type')}/{event.get('reason_code')}")
            if not names_field(event.get("errors") or [], case.field):
                problems.append(f"errors do not name {case.field}: {event.get('errors')}")
        else:
            upload = session.get(Upload, received.upload_id) if received.upload_id is not None else None
            reason = "personio-sync.invalid-request" if case.expect == REJECTED else case.expect
            if upload is None or (upload.state, upload.reason_code) != (UploadState.REJECTED, reason):
                problems.append(f"upload {upload and (upload.state, upload.reason_code)}")
            if (event.get("type"), event.get("outcome"), event.get("reason_code")) != ("upload.finished", "rejected", reason):
                problems.append(f"event {event.get('type')}/{event.get('outcome')}/{event.get('reason_code')}")
            if case.expect == REJECTED and not names_field(event.get("errors") or [], case.field):
                problems.append(f"errors do not name {case.field}: {event.get('errors')}")
            if case.expect == REJECTED and upload is not None:
                # The German message gives every refusal in German, with the field path as it is.
                german = upload.message_de or ""
                if english_in(german):
                    problems.append(f"English in message_de: {english_in(german)}")
                if f"{case.field}: " not in german:
                    problems.append(f"message_de does not name {case.field}")
            if case.expect != REJECTED and event.get("field") != case.field:
                problems.append(f"field {event.get('field')!r}")
            if upload is not None and event.get("request_id") != upload.request_id:
                problems.append("event's request_id is not the upload's")
        for event in new:
            problems.extend(leaks(case, event))
        failures.extend(f"{case.name}: {problem}" for problem in problems)

    assert not failures, "\n".join(failures)
