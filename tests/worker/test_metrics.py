"""Prometheus metrics (worker/metrics.py): what workers record, what a scrape reads, the endpoint, the dashboard."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from config import load_settings
from config.names import DEAD_LETTERS_KEY, INTAKE_QUEUE, INTERACTIVE_QUEUE, PUMP_TASK
from models import Connection, Health, Priority, Upload, UploadState, utcnow
from worker.metrics import (
    REQUEST_BUCKETS,
    MetricsRecorder,
    metrics_app,
    personio_endpoint,
    recorded_families,
    render_metrics,
    response_hook,
)
from worker.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "personio-sync.json"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def text_redis() -> fakeredis.FakeRedis:
    """Like the runtime's client: answers decoded to str."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture
def runtime(migrated_db_url: str, tmp_path: Path, text_redis: fakeredis.FakeRedis) -> Runtime:
    settings = load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path), "DATABASE_URL": migrated_db_url, "PERSONIO_RATE_LIMIT": "20/60s"})
    runtime = Runtime(settings)
    runtime.__dict__["redis"] = text_redis  # the cached_property's slot: no real Redis needed here
    return runtime


def _upload(request_id: str, state: UploadState, *, reason: str | None = None, seconds: float | None = None,
            priority: Priority = Priority.INTERACTIVE, backfill: str | None = None) -> Upload:
    created = utcnow() - timedelta(hours=1)
    return Upload(request_id=request_id, account_id="acct-1", project_id="p", state=state, reason_code=reason, priority=priority,
                  backfill_id=backfill, created_at=created, finished_at=created + timedelta(seconds=seconds) if seconds is not None else None,
                  candidate={"first_name": "Alex", "email": "alex@example.org"})


def test_a_scrape_reads_uploads_queues_budgets_and_health(runtime: Runtime, text_redis: fakeredis.FakeRedis) -> None:
    with runtime.session() as session:
        session.add_all([
            Connection(account_id="acct-1", company_id=111, access_token_encrypted="x", jobs_domain="a.jobs.personio.de",
                       health=Health.HEALTHY, feed_fetched_at=utcnow() - timedelta(seconds=100)),
            Connection(account_id="acct-2", company_id=222, access_token_encrypted="x", jobs_domain="b.jobs.personio.de",
                       health=Health.INVALID_CREDENTIALS),
        ])
        session.add_all([
            _upload("r1", UploadState.SUBMITTED, reason="personio-sync.submitted", seconds=3),
            _upload("r2", UploadState.SUBMITTED, reason="personio-sync.submitted", seconds=40),
            _upload("r3", UploadState.REJECTED, reason="personio-sync.invalid-request", seconds=0.5),
            _upload("r4", UploadState.QUEUED),
            _upload("r5", UploadState.HELD, priority=Priority.BACKFILL, backfill="bf-1"),
            _upload("r6", UploadState.SUBMITTED, reason="personio-sync.submitted", seconds=7200, priority=Priority.BACKFILL, backfill="bf-1"),
        ])
    text_redis.rpush(INTAKE_QUEUE, "a", "b")
    text_redis.rpush(INTERACTIVE_QUEUE + "\x06\x163", "c")
    text_redis.rpush(DEAD_LETTERS_KEY, "x")
    for _ in range(5):
        assert runtime.limiter.try_acquire("111").granted
    runtime.limiter.lock_out("222", 30)
    MetricsRecorder(text_redis).beat(PUMP_TASK)

    samples = _samples(render_metrics(runtime))

    assert _value(samples, "personio_sync_uploads", state="queued", priority="interactive") == 1
    assert _value(samples, "personio_sync_uploads", state="held", priority="backfill") == 1
    assert _value(samples, "personio_sync_uploads", state="sending", priority="interactive") == 0
    assert _value(samples, "personio_sync_uploads_finished_total", outcome="submitted", reason_code="personio-sync.submitted") == 3
    assert _value(samples, "personio_sync_uploads_finished_total", outcome="rejected", reason_code="personio-sync.invalid-request") == 1
    assert _value(samples, "personio_sync_upload_duration_seconds_bucket", le="1.0") == 1
    assert _value(samples, "personio_sync_upload_duration_seconds_bucket", le="5.0") == 2
    assert _value(samples, "personio_sync_upload_duration_seconds_bucket", le="+Inf") == 4
    assert _value(samples, "personio_sync_upload_duration_seconds_count") == 4
    assert _value(samples, "personio_sync_upload_duration_seconds_sum") == pytest.approx(7243.5, abs=0.5)
    assert _value(samples, "personio_sync_backfill_uploads", state="held") == 1
    assert _value(samples, "personio_sync_backfill_uploads", state="submitted") == 1
    assert _value(samples, "personio_sync_backfills_active") == 1
    assert _value(samples, "personio_sync_queue_messages", queue=INTAKE_QUEUE) == 2
    assert _value(samples, "personio_sync_queue_messages", queue=INTERACTIVE_QUEUE) == 1
    assert _value(samples, "personio_sync_dead_letters") == 1
    assert _value(samples, "personio_sync_connections", health="healthy") == 1
    assert _value(samples, "personio_sync_connections", health="invalid_credentials") == 1
    assert _value(samples, "personio_sync_connection_unhealthy", company_id="222", health="invalid_credentials") == 1
    assert _value(samples, "personio_sync_connection_feed_age_seconds", company_id="111") == pytest.approx(100, abs=5)
    assert _value(samples, "personio_sync_connection_feed_age_seconds", company_id="222") == float("inf")
    assert _value(samples, "personio_sync_company_budget_used_ratio", company_id="111") == pytest.approx(0.25)
    assert _value(samples, "personio_sync_companies_locked_out") == 1
    assert _value(samples, "personio_sync_pump_age_seconds") < 5
    assert _value(samples, "personio_sync_source_up", source="database") == 1
    assert _value(samples, "personio_sync_source_up", source="redis") == 1


