"""End to end: the main app's message → a real worker → the stand-in over HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cli.demo import sample_pdf
from config.names import DEAD_LETTERS_KEY
from models import Upload, UploadState, utcnow
from tests.integration.conftest import (
    COMPANY_A,
    COMPANY_B,
    ROOT,
    Stack,
    candidate,
    new_id,
    redis_values,
)


def test_candidate_with_cv_arrives_with_document_attached(stack: Stack) -> None:
    pdf = sample_pdf("CV")
    request_id = new_id()
    email = f"cv-{request_id}@example.org"
    stack.send({
        "request_id": request_id, "account_id": "acct-a", "project_id": "proj-a",
        "candidate": candidate(email, phone="+49 1", location="Berlin", tags=["sourced"],
                               documents=[{"category": "cv", "filename": "cv.pdf", "content_base64": base64.b64encode(pdf).decode()}]),
    })
    status = stack.wait_terminal(request_id)
    assert status["state"] == "submitted", status
    [application] = [a for a in stack.sandbox.state.applications(company_id=1000) if a["email"] == email]
    assert application["job_position_id"] == 101
    assert application["recruiting_channel_id"] == 77
    [document] = [d for d in stack.sandbox.state.documents(company_id=1000) if d["uuid"] in application["file_uuids"]]
    assert document["size"] == len(pdf)
    assert application["payload"]["files"][0]["category"] == "cv"
    assert {"id": "phone", "value": "+49 1"} in application["payload"]["attributes"]


def test_same_candidate_again_is_already_in_personio_without_second_application(stack: Stack) -> None:
    email = f"dup-{uuid.uuid4().hex}@example.org"
    first, second = new_id(), new_id()
    stack.send({"request_id": first, "account_id": "acct-a", "project_id": "proj-a", "candidate": candidate(email)})
    assert stack.wait_terminal(first)["state"] == "submitted"
    stack.send({"request_id": second, "account_id": "acct-a", "project_id": "proj-a", "candidate": candidate(email.upper())})
    status = stack.wait_terminal(second)
    assert status["state"] == "already_in_personio"
    assert status["message"]["de"]
    assert len([a for a in stack.sandbox.state.applications(company_id=1000) if a["email_normalized"] == email]) == 1


def test_duplicate_delivery_of_one_request_records_one_upload(stack: Stack) -> None:
    request_id = new_id()
    request = {"request_id": request_id, "account_id": "acct-a", "project_id": "proj-a", "candidate": candidate(f"{request_id}@example.org")}
    stack.send(request)
    stack.send(request)
    assert stack.wait_terminal(request_id)["state"] == "submitted"
    time.sleep(0.5)
    with stack.runtime.session() as session:
        assert len(session.scalars(select(Upload).where(Upload.request_id == request_id)).all()) == 1
    assert len([a for a in stack.sandbox.state.applications() if a["email"] == f"{request_id}@example.org"]) == 1


def test_429_delays_the_upload_instead_of_failing_it(stack: Stack) -> None:
    # The stand-in allows fewer requests than the worker's budget assumes, so it answers 429.
    stack.sandbox.state.update_settings(rate_limit=2, lockout=1.0)
    try:
        ids = [new_id() for _ in range(6)]
        for request_id in ids:
            stack.send({"request_id": request_id, "account_id": "acct-b", "project_id": "proj-b", "candidate": candidate(f"{request_id}@example.org")})
        statuses = [stack.wait_terminal(request_id, timeout=90) for request_id in ids]
    finally:
        stack.sandbox.state.update_settings(rate_limit=10, lockout=1.0)
    assert [s["state"] for s in statuses] == ["submitted"] * 6
    history = [event for s in statuses for event in s["history"]]
    assert any(event["reason_code"] and "429" in event["reason_code"] for event in history), "no upload saw a 429"
    assert all(s["attempts"] == 0 for s in statuses), "a 429 must not count as a failed attempt"


def test_invalid_request_is_rejected_with_field_errors_and_an_event(stack: Stack) -> None:
    request_id = new_id()
    stack.send({"request_id": request_id, "account_id": "acct-a", "project_id": "proj-a",
                "candidate": {"first_name": "No", "last_name": "Mail", "documents": [{"category": "resume", "filename": "cv.exe", "content_base64": "QQ=="}]}})
    status = stack.wait_terminal(request_id)
    assert status["state"] == "rejected"
    assert status["reason_code"] == "personio-sync.invalid-request"
    for field_name in ("candidate.email", "candidate.documents.0.category", "candidate.documents.0.filename"):
        assert field_name in status["message"]["en"]
    # The event follows the outcome's commit (relayed from the outbox) with an id to deduplicate by.
    event = wait_event(stack, request_id)
    assert event["outcome"] == "rejected" and event["type"] == "upload.finished"
    assert str(uuid.UUID(event["event_id"])) == event["event_id"]


def wait_event(stack: Stack, request_id: str, timeout: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, fields in stack.runtime.redis.xrange(stack.runtime.settings.events_stream):
            if fields.get("request_id") == request_id:
                return fields
        time.sleep(0.05)
    raise AssertionError(f"no event for {request_id} on the stream after {timeout}s")


def test_raw_redis_message_from_a_non_python_producer(stack: Stack) -> None:
    """The README's recipe for producers without Celery: LPUSH a kombu envelope."""
    request_id = new_id()
    body = [[{"request_id": request_id, "account_id": "acct-a", "project_id": "proj-a", "candidate": candidate(f"{request_id}@example.org")}], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    task_id = str(uuid.uuid4())
    envelope = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "personio_sync.upload_candidate", "id": task_id, "root_id": task_id, "parent_id": None,
                    "group": None, "retries": 0, "eta": None, "expires": None, "argsrepr": "[<upload request>]", "kwargsrepr": "{}"},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "personio-sync"}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }
    stack.runtime.redis.lpush("personio-sync", json.dumps(envelope))
    assert stack.wait_terminal(request_id)["state"] == "submitted"


