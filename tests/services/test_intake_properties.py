"""Property test: whatever JSON the main app sends, ``receive_upload`` returns and leaves a trace.

Payloads are arbitrary JSON values (lone surrogates and NUL in values and keys, nesting up to
~1200 levels, integers of thousands of digits, NaN and infinities) and contract-shaped
requests whose fields are each sometimes replaced by such a value. Every payload must end as
a recorded upload with a state, or, without a usable request_id, as an ``upload.invalid``
event; every event must be encodable as UTF-8 and free of submitted candidate values.
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from models import Connection, Upload
from services.events import ListPublisher
from services.schemas import IntakePolicy, usable_request_id
from services.secrets import TokenCipher
from services.uploads import receive_upload, upload_status
from tests.factories import make_connection
from tests.services.german_checks import english_in

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from tests.conftest import Clock

ACCOUNT = "acct-prop"

# Any code point, lone surrogates included, plus a few strings chosen to hurt.
any_text = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(
    ["", " ", "\ud800", "\udfff", "x\x00y", "\ud83d\ude00", "a\n", "😀", "2026-02-30", "https://[::1/x", "x@localhost", "https://files.example.com:99999/a.pdf"]
)
big_text = st.integers(min_value=1, max_value=3).map(lambda n: "Z" * (10 ** (n + 3)))
# Integers past 4300 digits: str() and json.dumps() refuse them (built lazily: not even repr works).
huge_ints = st.tuples(st.integers(min_value=4300, max_value=5200), st.sampled_from([1, -1])).map(lambda t: t[1] * 10 ** t[0])
numbers = st.integers() | huge_ints | st.sampled_from([2**63, -(2**63) - 1]) | st.floats(allow_nan=True, allow_infinity=True)
leaves = st.none() | st.booleans() | numbers | any_text | big_text
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def _nest(depth: int, leaf: Any, as_dict: bool) -> Any:
    for _ in range(depth):
        leaf = {"k": leaf} if as_dict else [leaf]
    return leaf


deep_values = st.builds(_nest, st.integers(min_value=900, max_value=1200), json_values, st.booleans())
weird = json_values | deep_values


names = st.sampled_from(["Zelinda", "Quarterman", "Łućja", "O'Neil", "Zoë 😀"])
documents = st.lists(
    st.one_of(
        st.fixed_dictionaries({"category": st.sampled_from(["cv", "other"]), "filename": st.sampled_from(["zq-cv.pdf", "zq.docx"]), "content_base64": st.sampled_from(["eA==", "JVBERi0x"])}),
        st.fixed_dictionaries({"category": st.just("cover-letter"), "filename": st.just("zq.pdf"), "url": st.sampled_from(["https://files.example.com/zq.pdf", "https://a.cdn.example.net/zq.pdf", "https://files.example.com:abc/zq.pdf", "https://files.example.com:99999/zq.pdf", "https://[::1/zq"])}),
    ),
    max_size=3,
)
valid_requests = st.fixed_dictionaries(
    {
        "request_id": st.sampled_from(["prop-1", "prop-2"]),
        "account_id": st.sampled_from([ACCOUNT, ACCOUNT, "acct-elsewhere"]),
        "project_id": st.just("project-prop"),
        "candidate": st.fixed_dictionaries(
            {"first_name": names, "last_name": names, "email": st.sampled_from(["zq@quarterman-mail.net", "zq+tag@sub.quarterman-mail.net", "zq@xn--mnchen-3ya.de"])},
            optional={
                "phone": st.just("+49 30 7731"),
                "message": st.text(max_size=20),
                "application_date": st.just("2025-01-17"),
                "tags": st.lists(st.sampled_from(["talentwunder", "zq-7731"]), max_size=3),
                "attributes": st.dictionaries(st.sampled_from(["birthday", "custom_attribute_7"]), st.just("1988-07-23"), max_size=2),
                "documents": documents,
            },
        ),
    },
    optional={"priority": st.sampled_from(["interactive", "backfill"])},
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in a (shallow) request: where a mutation may strike."""
    places = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            places += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            places += _places(item, (*path, index))
    return places


@st.composite
def near_valid_requests(draw: st.DrawFn) -> Any:
    """A valid request with 0–3 mutations: a value replaced or spoiled, a key added or removed."""
    request = draw(valid_requests)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path = draw(st.sampled_from(_places(request)))
        if not path:
            continue
        parent = request
        for part in path[:-1]:
            parent = parent[part]
        key, value = path[-1], parent[path[-1]]
        action = draw(st.sampled_from(["replace", "spoil", "add-key", "delete"]))
        if action == "replace":
            parent[key] = draw(weird)
        elif action == "spoil" and isinstance(value, str):
            at = draw(st.integers(min_value=0, max_value=len(value)))
            parent[key] = value[:at] + draw(st.sampled_from(["\ud800", "\udfff", "\x00", "\udc00\ud800"])) + value[at:]
        elif action == "add-key" and isinstance(value, dict):
            value[draw(any_text)] = draw(weird)
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
    return request


payloads = st.one_of(near_valid_requests(), near_valid_requests(), near_valid_requests(), weird, st.dictionaries(any_text, weird, max_size=5))

_fresh = itertools.count()


def _fresh_id(payload: Any) -> Any:
    """Give valid request_ids a unique suffix so most examples record a new upload."""
    if isinstance(payload, dict) and usable_request_id(payload.get("request_id")) and len(payload["request_id"]) < 100:
        payload = {**payload, "request_id": f"{payload['request_id']}.{next(_fresh)}"}
    return payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=payloads.map(_fresh_id))
def test_receive_upload_never_raises_and_always_leaves_a_status_or_event(
    payload: Any, session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock
) -> None:
    if session.query(Connection).filter_by(account_id=ACCOUNT).first() is None:
        make_connection(session, cipher, account_id=ACCOUNT, token="t")
    before = len(events.events)

    received = receive_upload(session, payload, policy=intake_policy, events=events, now=clock())

    new = events.events[before:]
    for published in new:
        json.dumps(published, ensure_ascii=False).encode("utf-8")  # strict: raises on a surrogate
        assert "Zelinda" not in json.dumps(published) and "quarterman-mail" not in json.dumps(published)
        # Validation itself never failed (receive_upload's last resort for bugs was not needed).
        assert "could not be checked" not in json.dumps(published)
    if received.upload_id is None:
        assert [e["type"] for e in new] == ["upload.invalid"]
    else:
        upload = session.get(Upload, received.upload_id)
        assert upload is not None and upload.state == received.state
        status = upload_status(session, upload.request_id)
        assert status is not None and status["state"] == received.state.value
        if received.created and upload.is_terminal:
            assert [e["type"] for e in new] == ["upload.finished"]
        if upload.reason_code == "personio-sync.invalid-request":
            # Every refusal is in German in the German message (field paths as they are).
            assert upload.message_de is not None and not english_in(upload.message_de), upload.message_de
        # Whatever was kept, accepted or refused, is text any database, Redis and Personio take.
        kept = [upload.request_id, upload.account_id, upload.project_id, upload.candidate]
        kept += [(d.filename, d.category, d.url) for d in upload.documents]
        stored = json.dumps(kept, ensure_ascii=False, allow_nan=False)
        stored.encode("utf-8")
        assert "\x00" not in stored and "\\u0000" not in stored
        event(f"state: {received.state.value}")