def test_no_label_carries_candidate_data(runtime: Runtime) -> None:
    with runtime.session() as session:
        session.add(_upload("r1", UploadState.REJECTED, reason="free text with alex@example.org", seconds=1))
    text = render_metrics(runtime)
    assert "alex@example.org" not in text and "Alex" not in text
    assert _value(_samples(text), "personio_sync_uploads_finished_total", outcome="rejected", reason_code="other") == 1


def test_recorded_counters_and_histograms_add_up_across_recorders(text_redis: fakeredis.FakeRedis) -> None:
    # Two recorders stand for two worker processes sharing one Redis.
    first, second = MetricsRecorder(text_redis), MetricsRecorder(text_redis)
    first.count("personio_sync_personio_requests_total", {"endpoint": "/v1/recruiting/applications", "status": "201"})
    second.count("personio_sync_personio_requests_total", {"endpoint": "/v1/recruiting/applications", "status": "201"})
    second.count("personio_sync_personio_requests_total", {"endpoint": "/v1/recruiting/applications", "status": "429"})
    first.observe("personio_sync_personio_request_duration_seconds", {"endpoint": "/v1/recruiting/applications"}, 0.07, REQUEST_BUCKETS)
    second.observe("personio_sync_personio_request_duration_seconds", {"endpoint": "/v1/recruiting/applications"}, 3.0, REQUEST_BUCKETS)
    from prometheus_client import CollectorRegistry, generate_latest

    class Recorded:
        def collect(self) -> Any:
            return recorded_families(text_redis)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Recorded())  # type: ignore[arg-type]
    samples = _samples(generate_latest(registry).decode())
    endpoint = "/v1/recruiting/applications"
    assert _value(samples, "personio_sync_personio_requests_total", endpoint=endpoint, status="201") == 2
    assert _value(samples, "personio_sync_personio_requests_total", endpoint=endpoint, status="429") == 1
    assert _value(samples, "personio_sync_personio_request_duration_seconds_bucket", endpoint=endpoint, le="0.1") == 1
    assert _value(samples, "personio_sync_personio_request_duration_seconds_bucket", endpoint=endpoint, le="5.0") == 2
    assert _value(samples, "personio_sync_personio_request_duration_seconds_count", endpoint=endpoint) == 2
    assert _value(samples, "personio_sync_personio_request_duration_seconds_sum", endpoint=endpoint) == pytest.approx(3.07)


