"""A burst of intake while uploads run, and canaries that must appear nowhere they do not belong.

Real worker and beat processes, the stand-in over HTTP, the embedded defaults (or REDIS_URL /
DATABASE_URL). The burst is what the embedded SQLite must take without a "database is
locked" reaching a task; the canaries are an access token and a candidate's email and phone.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests
from sqlalchemy import inspect, text

from cli.demo import sample_pdf
from cli.processes import flower_command
from config import load_settings
from config.names import INTAKE_QUEUE
from services.uploads import upload_status
from tests.integration.conftest import (
    COMPANY_A,
    COMPANY_B,
    ROOT,
    Stack,
    candidate,
    new_id,
    redis_values,
)
from tests.worker.poison import envelope

pytestmark = pytest.mark.integration


def test_a_burst_of_1000_requests_while_uploads_run_meets_no_locked_database(stack: Stack) -> None:
    uploads = [new_id() for _ in range(10)]
    for request_id in uploads:
        stack.send({"request_id": request_id, "account_id": "acct-a", "project_id": "proj-a",
                    "candidate": candidate(f"{request_id}@example.org", documents=[
                        {"category": "cv", "filename": "cv.pdf", "content_base64": base64.b64encode(sample_pdf("CV")).decode()}])})
    burst = [f"burst-{uuid.uuid4().hex}" for _ in range(1000)]
    pipe = stack.runtime.redis.pipeline()
    for request_id in burst:
        # An account that is not connected: each request is one intake transaction, no Personio call.
        message = envelope([{"request_id": request_id, "account_id": "acct-unknown", "project_id": "p",
                             "candidate": candidate(f"{request_id}@example.org")}])
        message["properties"]["delivery_info"]["routing_key"] = INTAKE_QUEUE
        pipe.lpush(INTAKE_QUEUE, json.dumps(message))
    pipe.execute()

    deadline = time.monotonic() + 180
    missing = set(burst)
    while missing and time.monotonic() < deadline:
        with stack.runtime.session() as session:
            missing = {r for r in missing if upload_status(session, r) is None}
        time.sleep(1)
    assert not missing, f"{len(missing)} burst requests have no status"
    for request_id in uploads:
        assert stack.wait_terminal(request_id, timeout=120)["state"] == "submitted"
    logs = stack.logs()
    assert "database is locked" not in logs
    assert "intake of message" not in logs  # not even a retried intake


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_canaries_appear_only_in_their_own_columns(stack: Stack) -> None:
    port = _free_port()
    env = {**stack.env, "PERSONIO_SYNC_FLOWER_PORT": str(port), "PERSONIO_SYNC_FLOWER_BASIC_AUTH": "ops:canary-test-pw"}
    flower_log = stack.data_dir / "flower.log"
    flower = subprocess.Popen(flower_command(load_settings(env)), env=env, cwd=ROOT, stdout=open(flower_log, "ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/workers", auth=("ops", "canary-test-pw"), timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and flower.poll() is None, flower_log.read_text()[-2000:]
            time.sleep(0.3)
        _check_canaries(stack, port)
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(20)


def _check_canaries(stack: Stack, flower_port: int) -> None:
    request_id = new_id()
    email, phone = f"canary-{uuid.uuid4().hex[:10]}@example.org", "+49 30 5550199"
    request = {"request_id": request_id, "account_id": "acct-b", "project_id": "proj-b", "candidate": candidate(email, phone=phone)}
    # A careless producer: the whole request in argsrepr, which Celery shows in Flower.
    message = envelope([request], headers__argsrepr=json.dumps([request]))
    message["properties"]["delivery_info"]["routing_key"] = INTAKE_QUEUE
    stack.runtime.redis.lpush(INTAKE_QUEUE, json.dumps(message))
    assert stack.wait_terminal(request_id)["state"] == "submitted"
    time.sleep(1.5)  # let the relay publish the outcome event, and Flower take in the task events
    canaries = [COMPANY_A.access_token, COMPANY_B.access_token, email, email.lower(), phone]

    tasks = requests.get(f"http://127.0.0.1:{flower_port}/api/tasks", auth=("ops", "canary-test-pw"), timeout=10)
    assert tasks.ok
    assert message["headers"]["id"] in tasks.text  # Flower saw the task ...
    for canary in canaries:
        assert canary not in tasks.text, f"{canary} in Flower"  # ... but none of its data

    logs = stack.logs()
    for canary in canaries:
        assert canary not in logs, f"{canary} in the logs"

    def queued_bodies(key: str) -> bool:  # queued message bodies carry the request by design
        return key in (INTAKE_QUEUE, "unacked") or key.startswith(f"{INTAKE_QUEUE}.")

    for key, value in redis_values(stack.runtime.redis, skip=queued_bodies):
        for canary in canaries:
            assert canary not in value, f"{canary} in Redis key {key}"

    # The database holds them only where they belong: the candidate itself and the duplicate guard.
    allowed = {("uploads", "candidate"), ("uploads", "email_normalized"), ("application_claims", "email_normalized")}
    with stack.runtime.engine.connect() as conn:
        inspector = inspect(conn)
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                if (table, column["name"]) in allowed or "CHAR" not in str(column["type"]).upper() and "TEXT" not in str(column["type"]).upper() and "JSON" not in str(column["type"]).upper():
                    continue
                rows = conn.execute(text(f'SELECT "{column["name"]}" FROM "{table}"')).scalars()
                for value in rows:
                    for canary in canaries:
                        assert canary not in str(value or ""), f"{canary} in {table}.{column['name']}"