def test_reconciler_sends_an_upload_whose_message_was_lost(stack: Stack) -> None:
    request_id = new_id()
    email = f"{request_id}@example.org"
    # A worker claimed this upload and died; its message is gone from Redis.
    with stack.runtime.session() as session:
        from services.uploads import receive_upload

        received = receive_upload(session, {"request_id": request_id, "account_id": "acct-a", "project_id": "proj-a", "candidate": candidate(email)},
                                  policy=stack.runtime.intake_policy(), events=stack.runtime.events_for(session), now=utcnow())
        upload = session.get(Upload, received.upload_id)
        assert upload is not None
        upload.state = UploadState.SENDING
        upload.lease_token = "lost-worker"
        upload.lease_until = datetime.now(UTC) - timedelta(seconds=1)
        session.commit()
    status = stack.wait_terminal(request_id, timeout=30)
    assert status["state"] == "submitted"
    assert any(event["reason_code"] == "lease expired; sending again" for event in status["history"])


def test_one_company_in_lockout_does_not_stop_another(stack: Stack) -> None:
    stack.start_worker("w2")  # two worker processes share the budget and the queues
    stack.runtime.limiter.lock_out(str(COMPANY_A.company_id), 8.0)
    locked = [new_id() for _ in range(2)]
    flowing = [new_id() for _ in range(4)]
    for request_id in locked:
        stack.send({"request_id": request_id, "account_id": "acct-a", "project_id": "proj-a", "candidate": candidate(f"{request_id}@example.org")})
    started = time.monotonic()
    for request_id in flowing:
        stack.send({"request_id": request_id, "account_id": "acct-b", "project_id": "proj-b", "candidate": candidate(f"{request_id}@example.org")})
    for request_id in flowing:
        assert stack.wait_terminal(request_id, timeout=30)["state"] == "submitted"
    assert time.monotonic() - started < 6.0, "company B waited for company A's lock-out"
    with stack.runtime.session() as session:
        states = {u.request_id: u.state for u in session.scalars(select(Upload).where(Upload.request_id.in_(locked)))}
    assert set(states.values()) <= {UploadState.QUEUED, UploadState.SENDING}, states
    for request_id in locked:
        assert stack.wait_terminal(request_id, timeout=40)["state"] == "submitted"


