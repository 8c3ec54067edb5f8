"""A corpus of bad upload requests and the outcome each must get (test data, table-driven).

Each ``Case`` is one request the main app could send, the field its refusal must name, and
what must come of it:

- ``REJECTED``: an upload row ``rejected`` with ``personio-sync.invalid-request`` and an
  ``upload.finished`` event whose ``errors`` name the field;
- ``INVALID``: no usable ``request_id``, so only an ``upload.invalid`` event naming the field;
- any other string: that reason code on a rejected upload (the request itself is valid).

``secrets(case)`` lists the submitted values no event may carry. The candidate's values are
deliberately distinctive ("Zelinda", "quarterman-mail.net", "7731") so that a message that
quotes one is caught; bad values avoid the examples the messages themselves give
(name@example.com, 2026-03-01, https://files.example.com/cv.pdf).
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from personio.phases import PHASE_TYPES, SYSTEM_PHASES
from services.schemas import DOCUMENT_CATEGORIES, GENDERS, PERSONIO_EXTENSIONS, IntakePolicy

REJECTED = "rejected"
INVALID = "invalid"
CONNECTION_NOT_FOUND = "personio-sync.connection-not-found"

ACCOUNT = "acct-corpus"
TODAY = date.today()
# The same limits as the ``intake_policy`` fixture in tests/conftest.py.
POLICY = IntakePolicy(
    inline_document_max_bytes=1024 * 1024,
    url_document_max_bytes=2 * 1024 * 1024,
    document_url_hosts=("files.example.com", "*.cdn.example.net"),
    today=TODAY,
)
CV = b"%PDF-1.4 zq lebenslauf 7731"


@dataclass(frozen=True)
class Case:
    name: str
    payload: Any
    field: str
    expect: str = REJECTED


def valid(request_id: str = "corpus-0") -> dict[str, Any]:
    """A request that breaks no rule, with distinctive candidate values."""
    return {
        "request_id": request_id,
        "account_id": ACCOUNT,
        "project_id": "project-corpus",
        "priority": "interactive",
        "phase": {"type": "custom", "id": 4711},
        "external_posting_id": "zq-posting-7731",
        "candidate": {
            "first_name": "Zelinda",
            "last_name": "Quarterman",
            "email": "zelinda.quarterman@quarterman-mail.net",
            "phone": "+49 30 7731 9902",
            "location": "Wuppertal-Elberfeld",
            "message": "Met at the Quarterman meetup",
            "application_date": "2025-01-17",
            "tags": ["talentwunder-7731"],
            "attributes": {
                "birthday": "1988-07-23",
                "gender": "female",
                "available_from": "2027-09-01",
                "salary_expectations": "71k EUR",
                "custom_attribute_4711": "Kotlin-7731",
            },
            "documents": [
                {"category": "cv", "filename": "zq-lebenslauf.pdf", "content_base64": base64.b64encode(CV).decode()},
                {"category": "cover-letter", "filename": "zq-anschreiben.pdf", "url": "https://files.example.com/zq/anschreiben-7731.pdf"},
            ],
        },
    }


def _container(request: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        request = request[part]
    return request


def setting(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    request = valid()
    _container(request, path[:-1])[path[-1]] = value
    return request


def without(path: tuple[Any, ...]) -> dict[str, Any]:
    request = valid()
    del _container(request, path[:-1])[path[-1]]
    return request


def field_of(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path) or "request"


def adding_key(path: tuple[Any, ...], key: str, value: Any = "zq-extra-7731") -> tuple[dict[str, Any], str]:
    """The valid request with ``key`` added to the object at ``path``, and the field named."""
    request = valid()
    target = _container(request, path)
    target[key] = value
    position = list(target).index(key) + 1
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key) else f"<key #{position}>"
    return request, field_of((*path, shown))


def nested(depth: int, leaf: Any = "zq-deep-7731") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# Every string of a valid request, by path: each gets every kind of unreadable text.
TEXT_PATHS: list[tuple[Any, ...]] = [
    ("account_id",),
    ("project_id",),
    ("priority",),
    ("external_posting_id",),
    ("phase", "type"),
    ("candidate", "first_name"),
    ("candidate", "last_name"),
    ("candidate", "email"),
    ("candidate", "phone"),
    ("candidate", "location"),
    ("candidate", "message"),
    ("candidate", "application_date"),
    ("candidate", "tags", 0),
    ("candidate", "attributes", "birthday"),
    ("candidate", "attributes", "gender"),
    ("candidate", "attributes", "available_from"),
    ("candidate", "attributes", "salary_expectations"),
    ("candidate", "attributes", "custom_attribute_4711"),
    ("candidate", "documents", 0, "category"),
    ("candidate", "documents", 0, "filename"),
    ("candidate", "documents", 0, "content_base64"),
    ("candidate", "documents", 1, "filename"),
    ("candidate", "documents", 1, "url"),
]
BAD_TEXT = {
    "lone-high-surrogate-at-end": lambda s: s + "\ud800",
    "lone-low-surrogate-at-start": lambda s: "\udfff" + s,
    "nul-in-the-middle": lambda s: s[: len(s) // 2] + "\x00" + s[len(s) // 2 :],
    "surrogates-in-wrong-order": lambda s: s + "\udc00\ud800",
    "pair-as-two-code-points": lambda s: s + "\ud83d\ude00",
}
BAD_KEYS = {
    "surrogate-key": "zq\ud800key",
    "nul-key": "zq\x00key",
    "low-surrogate-only-key": "\udc01",
}
KEY_PLACES: list[tuple[Any, ...]] = [(), ("candidate",), ("candidate", "attributes"), ("candidate", "documents", 0)]

BAD_EMAILS = [
    "x@localhost",
    "zq@quarterman-mail",
    "zq@@quarterman-mail.net",
    "zq.quarterman-mail.net",
    "@quarterman-mail.net",
    "zelinda@",
    "zelinda@quarterman-mail.",
    "zelinda@.quarterman-mail.net",
    "zelinda@quarterman-mail..net",
    "zelinda@quarterman-mail.n",
    "zelinda@quarterman-mail.7731",
    "zelinda@-quarterman-mail.net",
    "zelinda@quarterman-mail-.net",
    "zelinda@quarterman_mail.net",
    "zelinda@[192.0.2.77]",
    "zelinda@192.0.2.77",
    '"zelinda q"@quarterman-mail.net',
    "zelinda q@quarterman-mail.net",
    "zelinda@quarterman mail.net",
    "zelinda..q@quarterman-mail.net",
    ".zelinda@quarterman-mail.net",
    "zelinda.@quarterman-mail.net",
    "zelinda(7731)@quarterman-mail.net",
    "zelinda@quarter\tman-mail.net",
    "zelinda@quarter\u00a0man-mail.net",
    "z" * 65 + "@quarterman-mail.net",
    "zelinda@" + "q" * 250 + ".net",
    "zelinda@quarterman-mail.n-t",
    "zelinda<at>quarterman-mail.net",
    "zelinda@quarterman-mail.net>",
    "zelinda,q@quarterman-mail.net",
    "zelinda@quarter!man-mail.net",
    "zelinda@xn--.net",
    "zelinda\U0001f600@quarterman-mail.net",
    "zelinda@quarterman-mail.net.",
]
BAD_DATES = [
    "17.01.2025",
    "2025/01/17",
    "2025-1-17",
    "2025-13-01",
    "2025-02-30",
    "20250117",
    "2025-01-17T08:00:00",
    "\u0662\u0660\u0662\u0665-\u0660\u0661-\u0661\u0667",  # Arabic-Indic digits
    "2025-01-17\n",
    " 2025-01-17",
    "tomorrow-7731",
    "",
]
BAD_AVAILABLE_FROM = [
    "",
    "   ",
    "2025-13-01",
    "2025-02-30",
    "2025-00-10",
    "soon " * 21,
    "zq 7731\nsoon",
    "zq\t7731",
]
BAD_URLS = [
    "https://files.example.com:abc/zq-7731.pdf",
    "https://files.example.com:99999/zq-7731.pdf",
    "https://files.example.com:65536/zq-7731.pdf",
    "https://files.example.com:-1/zq-7731.pdf",
    "https://[::1/zq-7731.pdf",
    "https://[::1]zq/zq-7731.pdf",
    "https://[zz::1]/zq-7731.pdf",
    "https://[::1]:abc/zq-7731.pdf",
    "http://files.example.com/zq-7731.pdf",
    "ftp://files.example.com/zq-7731.pdf",
    "files.example.com/zq-7731.pdf",
    "https://zelinda:pw7731@files.example.com/zq-7731.pdf",
    "https://@files.example.com/zq-7731.pdf",
    "https://files.example.com:8443/zq-7731.pdf",
    "https://zq-7731.example.org/cv.pdf",
    "https://169.254.169.254/zq-7731",
    "https://files.example.com.evil.example/zq-7731.pdf",
    "https://cdn.example.net/zq-7731.pdf",
    "https:///zq-7731.pdf",
    "https://files.example.com/zq 7731.pdf",
    "https://files.example.com/zq\n7731.pdf",
    "https://files.example.com/zq\t7731.pdf",
    "https://files.example.com/" + "zq7731" * 400,
    "javascript:alert(7731)",
    "",
]
EMAIL = ("candidate", "email")
DATE = ("candidate", "application_date")
DOC0 = ("candidate", "documents", 0)
DOC1 = ("candidate", "documents", 1)
ATTRS = ("candidate", "attributes")


def _cases() -> Iterator[Case]:
    # --- text that is not valid (values)
    for path in TEXT_PATHS:
        for kind, spoil in BAD_TEXT.items():
            original = _container(valid(), path[:-1])[path[-1]]
            yield Case(f"text/{field_of(path)}/{kind}", setting(path, spoil(original)), field_of(path))
    for kind, spoil in BAD_TEXT.items():
        yield Case(f"text/request_id/{kind}", setting(("request_id",), spoil("corpus-text")), "request_id", INVALID)
    # --- text that is not valid (field names, at several depths)
    for place in KEY_PLACES:
        for kind, key in BAD_KEYS.items():
            request, field = adding_key(place, key)
            yield Case(f"key/{field_of(place)}/{kind}", request, field)
    deep = valid()
    deep["candidate"]["extra"] = nested(30, {"zq\ud800": "zq-deep-7731"})
    yield Case("key/deep-inside-an-unknown-field", deep, "candidate.extra")

    # --- emails
    for index, email in enumerate(BAD_EMAILS):
        yield Case(f"email/{index}", setting(EMAIL, email), "candidate.email")
    for name, value in {"number": 7731, "null": None, "list": ["zq@quarterman-mail.net"], "object": {"zq": 1}, "empty": "", "spaces": "   "}.items():
        yield Case(f"email/{name}", setting(EMAIL, value), "candidate.email")
    yield Case("email/missing", without(EMAIL), "candidate.email")

    # --- dates
    for index, text in enumerate(BAD_DATES):
        yield Case(f"date/application_date/{index}", setting(DATE, text), "candidate.application_date")
    for index, text in enumerate(BAD_DATES[:8]):
        yield Case(f"date/birthday/{index}", setting((*ATTRS, "birthday"), text), "candidate.attributes.birthday")
    # available_from is free text or a date: only empty text, more than Personio's 100
    # characters, line breaks and impossible dates are refused.
    for index, text in enumerate(BAD_AVAILABLE_FROM):
        yield Case(f"available_from/{index}", setting((*ATTRS, "available_from"), text), "candidate.attributes.available_from")
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    yield Case("date/application_date/future", setting(DATE, tomorrow), "candidate.application_date")
    yield Case("date/birthday/future", setting((*ATTRS, "birthday"), tomorrow), "candidate.attributes.birthday")
    yield Case("date/application_date/number", setting(DATE, 20250117), "candidate.application_date")

    # --- document URLs
    for index, url in enumerate(BAD_URLS):
        yield Case(f"url/{index}", setting((*DOC1, "url"), url), "candidate.documents.1.url")
    yield Case("url/number", setting((*DOC1, "url"), 7731), "candidate.documents.1.url")

    # --- documents
    for value in ("resume", "CV", "", 7731, None, ["cv"]):
        yield Case(f"document/category/{value!r}", setting((*DOC0, "category"), value), "candidate.documents.0.category")
    for value in (
        "../zq-lebenslauf.pdf",
        "zq-lebenslauf.exe",
        "zq-lebenslauf",
        "zq-lebenslauf.jpeg",
        " zq-lebenslauf.pdf",
        "zq-lebenslauf.pdf ",
        "C:\\zq\\lebenslauf.pdf",
        "zq\nlebenslauf.pdf",
        "",
        "zq" * 150 + ".pdf",
        "zq-lebenslauf.",
        7731,
        None,
    ):
        yield Case(f"document/filename/{value!r:.40}", setting((*DOC0, "filename"), value), "candidate.documents.0.filename")
    too_big = base64.b64encode(b"z" * (POLICY.inline_document_max_bytes + 1)).decode()
    for name, value in {"not-base64": "zq lebenslauf 7731!", "empty": "", "bad-padding": "eA=", "too-large": too_big, "number": 7731, "urlsafe": "-_-_"}.items():
        yield Case(f"document/content/{name}", setting((*DOC0, "content_base64"), value), "candidate.documents.0.content_base64")
    both = valid()
    both["candidate"]["documents"][0]["url"] = "https://files.example.com/zq/both-7731.pdf"
    yield Case("document/both-sources", both, "candidate.documents.0.content_base64")
    yield Case("document/no-source", without((*DOC0, "content_base64")), "candidate.documents.0.content_base64")
    request, field = adding_key(DOC0, "size", 7731)
    yield Case("document/unknown-field", request, field)
    for name, value in {"string": "zq-lebenslauf.pdf", "number": 7731, "list": ["zq-lebenslauf.pdf"], "null": None}.items():
        yield Case(f"document/not-an-object/{name}", setting(DOC0, value), "candidate.documents.0")
    for name, value in {"string": "zq-lebenslauf.pdf", "object": {"0": "zq-lebenslauf.pdf"}, "number": 7731}.items():
        yield Case(f"document/not-a-list/{name}", setting(("candidate", "documents"), value), "candidate.documents")
    eleven = [{"category": "other", "filename": f"zq-{i}-7731.pdf", "content_base64": "eA=="} for i in range(11)]
    yield Case("document/eleven", setting(("candidate", "documents"), eleven), "candidate.documents")

    # --- names
    for which in ("first_name", "last_name"):
        path = ("candidate", which)
        for name, value in {"empty": "", "spaces": "   ", "null": None, "number": 7731, "list": ["Zelinda"], "object": {"zq": "Zelinda"}, "too-long": "Zelinda" * 40}.items():
            yield Case(f"name/{which}/{name}", setting(path, value), field_of(path))
        yield Case(f"name/{which}/missing", without(path), field_of(path))

    # --- other candidate fields
    yield Case("phone/too-long", setting(("candidate", "phone"), "+49 7731 " * 40), "candidate.phone")
    yield Case("phone/number", setting(("candidate", "phone"), 49307731), "candidate.phone")
    yield Case("location/list", setting(("candidate", "location"), ["Wuppertal-Elberfeld"]), "candidate.location")
    yield Case("location/too-long", setting(("candidate", "location"), "Wuppertal-Elberfeld " * 20), "candidate.location")
    yield Case("message/too-long", setting(("candidate", "message"), "Quarterman meetup " * 1200), "candidate.message")
    yield Case("message/object", setting(("candidate", "message"), {"text": "Quarterman meetup"}), "candidate.message")
    yield Case("tags/string", setting(("candidate", "tags"), "talentwunder-7731"), "candidate.tags")
    yield Case("tags/empty-tag", setting(("candidate", "tags"), ["talentwunder-7731", ""]), "candidate.tags.1")
    yield Case("tags/number", setting(("candidate", "tags"), [7731]), "candidate.tags.0")
    yield Case("tags/nested", setting(("candidate", "tags"), [["talentwunder-7731"]]), "candidate.tags.0")
    yield Case("tags/object", setting(("candidate", "tags"), {"talentwunder-7731": True}), "candidate.tags")
    yield Case("tags/too-many", setting(("candidate", "tags"), [f"zq-tag-{i}-7731" for i in range(51)]), "candidate.tags")
    yield Case("tags/too-long", setting(("candidate", "tags"), ["talentwunder-7731" * 20]), "candidate.tags.0")
    yield Case("attributes/list", setting(ATTRS, [{"id": "birthday", "value": "1988-07-23"}]), "candidate.attributes")
    yield Case("attributes/string", setting(ATTRS, "birthday=1988-07-23"), "candidate.attributes")
    yield Case("attributes/null", setting(ATTRS, None), "candidate.attributes")
    for key, value, field in [
        ("hobby", "chess-7731", "hobby"),
        ("custom_attribute_x", "Kotlin-7731", "custom_attribute_x"),
        ("custom_attribute_\u0661\u0662", "Kotlin-7731", "<key #6>"),
        ("custom_attribute_4711\n", "Kotlin-7731", "<key #6>"),
        ("phone", "+49 30 7731 9902", "phone"),
        ("location", "Wuppertal-Elberfeld", "location"),
        ("Birthday", "1988-07-23", "Birthday"),
    ]:
        request = valid()
        request["candidate"]["attributes"][key] = value
        yield Case(f"attributes/key/{field}/{len(key)}", request, f"candidate.attributes.{field}")
    # Numbers and booleans are sent as text; what is not one value is refused.
    for key, value in [
        ("gender", "weiblich-7731"),
        ("gender", 1),
        ("gender", True),
        ("gender", "Female"),
        ("salary_expectations", "71k EUR " * 130),
        ("custom_attribute_4711", None),
        ("custom_attribute_4711", ["Kotlin-7731"]),
        ("custom_attribute_4711", {"lang": "Kotlin-7731"}),
        ("custom_attribute_4711", float("nan")),
        ("custom_attribute_4711", float("inf")),
        ("custom_attribute_4711", 10**1000),
        ("salary_expectations", 7731 * 10**1000),
        ("birthday", ["1988-07-23"]),
        ("birthday", 19880723),
        ("available_from", 7731 * 10**100),
    ]:
        yield Case(f"attributes/value/{key}/{value!r:.20}", setting((*ATTRS, key), value), f"candidate.attributes.{key}")
    for key in ("gender", "email_address", "cv", "documents_base64", "Email"):
        request, field = adding_key(("candidate",), key, "zq-unknown-7731")
        yield Case(f"candidate/unknown/{key}", request, field)

    # --- ids, priority and the request's shape
    for name, value in {
        "null": None,
        "number": 7731,
        "empty": "",
        "too-long": "r" * 129,
        "space": "corpus id",
        "trailing-newline": "corpus-1\n",
        "leading-hyphen": "-corpus",
        "non-ascii": "corpüs-1",
        "slash": "corpus/1",
        "list": ["corpus-1"],
        "fullwidth-digits": "corpus-\uff11",
    }.items():
        yield Case(f"request_id/{name}", setting(("request_id",), value), "request_id", INVALID)
    yield Case("request_id/missing", without(("request_id",)), "request_id", INVALID)
    for which in ("account_id", "project_id"):
        for name, value in {"null": None, "empty": "", "too-long": "a" * 129, "number": 7731, "newline": "acct\n", "bell": "acct\x07", "object": {"id": "acct"}}.items():
            yield Case(f"{which}/{name}", setting((which,), value), which)
        yield Case(f"{which}/missing", without((which,)), which)
    for value in ("urgent", "INTERACTIVE", 1, None, ["backfill"]):
        yield Case(f"priority/{value!r}", setting(("priority",), value), "priority")

    # --- the Personio phase and the external posting id
    for name, value, field in [
        ("string", "offer", "phase"),
        ("list", [{"type": "system", "id": "offer"}], "phase"),
        ("number", 4711, "phase"),
        ("empty", {}, "phase.type"),
        ("no-id", {"type": "system"}, "phase.id"),
        ("no-type", {"id": "offer"}, "phase.type"),
        ("unknown-type", {"type": "stage", "id": "offer"}, "phase.type"),
        ("type-case", {"type": "System", "id": "offer"}, "phase.type"),
        ("type-number", {"type": 1, "id": "offer"}, "phase.type"),
        ("unknown-system", {"type": "system", "id": "hired"}, "phase.id"),
        ("system-case", {"type": "system", "id": "Offer"}, "phase.id"),
        ("system-number", {"type": "system", "id": 3}, "phase.id"),
        ("system-null", {"type": "system", "id": None}, "phase.id"),
        ("custom-name", {"type": "custom", "id": "interview-7731"}, "phase.id"),
        ("custom-zero", {"type": "custom", "id": 0}, "phase.id"),
        ("custom-negative", {"type": "custom", "id": -4711}, "phase.id"),
        ("custom-float", {"type": "custom", "id": 4711.5}, "phase.id"),
        ("custom-bool", {"type": "custom", "id": True}, "phase.id"),
        ("custom-huge", {"type": "custom", "id": 10**5000}, "phase.id"),
        ("custom-list", {"type": "custom", "id": [4711]}, "phase.id"),
        ("custom-spaces", {"type": "custom", "id": " 4711"}, "phase.id"),
        ("unknown-key", {"type": "custom", "id": 4711, "name": "Interview-7731"}, "phase.name"),
    ]:
        yield Case(f"phase/{name}", setting(("phase",), value), field)
    for name, value in {
        "empty": "",
        "spaces": "   ",
        "too-long": "zq-posting-7731" * 20,
        "number": 7731,
        "list": ["zq-posting-7731"],
        "object": {"pid": "zq-posting-7731"},
        "newline": "zq-posting\n7731",
        "tab": "zq-posting\t7731",
    }.items():
        yield Case(f"external_posting_id/{name}", setting(("external_posting_id",), value), "external_posting_id")
    for name, value in {"null": None, "string": "Zelinda Quarterman", "list": [valid()["candidate"]], "number": 7731}.items():
        yield Case(f"candidate/{name}", setting(("candidate",), value), "candidate")
    yield Case("candidate/missing", without(("candidate",)), "candidate")
    for key in ("callback_url", "access_token", "company_id"):
        request, field = adding_key((), key, "zq-top-7731")
        yield Case(f"request/unknown/{key}", request, field)
    for name, value in {"list": [valid()], "string": "zq-request-7731", "number": 7731, "null": None, "true": True}.items():
        yield Case(f"request/not-an-object/{name}", value, "request", INVALID)

    # --- shapes that used to crash: deep nesting, huge and non-finite numbers
    for depth in (100, 1000):
        yield Case(f"deep/tags/{depth}", setting(("candidate", "tags"), [nested(depth)]), "candidate.tags.0")
        request, field = adding_key(("candidate",), "extra", nested(depth))
        yield Case(f"deep/unknown-field/{depth}", request, field)
        yield Case(f"deep/attribute/{depth}", setting((*ATTRS, "custom_attribute_4711"), nested(depth)), "candidate.attributes.custom_attribute_4711")
        yield Case(f"deep/candidate/{depth}", setting(("candidate",), nested(depth)), "candidate")
    huge = 10**5000
    yield Case("number/huge-priority", setting(("priority",), huge), "priority")
    yield Case("number/huge-phone", setting(("candidate", "phone"), huge), "candidate.phone")
    yield Case("number/huge-account", setting(("account_id",), huge), "account_id")
    request, field = adding_key(("candidate",), "score", huge)
    yield Case("number/huge-unknown", request, field)
    for name, value in {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}.items():
        yield Case(f"number/{name}-first-name", setting(("candidate", "first_name"), value), "candidate.first_name")
        yield Case(f"number/{name}-tag", setting(("candidate", "tags"), [value]), "candidate.tags.0")

    # --- many problems at once: the list is capped, the first field still named
    many = valid()
    many["candidate"]["tags"] = [7731] * 50 + ["zq-tag-7731"] * 30
    yield Case("many/tags", many, "candidate.tags.0")
    scattered = valid()
    for i in range(300):
        scattered["candidate"][f"zq_unknown_{i:03}"] = f"zq-value-{i}-7731"
    yield Case("many/unknown-fields", scattered, "candidate.zq_unknown_000")

    # --- valid requests that still cannot be sent: the specific reason
    yield Case("other/account-not-connected", setting(("account_id",), "acct-not-connected"), "account_id", CONNECTION_NOT_FOUND)
    unicode_ok = setting(("candidate", "last_name"), "Quarterman-Łućja \U0001f600")
    unicode_ok["account_id"] = "acct-not-connected"
    yield Case("other/account-not-connected-unicode-name", unicode_ok, "account_id", CONNECTION_NOT_FOUND)


def cases() -> list[Case]:
    """Every case, each with its own request_id where it has a usable one."""
    out = []
    for index, case in enumerate(_cases()):
        payload = case.payload
        if isinstance(payload, dict) and payload.get("request_id") == "corpus-0":
            payload = copy.copy(payload)
            payload["request_id"] = f"corpus-{index + 1}"
        out.append(Case(case.name, payload, case.field, case.expect))
    return out


_ENUMS = frozenset((*DOCUMENT_CATEGORIES, *GENDERS, *PERSONIO_EXTENSIONS, *PHASE_TYPES, *SYSTEM_PHASES, "interactive", "backfill"))
_UNREADABLE = re.compile("[\ud800-\udfff\x00]")


def secrets(case: Case) -> set[str]:
    """Submitted values (not ids) that no event may contain: every string of 4+ characters.

    Unreadable characters are cut out, so "Quarterman\\ud800" still checks for "Quarterman".
    """
    found: set[str] = set()
    stack: list[tuple[Any, bool]] = [(case.payload, True)]
    while stack:
        value, top = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if top and key in ("request_id", "account_id", "project_id"):
                    continue  # ids may appear in events
                stack.append((item, False))
        elif isinstance(value, list):
            stack.extend((item, False) for item in value)
        elif isinstance(value, str):
            for part in _UNREADABLE.split(value):
                if len(part.strip()) >= 4 and part not in _ENUMS:
                    found.add(part)
    return found
