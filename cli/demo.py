"""The demo scenario: connect, link, send sample candidates, show what happened."""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

from cli.outcomes import wait_for_outcome
from models import utcnow
from services.connect import ConnectRequest
from services.connections import find_connection, link_project
from tasks.producer import send_upload_request

DEMO_ACCOUNT = "demo-account"
DEMO_PROJECT = "demo-project"


def sample_pdf(title: str) -> bytes:
    """A tiny valid one-page PDF (what a sourced CV would be)."""
    text = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(text)).encode() + b" >>\nstream\n" + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def demo_requests(run: str) -> list[tuple[str, dict[str, Any]]]:
    email = f"alex.example+{run}@example.org"
    cv = base64.b64encode(sample_pdf("Alex Example - CV")).decode()
    alex = {
        "first_name": "Alex",
        "last_name": "Example",
        "email": email,
        "phone": "+49 30 0000000",
        "location": "Berlin",
        "message": "Sourced with Talentwunder",
        "tags": ["talentwunder"],
        "attributes": {"available_from": "2027-01-01"},
        "documents": [{"category": "cv", "filename": "alex-example-cv.pdf", "content_base64": cv}],
    }
    base = {"account_id": DEMO_ACCOUNT, "project_id": DEMO_PROJECT}
    return [
        ("a candidate with a CV", {**base, "request_id": f"demo-{run}-1", "candidate": alex}),
        ("the same candidate again", {**base, "request_id": f"demo-{run}-2", "candidate": alex}),
        (
            "a candidate Personio refuses (unknown attribute)",
            {**base, "request_id": f"demo-{run}-3", "candidate": {
                "first_name": "Robin", "last_name": "Refused", "email": f"robin+{run}@example.org",
                "attributes": {"custom_attribute_999": "x"},
            }},
        ),
        (
            "an invalid request (no email)",
            {**base, "request_id": f"demo-{run}-4", "candidate": {"first_name": "Nora", "last_name": "Nomail"}},
        ),
    ]


def run_demo(runtime: Any, sandbox: Any) -> bool:

    settings = runtime.settings
    demo_company = sandbox.state.company(1000)
    assert demo_company is not None, "the stand-in's demo fixture has no company 1000"
    token = demo_company.access_token
    print("\n1. Connecting the demo account to the stand-in's company 1000 …")
    report = runtime.connect(
        ConnectRequest(account_id=DEMO_ACCOUNT, company_id="1000", access_token=token, domain="https://demo.jobs.personio.de/", channel_id="4242")
    )
    with runtime.session() as session:
        for check in report.checks:
            print(f"   {'✓' if check.ok else '?' if check.ok is None else '✗'} {check.field}: {check.message['en']}")
        if not report.saved:
            print("   the demo connection could not be saved")
            return False
        connection = find_connection(session, DEMO_ACCOUNT)
        assert connection is not None
        link_project(session, connection, DEMO_PROJECT, 1000001, now=utcnow(), require_cached=True)
    print(f"2. Linked project {DEMO_PROJECT!r} to Personio job 1000001 (Backend Engineer) from the jobs feed.")

    run = uuid.uuid4().hex[:8]
    samples = demo_requests(run)
    print("3. Sending sample upload requests to the queue …")
    # The duplicate is sent after the first outcome, so "the same candidate again" is
    # really the second one (sent together, either could win the one application).
    first, *rest = samples
    outcomes: dict[str, dict[str, Any] | None] = {}
    for batch in ([first], rest):
        for label, request in batch:
            send_upload_request(request, broker_url=settings.broker_url)
            print(f"   queued {request['request_id']}: {label}")
        for _, request in batch:
            outcomes[request["request_id"]] = wait_for_outcome(runtime, request["request_id"], timeout=60)
    print("4. Outcomes:")
    ok = True
    for label, request in samples:
        status = outcomes[request["request_id"]]
        if status is None or not status["terminal"]:
            ok = False
            print(f"   {request['request_id']} ({label}): no outcome yet ({status['state'] if status else 'not received'})")
            continue
        print(f"   {request['request_id']} ({label}): {status['state']}\n      EN: {status['message']['en']}\n      DE: {status['message']['de']}")
    applications = [a for a in sandbox.state.applications(company_id=1000) if a["email"].startswith(f"alex.example+{run}")]
    for application in applications:
        files = ", ".join(f"{f['original_filename']} ({f['category']})" for f in application["payload"].get("files", []))
        print(f"5. In the stand-in: application for job {application['job_position_id']} by {application['email']} with documents: {files or 'none'}")
    if len(applications) != 1 or not applications[0]["payload"].get("files"):
        ok = False
        print("5. Expected exactly one application with the CV attached in the stand-in.")
    return ok