def test_access_tokens_never_leave_the_database_encrypted(stack: Stack) -> None:
    canaries = [COMPANY_A.access_token, COMPANY_B.access_token]
    logs = stack.logs()
    assert "received" in logs  # the worker did log its work
    for canary in canaries:
        assert canary not in logs
    # Candidate data stays out of the logs too: every test candidate has an example.org email.
    assert "@example.org" not in logs
    for key, value in redis_values(stack.runtime.redis):
        for canary in canaries:
            assert canary not in value, f"token found in Redis key {key}"
    from sqlalchemy import text

    with stack.runtime.engine.connect() as conn:
        stored = [row[0] for row in conn.execute(text("SELECT access_token_encrypted FROM connections"))]
    assert stored and all(canary not in value for value in stored for canary in canaries)


def test_uploads_wait_while_credentials_are_broken_and_go_through_once_fixed(stack: Stack) -> None:
    from sandbox import CompanyConfig, JobConfig
    from services.connect import ConnectRequest
    from services.connections import find_connection, link_project

    company = CompanyConfig(company_id=3000, access_token="old-token-c", domain="gamma.jobs.personio.de", jobs=[JobConfig(id=301, name="Ops")])
    stack.sandbox.state.upsert_company(company)
    assert stack.runtime.connect(ConnectRequest(account_id="acct-c", company_id="3000", access_token="old-token-c", domain="gamma")).saved
    with stack.runtime.session() as session:
        connection = find_connection(session, "acct-c")
        assert connection is not None
        link_project(session, connection, "proj-c", 301, now=utcnow(), require_cached=True)

    # The customer resets the key in Personio: our stored token stops working.
    stack.sandbox.state.patch_company(3000, {"access_token": "new-token-c"})
    ids = [new_id() for _ in range(3)]
    for request_id in ids:
        stack.send({"request_id": request_id, "account_id": "acct-c", "project_id": "proj-c", "candidate": candidate(f"{request_id}@example.org")})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with stack.runtime.session() as session:
            states = [u.state for u in session.scalars(select(Upload).where(Upload.request_id.in_(ids)))]
        if states.count(UploadState.HELD) == 3:
            break
        time.sleep(0.2)
    assert states.count(UploadState.HELD) == 3, states
    with stack.runtime.session() as session:
        connection = find_connection(session, "acct-c")
        assert connection is not None and connection.health.value == "invalid_credentials"

    # The admin enters the new token: held uploads resume by themselves.
    report = stack.runtime.connect(ConnectRequest(account_id="acct-c", company_id="3000", access_token="new-token-c", domain="gamma"))
    assert report.saved
    for request_id in ids:
        assert stack.wait_terminal(request_id, timeout=30)["state"] == "submitted"
    assert len(stack.sandbox.state.applications(company_id=3000)) == 3


def test_a_second_beat_never_fires_the_schedule_too(stack: Stack) -> None:
    # The beat running now (an earlier test may have killed the first one and started another).
    live = [name for name, child in stack.group.children.items() if name.startswith("beat") and child.popen.poll() is None]
    assert live, "no beat is running"
    first_log = stack.data_dir / f"{live[-1]}.log"
    second_log = stack.data_dir / "beat2.log"
    deadline = time.monotonic() + 30
    while "beat: Acquired lock" not in first_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    stack.start_beat("beat2")
    time.sleep(1.0)  # let the second beat start and find the lock taken
    first_mark = len(first_log.read_text())
    time.sleep(3.0)
    first_sends = first_log.read_text()[first_mark:].count("Sending due task pump")
    second_sends = second_log.read_text().count("Sending due task pump")
    assert first_sends >= 5  # the pump keeps firing every 0.3 s from the first beat
    assert second_sends == 0, "two beats fired the same schedule"
    assert "beat: Acquired lock" not in second_log.read_text()


