"""Operations on a real run: the metrics count what two worker processes did, and the logs of
both formats (a text worker and a JSON worker) carry no token, email, phone or name."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.demo import sample_pdf
from cli.processes import worker_command
from tests.integration.conftest import COMPANY_A, COMPANY_B, Stack, candidate, new_id
from worker.metrics import render_metrics

pytestmark = pytest.mark.integration

APPLICATIONS = "/v1/recruiting/applications"
CANARY_PHONE = "+49 30 98765432"
CANARY_LAST_NAME = "Zwetschgenkuchen"


def _samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(render_metrics(stack.runtime))
        for sample in family.samples
    }


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and all((k, v) in sample_labels for k, v in labels.items()))


def _sandbox_applications(stack: Stack) -> int:
    companies: dict[str, Any] = stack.sandbox.state.stats()["companies"]
    return sum(count for company in companies.values()
               for status, count in company["endpoints"]["applications"]["statuses"].items() if status != "dropped")


def test_metrics_count_a_run_of_two_worker_processes_and_logs_stay_clean(stack: Stack) -> None:
    command = worker_command(stack.runtime.settings, concurrency=8, loglevel="INFO")
    command[command.index("--hostname") + 1] = "w-json@%h"
    second = stack.group.start("w-json", command, extra_env={"PERSONIO_SYNC_LOG_FORMAT": "json"})
    second.wait_for_log(b"ready.", timeout=60)
    before = _samples(stack)
    applications_before = _sandbox_applications(stack)

    submitted = [new_id() for _ in range(8)]
    emails = {request_id: f"canary-{request_id}@example.org" for request_id in submitted}
    # Each process must do part of the work (which one takes a message is up to timing):
    # the first half goes while the text worker is stopped, the second while the JSON one is.
    text_name = next(name for name, child in stack.group.children.items()
                     if name.startswith("w") and name != "w-json" and child.popen.poll() is None)
    text_worker = stack.group.children[text_name].popen
    for half, paused in ((submitted[:4], text_worker), (submitted[4:], second.popen)):
        os.kill(paused.pid, signal.SIGSTOP)
        try:
            for request_id in half:
                index = submitted.index(request_id)
                account, project = ("acct-a", "proj-a") if index % 2 else ("acct-b", "proj-b")
                documents = [{"category": "cv", "filename": "cv.pdf",
                              "content_base64": base64.b64encode(sample_pdf("CV")).decode()}] if index in (0, 5) else []
                stack.send({"request_id": request_id, "account_id": account, "project_id": project,
                            "candidate": candidate(emails[request_id], last_name=CANARY_LAST_NAME, phone=CANARY_PHONE,
                                                   documents=documents)})
            for request_id in half:
                assert stack.wait_terminal(request_id)["state"] == "submitted"
        finally:
            os.kill(paused.pid, signal.SIGCONT)
    rejected = new_id()
    stack.send({"request_id": rejected, "account_id": "acct-a", "project_id": "proj-a",
                "candidate": candidate("not-an-email", last_name=CANARY_LAST_NAME)})
    outcomes = {request_id: stack.wait_terminal(request_id)["state"] for request_id in [*submitted, rejected]}
    assert outcomes == {**{r: "submitted" for r in submitted}, rejected: "rejected"}

    # A task's own counters are written after it returns (Celery's task_postrun), a moment
    # after its outcome is committed: read until the last step's count has arrived.
    steps = "personio_sync_tasks_total"
    deadline = time.monotonic() + 10
    while True:
        after = _samples(stack)
        done = _sum(after, steps, task="personio_sync.process_upload", result="success") \
            - _sum(before, steps, task="personio_sync.process_upload", result="success")
        timed = _sum(after, "personio_sync_upload_duration_seconds_count") - _sum(before, "personio_sync_upload_duration_seconds_count")
        if (done >= len(submitted) and timed >= len(submitted) + 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    finished = "personio_sync_uploads_finished_total"
    assert _sum(after, finished, outcome="submitted") - _sum(before, finished, outcome="submitted") == len(submitted)
    assert _sum(after, finished, outcome="rejected", reason_code="personio-sync.invalid-request") \
        - _sum(before, finished, outcome="rejected", reason_code="personio-sync.invalid-request") == 1
    # Every application request either worker sent is counted once, as the stand-in saw it.
    requests = "personio_sync_personio_requests_total"
    counted = _sum(after, requests, endpoint=APPLICATIONS) - _sum(before, requests, endpoint=APPLICATIONS)
    assert counted == _sandbox_applications(stack) - applications_before >= len(submitted)
    assert _sum(after, "personio_sync_personio_requests_total", endpoint=APPLICATIONS + "/documents") >= 2
    assert _sum(after, steps, task="personio_sync.process_upload", result="success") \
        - _sum(before, steps, task="personio_sync.process_upload", result="success") >= len(submitted)
    assert _sum(after, "personio_sync_upload_duration_seconds_count") - _sum(before, "personio_sync_upload_duration_seconds_count") \
        == len(submitted) + 1
    assert _sum(after, "personio_sync_pump_age_seconds") < 30

    text_log = stack.data_dir.joinpath(f"{text_name}.log").read_text(errors="replace")
    json_log = stack.data_dir.joinpath("w-json.log").read_text(errors="replace")
    records = [json.loads(line) for line in json_log.splitlines() if line.startswith("{")]
    assert records, "the JSON worker wrote no JSON lines"
    finished_lines = [r for r in records if r.get("outcome") == "submitted"]
    assert finished_lines, "no outcome line in the JSON log"
    assert all(r.get("request_id") and r.get("task_id") and r.get("account_id") for r in finished_lines)
    for log in (text_log, json_log):
        for canary in (COMPANY_A.access_token, COMPANY_B.access_token, CANARY_PHONE, CANARY_LAST_NAME, "98765432",
                       *emails.values(), "JVBERi0x"):
            assert canary not in log
    second.stop()