def test_the_response_hook_counts_personio_answers_only(text_redis: fakeredis.FakeRedis) -> None:
    recorder = MetricsRecorder(text_redis)
    hook = response_hook(lambda: recorder, "https://api.personio.de")

    def answer(url: str, status: int, company: str = "123") -> Any:
        response = requests.Response()
        response.status_code = status
        response.elapsed = timedelta(milliseconds=80)
        response.request = requests.Request("POST", url, headers={"X-Company-ID": company}).prepare()
        return response

    hook(answer("https://api.personio.de/v1/recruiting/applications", 201))
    hook(answer("https://api.personio.de/v1/recruiting/applications/documents", 429))
    hook(answer("https://acme.jobs.personio.de/xml", 200))  # the jobs feed: another host
    raw = text_redis.hgetall("personio-sync:metrics")
    counted = {key.split("\t")[1]: float(value) for key, value in raw.items() if key.startswith("personio_sync_personio_requests_total")}
    assert counted == {
        '{"endpoint":"/v1/recruiting/applications","status":"201"}': 1.0,
        '{"endpoint":"/v1/recruiting/applications/documents","status":"429"}': 1.0,
    }
    assert any(key.startswith("personio_sync_personio_rate_limited_total") and '"123"' in key for key in raw)
    assert personio_endpoint("https://api.personio.de/v1/recruiting/applications/12345", "https://api.personio.de") == "/v1/recruiting/applications/{id}"
    assert personio_endpoint("https://evil.example/v1", "https://api.personio.de") is None


def test_the_endpoint_asks_for_credentials_when_configured(runtime: Runtime, tmp_path: Path) -> None:
    from wsgiref.simple_server import WSGIServer, make_server

    settings = load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path), "PERSONIO_SYNC_METRICS_BASIC_AUTH": "prom:scrape-pw"})
    server: WSGIServer = make_server("127.0.0.1", 0, metrics_app(runtime, settings))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert requests.get(url + "/metrics", timeout=10).status_code == 401
        assert requests.get(url + "/metrics", auth=("prom", "wrong"), timeout=10).status_code == 401
        answer = requests.get(url + "/metrics", auth=("prom", "scrape-pw"), timeout=10)
        assert answer.status_code == 200 and "personio_sync_uploads" in answer.text
        assert requests.get(url + "/healthz", timeout=10).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_the_dashboard_queries_only_metrics_that_exist(runtime: Runtime) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported: set[str] = set()
    for family in text_string_to_metric_families(render_metrics(runtime)):
        exported |= {family.name + suffix for suffix in ("", "_total", "_bucket", "_sum", "_count", "_created", "_gcount", "_gsum")}
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 10
    queried = {name for expr in expressions for name in re.findall(r"\bpersonio_sync_[a-z_]+\b", expr)}
    unknown = sorted(queried - exported)
    assert not unknown, f"the dashboard queries metrics that do not exist: {unknown}"
    used = {name for name in queried}
    for family in ("personio_sync_uploads_finished_total", "personio_sync_queue_messages", "personio_sync_personio_requests_total",
                   "personio_sync_company_budget_used_ratio", "personio_sync_pump_age_seconds", "personio_sync_dead_letters"):
        assert family in used, f"the dashboard shows no {family}"


def test_metrics_print_reports_sources_that_do_not_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PERSONIO_SYNC_DATA_DIR", str(tmp_path))  # no Redis runs there, no schema
    assert main(["metrics", "--print"]) == 0
    samples = _samples(capsys.readouterr().out)
    assert _value(samples, "personio_sync_source_up", source="redis") == 0
    assert _value(samples, "personio_sync_source_up", source="database") == 0
