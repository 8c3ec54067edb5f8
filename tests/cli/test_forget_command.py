"""``personio-sync forget`` and ``purge`` end to end: the real CLI, embedded Redis and SQLite in a data dir.

No worker runs, so a request sent to the intake queue stays there until ``forget`` takes it off.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis

from cli.main import main
from config import load_settings
from config.names import INTAKE_QUEUE
from models import utcnow
from services.events import ListPublisher
from services.schemas import IntakePolicy
from services.uploads import receive_upload
from tasks.producer import send_upload_request
from worker.runtime import Runtime

EMAIL = "Alex.Example@example.org"
CV = base64.b64encode(b"%PDF-1.4 CV of Alex Example").decode()


def request(request_id: str, email: str, first_name: str = "Alex") -> dict[str, object]:
    return {
        "request_id": request_id, "account_id": "acct-unconnected", "project_id": "proj-1",
        "candidate": {"first_name": first_name, "last_name": "Example", "email": email, "location": "Berlin",
                      "documents": [{"category": "cv", "filename": "Alex_Example_CV.pdf", "content_base64": CV}]},
    }


def test_forget_removes_the_person_from_database_and_queue_and_prints_what_it_removed(real_broker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings()
    runtime = Runtime(settings)
    runtime.prepare()
    policy = IntakePolicy(inline_document_max_bytes=1 << 20, url_document_max_bytes=1 << 20, document_url_hosts=(), today=utcnow().date())
    with runtime.session() as session:  # recorded (refused: the account is not connected), candidate kept
        receive_upload(session, request("req-recorded", EMAIL), policy=policy, events=ListPublisher(), now=utcnow())
        receive_upload(session, request("req-other", "sam@example.net", "Sam"), policy=policy, events=ListPublisher(), now=utcnow())
    send_upload_request(request("req-queued", EMAIL.upper()), broker_url=settings.broker_url)  # no worker: stays queued

    assert main(["forget", "alex.example@EXAMPLE.org", "--json"]) == 0

    removed = json.loads(capsys.readouterr().out)["removed"]
    assert removed["redis"]["queued_messages_removed"] == 1
    assert removed["database"]["uploads"] == 1 and removed["database"]["requests_recorded"] == 1
    assert removed["database"]["documents_deleted"] == 1
    client = redis.Redis.from_url(settings.redis_client_url)
    assert client.llen(INTAKE_QUEUE) == 0
    assert main(["status", "req-queued", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["state"], status["reason_code"]) == ("rejected", "personio-sync.forgotten")
    assert main(["status", "req-recorded", "--json"]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert recorded["documents"] == [] and "Alex" not in json.dumps(recorded)
    assert main(["status", "req-other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"][0]["filename"] == "Alex_Example_CV.pdf"  # someone else's: kept

    assert main(["forget", EMAIL]) == 0
    text = capsys.readouterr().out
    assert "uploads 0" in text and "queued messages removed 0" in text  # nothing of the person is left to find

    assert main(["forget", "not an address"]) == 2
    assert "not an email address" in capsys.readouterr().err


def test_purge_runs_the_retention_now(real_broker: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONIO_SYNC_RETENTION_DAYS", "0")
    settings = load_settings()
    runtime = Runtime(settings)
    runtime.prepare()
    policy = IntakePolicy(inline_document_max_bytes=1 << 20, url_document_max_bytes=1 << 20, document_url_hosts=(), today=utcnow().date())
    with runtime.session() as session:
        receive_upload(session, request("req-1", EMAIL), policy=policy, events=ListPublisher(), now=utcnow())

    assert main(["purge", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"uploads": 1, "documents": 0, "document_bytes": 0, "claims": 0, "stream_events": 0}
    assert main(["status", "req-1", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["documents"][0]["filename"] == "document-1.pdf" and "Berlin" not in json.dumps(status)
    assert main(["purge"]) == 0
    assert "uploads 0" in capsys.readouterr().out