def test_workers_killed_mid_upload_lose_nothing_and_duplicate_nothing(stack: Stack) -> None:
    """kill -9 every worker while Personio is answering; a new worker finishes the job once."""
    stack.sandbox.state.update_settings(latency=(1.0, 1.0))
    request_id = new_id()
    email = f"{request_id}@example.org"
    try:
        stack.send({"request_id": request_id, "account_id": "acct-b", "project_id": "proj-b",
                    "candidate": candidate(email, documents=[{"category": "cv", "filename": "cv.pdf", "content_base64": base64.b64encode(sample_pdf("CV")).decode()}])})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with stack.runtime.session() as session:
                upload = session.scalar(select(Upload).where(Upload.request_id == request_id))
                if upload is not None and upload.state == UploadState.SENDING:
                    break
            time.sleep(0.05)
        time.sleep(1.5)  # inside a Personio request
        # `celery -A worker worker …`, not the beats (`celery -A worker beat`).
        workers = [p for p in stack.processes if list(p.args)[list(p.args).index("-A") + 2] == "worker" and p.poll() is None]
        assert workers
        for process in workers:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    finally:
        stack.sandbox.state.update_settings(latency=(0.0, 0.0))
    stack.start_worker("w-after-crash")
    # The lease (20 s here) expires, the reconciler queues it again, the new worker sends it.
    status = stack.wait_terminal(request_id, timeout=60)
    assert status["state"] == "submitted", status
    assert len([a for a in stack.sandbox.state.applications() if a["email"] == email]) == 1
    assert any(event["reason_code"] == "lease expired; sending again" for event in status["history"])


def test_messages_a_killed_worker_held_come_back_within_a_minute(stack: Stack) -> None:
    """An intake message held by a worker (a countdown) is delivered again after kill -9, unsent by anyone."""
    request_id = new_id()
    from tasks.producer import _producer

    sent = _producer(stack.runtime.settings.broker_url).send_task(
        "personio_sync.upload_candidate", args=[{"request_id": request_id, "account_id": "acct-b", "project_id": "proj-b",
                                                 "candidate": candidate(f"{request_id}@example.org")}],
        queue="personio-sync", countdown=3,
    )
    deadline = time.monotonic() + 10
    # Until a worker has reserved it (it holds the message until the countdown ends).
    while not any(sent.id in value for value in stack.runtime.redis.hvals("unacked")):
        assert time.monotonic() < deadline, "no worker reserved the message"
        time.sleep(0.05)
    workers = [p for p in stack.processes if list(p.args)[list(p.args).index("-A") + 2] == "worker" and p.poll() is None]
    for process in workers:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    killed_at = time.monotonic()
    stack.start_worker("w-after-kill")
    status = stack.wait_terminal(request_id, timeout=75)
    assert status["state"] == "submitted", status
    assert time.monotonic() - killed_at < 60


def test_a_plain_celery_worker_consumes_every_queue(stack: Stack) -> None:
    """`celery -A worker worker` with no options: the app declares its queues, so uploads go through."""
    for process in [p for p in stack.processes if "worker" in p.args and p.poll() is None]:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    stack.start_worker("plain", [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads", "--hostname", "plain@%h",
                                 "--loglevel", "INFO"])
    request_id = new_id()
    stack.send({"request_id": request_id, "account_id": "acct-b", "project_id": "proj-b", "candidate": candidate(f"{request_id}@example.org")})
    assert stack.wait_terminal(request_id, timeout=60)["state"] == "submitted"

    # Remote control works through the same transport: the reply queue's messages are
    # kombu's own, not tasks, and reach `celery inspect` instead of the dead letters.
    # Remote control is best-effort in Celery (a broadcast that arrives while a worker is still
    # subscribing is lost), so an operator asks again; three tries, as one would.
    for _ in range(3):
        pinged = subprocess.run([sys.executable, "-m", "celery", "-A", "worker", "inspect", "ping", "--timeout", "10", "--json"],
                                env=stack.env, cwd=ROOT, capture_output=True, timeout=60)
        if pinged.returncode == 0:
            break
    assert pinged.returncode == 0, pinged.stderr.decode(errors="replace")
    replies = json.loads(pinged.stdout.decode().strip().splitlines()[-1])
    assert any(name.startswith("plain@") and reply == {"ok": "pong"} for name, reply in replies.items()), replies
    assert stack.runtime.redis.llen(DEAD_LETTERS_KEY) == 0
