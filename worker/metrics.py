"""Prometheus metrics of the product, correct across worker processes and hosts.

Two sources, both shared by every process:

* **Recorded** by the workers into one Redis hash (:data:`config.names.METRICS_KEY`): Personio
  requests by endpoint and status (a requests response hook on the worker's HTTP session), their
  latency, and every task's duration and outcome (Celery's task signals). Redis adds them up
  atomically, so two worker processes on two hosts give one correct total.
* **Read at scrape time** from the database and Redis (:class:`ProductCollector`): uploads by state,
  priority, outcome and reason code, intake→outcome latency, queue depths, dead letters, budget use
  per company, lock-outs, connection health and feed age, backfill progress, beat's last pump.

``personio-sync metrics`` serves them (:func:`serve_metrics`); labels carry ids, states, reason
codes and endpoints only — never candidate data or secrets. Per-company series are capped
(:data:`TOP_COMPANIES`), the rest is aggregated.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from config import Settings
from config.names import (
    ALL_QUEUES,
    DEAD_LETTERS_KEY,
    HEARTBEATS_KEY,
    HOLDING_KEY,
    METRICS_KEY,
    PUMP_TASK,
)
from models import Connection, Upload, UploadState
from models.upload import TERMINAL_STATES
from worker.flower import basic_credentials, credentials_match

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from worker.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "personio_sync"
#: Per-company series (budget use, feed age, unhealthy connections) for at most this many companies.
TOP_COMPANIES = 20
#: Seconds; Personio answers in tens of milliseconds to seconds.
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds a task ran (a pump tick, a dispatch, an upload step).
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds from intake to the outcome (budget waits included: minutes for a backlog).
UPLOAD_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
BUDGET_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
#: kombu's Redis transport keeps a queue's messages of priority p > 0 in ``queue + SEP + p``.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_REASON = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_SEGMENT_ID = re.compile(r"^[0-9]+$|^[0-9a-f-]{32,36}$")

HISTOGRAM_BOUNDS: dict[str, Sequence[float]] = {
    "personio_request_duration_seconds": REQUEST_BUCKETS,
    "task_duration_seconds": TASK_BUCKETS,
}
METRIC_DOCS: dict[str, str] = {
    "personio_requests_total": "Personio API requests by endpoint and HTTP status (429: rate limited), from every worker.",
    "personio_request_duration_seconds": "Personio API request latency by endpoint.",
    "personio_rate_limited_total": "429 answers from Personio by company.",
    "task_duration_seconds": "Celery task run time by task (pump and dispatch ticks, upload steps).",
    "tasks_total": "Celery tasks run by task and result (success, failure, retry).",
}


# --------------------------------------------------------------------------- recording


def _field(name: str, labels: Mapping[str, str]) -> str:
    return name + "\t" + json.dumps(dict(sorted(labels.items())), separators=(",", ":"))


Count = tuple[str, Mapping[str, str], float]  # name, labels, amount
Observation = tuple[str, Mapping[str, str], float, Sequence[float]]  # name, labels, value, bucket bounds


class MetricsRecorder:
    """Adds to the shared counters and histograms in Redis; best effort, never raises.

    A histogram observation increments only its own bucket (``le`` = the first bound it fits
    under), its count and its sum; the reader makes the buckets cumulative. So one event costs
    one pipelined round trip of a few commands, whatever the number of buckets.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def record(self, *, counts: Sequence[Count] = (), observations: Sequence[Observation] = (), beats: Sequence[str] = ()) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name, labels, amount in counts:
                pipe.hincrbyfloat(METRICS_KEY, _field(name, labels), amount)
            for name, labels, value, buckets in observations:
                bound = next((b for b in buckets if value <= b), float("inf"))
                pipe.hincrby(METRICS_KEY, _field(name + "_bucket", {**labels, "le": _bound(bound)}), 1)
                pipe.hincrby(METRICS_KEY, _field(name + "_count", labels), 1)
                pipe.hincrbyfloat(METRICS_KEY, _field(name + "_sum", labels), value)
            for task in beats:
                pipe.hset(HEARTBEATS_KEY, task, f"{time.time():.3f}")
            pipe.execute()
        except (redis.RedisError, OSError) as error:
            log.debug("metrics: could not record (%s)", type(error).__name__)

    def count(self, name: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        self.record(counts=[(name, labels, amount)])

    def observe(self, name: str, labels: Mapping[str, str], value: float, buckets: Sequence[float]) -> None:
        self.record(observations=[(name, labels, value, buckets)])

    def beat(self, task: str) -> None:
        """Note that the periodic task ``task`` just finished (``health`` and the pump-age gauge)."""
        self.record(beats=[task])


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def personio_endpoint(url: str, api_url: str) -> str | None:
    """The endpoint label of a request to Personio's API (ids replaced), or None for other hosts."""
    base = urlsplit(api_url)
    target = urlsplit(url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not target.path.startswith(base.path):
        return None
    path = target.path[len(base.path.rstrip("/")):]
    segments = ["{id}" if _SEGMENT_ID.match(segment) else segment for segment in path.strip("/").split("/")][:6]
    return "/" + "/".join(segments)


def response_hook(recorder_for: Callable[[], MetricsRecorder], api_url: str) -> Callable[..., None]:
    """A requests ``response`` hook counting every Personio API answer (other hosts are ignored)."""

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        try:
            endpoint = personio_endpoint(response.request.url or "", api_url)
            if endpoint is None:
                return
            counts: list[Count] = [(f"{PREFIX}_personio_requests_total", {"endpoint": endpoint, "status": str(response.status_code)}, 1.0)]
            if response.status_code == 429:
                company = str(response.request.headers.get("X-Company-ID", "unknown"))
                counts.append((f"{PREFIX}_personio_rate_limited_total", {"company_id": company if company.isdigit() else "unknown"}, 1.0))
            recorder_for().record(counts=counts, observations=[
                (f"{PREFIX}_personio_request_duration_seconds", {"endpoint": endpoint}, response.elapsed.total_seconds(), REQUEST_BUCKETS)])
        except Exception as error:  # noqa: BLE001 - metrics never break a request
            log.debug("metrics: response hook failed (%s)", type(error).__name__)

    return record


_started: dict[str, float] = {}
_started_lock = threading.Lock()


def install_task_metrics(recorder_for: Callable[[], MetricsRecorder]) -> None:
    """Time every task and count its result (Celery's signals; connected once per process)."""
    from celery import signals

    def prerun(task_id: str | None = None, **kwargs: Any) -> None:
        if task_id:
            with _started_lock:
                _started[task_id] = time.monotonic()

    def postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any) -> None:
        with _started_lock:
            started = _started.pop(task_id, None) if task_id else None
        name = getattr(task, "name", None) or ""
        if not name.startswith("personio_sync."):
            return
        result = (state or "unknown").lower()  # success, failure, retry, ignored, …
        observations: list[Observation] = []
        if started is not None:
            observations.append((f"{PREFIX}_task_duration_seconds", {"task": name}, time.monotonic() - started, TASK_BUCKETS))
        recorder_for().record(counts=[(f"{PREFIX}_tasks_total", {"task": name, "result": result}, 1.0)], observations=observations,
                              beats=[name] if name == PUMP_TASK and result == "success" else [])

    signals.task_prerun.connect(prerun, weak=False, dispatch_uid="personio_sync.metrics.prerun")
    signals.task_postrun.connect(postrun, weak=False, dispatch_uid="personio_sync.metrics.postrun")


# --------------------------------------------------------------------------- reading


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting in each of our queues (every priority list of it)."""
    pipe = client.pipeline(transaction=False)
    for queue in ALL_QUEUES:
        pipe.llen(queue)
        for step in _PRIORITY_STEPS:
            pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}")
    lengths = pipe.execute()
    width = 1 + len(_PRIORITY_STEPS)
    return {queue: int(sum(lengths[i * width:(i + 1) * width])) for i, queue in enumerate(ALL_QUEUES)}


def recorded_families(client: redis.Redis) -> list[Metric]:
    """The counters and histograms the workers recorded, as Prometheus metric families."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    raw = cast(dict[str, str], client.hgetall(METRICS_KEY))
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for field, amount in raw.items():
        metric, _, encoded = field.partition("\t")
        try:
            samples.setdefault(metric, []).append((json.loads(encoded or "{}"), float(amount)))
        except ValueError:
            continue
    families: list[Metric] = []
    for short, doc in METRIC_DOCS.items():
        name = f"{PREFIX}_{short}"
        if name.endswith("_total"):
            family = CounterMetricFamily(name[: -len("_total")], doc, labels=_label_names(samples.get(name, [])))
            for labels, value in samples.get(name, []):
                family.add_metric([labels[k] for k in sorted(labels)], value)
            families.append(family)
            continue
        buckets = samples.get(name + "_bucket", [])
        label_names = sorted({k for labels, _ in buckets for k in labels if k != "le"})
        histogram = HistogramMetricFamily(name, doc, labels=label_names)
        series: dict[tuple[str, ...], list[tuple[str, float]]] = {}
        for labels, value in buckets:
            series.setdefault(tuple(labels.get(k, "") for k in label_names), []).append((labels["le"], value))
        sums: dict[tuple[str, ...], float] = {
            tuple(labels.get(k, "") for k in label_names): value for labels, value in samples.get(name + "_sum", [])
        }
        bounds = HISTOGRAM_BOUNDS.get(short, ())
        for series_key, points in series.items():
            # Stored per bucket; Prometheus wants them cumulative, every bound present, +Inf last.
            own = {float(le): value for le, value in points}
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound in (*bounds, float("inf")):
                running += own.get(bound, 0.0)
                cumulative.append((_bound(bound), running))
            histogram.add_metric(list(series_key), cumulative, sums.get(series_key, 0.0))
        families.append(histogram)
    return families


def _label_names(samples: list[tuple[dict[str, str], float]]) -> list[str]:
    return sorted({k for labels, _ in samples for k in labels})


def _duration_seconds(session: Session) -> Any:
    """SQL for an upload's seconds from intake to outcome, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", Upload.finished_at - Upload.created_at)
    return (func.julianday(Upload.finished_at) - func.julianday(Upload.created_at)) * 86400.0


def _timestamp(when: datetime) -> float:
    """Unix time of a stored datetime (stored naive in UTC, see models.base.utcnow)."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _top_companies(name: str, documentation: str, values: list[tuple[float, str]], top: int) -> Metric:
    """A gauge by ``company_id`` of the ``top`` highest (value, company) pairs (a bounded label set)."""
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, documentation, labels=["company_id"])
    for value, company in sorted(values, reverse=True)[:top]:
        family.add_metric([company], value)
    return family


class ProductCollector:
    """Reads the system's state at scrape time: one database session and a few Redis calls."""

    def __init__(self, runtime: Runtime, *, top: int = TOP_COMPANIES, clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.top = top
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # collected at scrape time only; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(f"{PREFIX}_source_up", "Whether the database and Redis answered this scrape.", labels=["source"])
        companies: list[str] = []
        try:
            families = list(self._database(companies))
            up.add_metric(["database"], 1)
        except Exception as error:  # noqa: BLE001 - a scrape reports what it can
            log.warning("metrics: the database did not answer (%s)", type(error).__name__)
            families = []
            up.add_metric(["database"], 0)
        yield from families
        try:
            families = list(self._redis(companies))
            up.add_metric(["redis"], 1)
        except Exception as error:  # noqa: BLE001 - Redis away (or a value no one could read): report the rest
            log.warning("metrics: Redis did not answer (%s)", type(error).__name__)
            families = []
            up.add_metric(["redis"], 0)
        yield from families
        yield up

    # ------------------------------------------------------------------ database

    def _database(self, companies: list[str]) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        with self.runtime.sessions() as session:
            by_state = GaugeMetricFamily(f"{PREFIX}_uploads", "Uploads in the database by state and priority.", labels=["state", "priority"])
            counts = {(str(state), str(priority)): n for state, priority, n in session.execute(
                select(Upload.state, Upload.priority, func.count()).group_by(Upload.state, Upload.priority))}
            for state in UploadState:
                for priority in ("interactive", "backfill"):
                    by_state.add_metric([str(state), priority], counts.get((str(state), priority), 0))
            yield by_state

            finished = CounterMetricFamily(f"{PREFIX}_uploads_finished", "Uploads that reached an outcome, by outcome and reason code.",
                                           labels=["outcome", "reason_code"])
            totals: dict[tuple[str, str], int] = {}
            for state, reason, n in session.execute(
                select(Upload.state, Upload.reason_code, func.count())
                .where(Upload.state.in_(list(TERMINAL_STATES))).group_by(Upload.state, Upload.reason_code)
            ):
                key = (str(state), reason if reason and _REASON.match(reason) else ("none" if not reason else "other"))
                totals[key] = totals.get(key, 0) + int(n)
            for (outcome, reason), n in sorted(totals.items()):
                finished.add_metric([outcome, reason], n)
            yield finished

            seconds = _duration_seconds(session)
            row = session.execute(
                select(*(func.sum(case((seconds <= bound, 1), else_=0)) for bound in UPLOAD_BUCKETS), func.count(), func.sum(seconds))
                .where(Upload.finished_at.is_not(None))
            ).one()
            *bucket_counts, total, seconds_sum = row
            latency = HistogramMetricFamily(f"{PREFIX}_upload_duration_seconds",
                                            "Seconds from intake to the outcome of finished uploads.", labels=[])
            points = [(_bound(bound), float(n or 0)) for bound, n in zip(UPLOAD_BUCKETS, bucket_counts, strict=True)]
            latency.add_metric([], [*points, ("+Inf", float(total or 0))], float(seconds_sum or 0.0))
            yield latency

            backfill = GaugeMetricFamily(f"{PREFIX}_backfill_uploads", "Uploads of backfills by state (progress: terminal ÷ all).", labels=["state"])
            backfill_counts: dict[Any, int] = dict(session.execute(  # type: ignore[arg-type]
                select(Upload.state, func.count()).where(Upload.backfill_id.is_not(None)).group_by(Upload.state)).all())
            for state in UploadState:
                backfill.add_metric([str(state)], int(backfill_counts.get(state, 0)))
            yield backfill
            active = session.scalar(select(func.count(func.distinct(Upload.backfill_id))).where(
                Upload.backfill_id.is_not(None), Upload.state.not_in(list(TERMINAL_STATES))))
            yield GaugeMetricFamily(f"{PREFIX}_backfills_active", "Backfills with uploads still to finish.", value=int(active or 0))

            connections = list(session.execute(
                select(Connection.company_id, Connection.health, Connection.feed_fetched_at)).all())
        companies.extend(sorted({str(row.company_id) for row in connections}))
        yield from self._connections(connections)

    def _connections(self, rows: list[Any]) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from models import Health

        by_health = GaugeMetricFamily(f"{PREFIX}_connections", "Connections by health state.", labels=["health"])
        counts: dict[str, int] = {}
        for row in rows:
            counts[str(row.health)] = counts.get(str(row.health), 0) + 1
        for health in Health:
            by_health.add_metric([str(health)], counts.get(str(health), 0))
        yield by_health

        now = self.clock()
        ages = [(((now - _timestamp(row.feed_fetched_at)) if row.feed_fetched_at else float("inf")), str(row.company_id)) for row in rows]
        yield _top_companies(f"{PREFIX}_connection_feed_age_seconds",
                             f"Seconds since the jobs feed was last fetched, for the {self.top} stalest connections (+Inf: never).",
                             ages, self.top)
        unhealthy = GaugeMetricFamily(f"{PREFIX}_connection_unhealthy",
                                      f"1 for a connection in a bad health state (at most {self.top} listed).", labels=["company_id", "health"])
        bad = [row for row in rows if row.health not in (Health.HEALTHY, Health.UNCHECKED)]
        for row in sorted(bad, key=lambda r: str(r.company_id))[: self.top]:
            unhealthy.add_metric([str(row.company_id), str(row.health)], 1)
        yield unhealthy

    # ------------------------------------------------------------------ redis

    def _redis(self, companies: list[str]) -> Iterator[Metric]:
        from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily

        client = self.runtime.redis
        depth = GaugeMetricFamily(f"{PREFIX}_queue_messages", "Messages waiting in each queue.", labels=["queue"])
        for queue, length in queue_depths(client).items():
            depth.add_metric([queue], length)
        yield depth
        yield GaugeMetricFamily(f"{PREFIX}_dead_letters", "Messages moved to the dead letters (newest 10,000 kept).",
                                value=cast(int, client.llen(DEAD_LETTERS_KEY)))
        yield GaugeMetricFamily(f"{PREFIX}_holding_messages", "Messages popped and not yet recorded by kombu (normally near 0).",
                                value=cast(int, client.hlen(HOLDING_KEY)))

        heartbeats = cast(dict[str, str], client.hgetall(HEARTBEATS_KEY))
        pump_age = GaugeMetricFamily(f"{PREFIX}_pump_age_seconds", "Seconds since the beat pump last finished (+Inf: never).")
        pump_age.add_metric([], self.clock() - float(heartbeats[PUMP_TASK]) if PUMP_TASK in heartbeats else float("inf"))
        yield pump_age

        limiter = self.runtime.limiter
        endpoints = ("documents", "applications") if self.runtime.settings.rate_limit_per_endpoint else ("recruiting",)
        used: list[tuple[float, str]] = []
        locked = 0
        for company in companies:
            ratio = max(limiter.usage(company, endpoint) for endpoint in endpoints) / limiter.budget.limit
            used.append((ratio, company))
            locked += limiter.lockout_remaining(company) > 0
        yield _top_companies(f"{PREFIX}_company_budget_used_ratio",
                             f"Share of the rate budget used in the current window, for the {self.top} busiest companies.",
                             used, self.top)
        spread = GaugeHistogramMetricFamily(f"{PREFIX}_companies_budget_used_ratio", "Companies by share of their rate budget in use now.")
        spread.add_metric([], [(_bound(b), float(sum(1 for ratio, _ in used if ratio <= b))) for b in BUDGET_BUCKETS]
                          + [("+Inf", float(len(used)))], gsum_value=sum(ratio for ratio, _ in used))
        yield spread
        yield GaugeMetricFamily(f"{PREFIX}_companies_locked_out", "Companies locked out after a 429 right now.", value=locked)
        yield from recorded_families(client)


# --------------------------------------------------------------------------- serving


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # a scrape every 15 s is no news


def metrics_app(runtime: Runtime, settings: Settings) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: ``/metrics`` (behind ``PERSONIO_SYNC_METRICS_BASIC_AUTH`` when set) and ``/healthz``."""
    from prometheus_client import CollectorRegistry, make_wsgi_app

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProductCollector(runtime))
    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"OK"]
        if settings.metrics_basic_auth and not credentials_match(
            basic_credentials(environ.get("HTTP_AUTHORIZATION", "")), [settings.metrics_basic_auth]
        ):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="personio-sync metrics"'), ("Content-Type", "text/plain")])
            return [b"Access denied"]
        if path not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not found: the metrics are at /metrics"]
        result: Iterable[bytes] = exposition(environ, start_response)
        return result

    return app


def serve_metrics(runtime: Runtime, settings: Settings, *, ready: Callable[[int], None] | None = None) -> None:
    """Serve until interrupted (``personio-sync metrics``)."""
    server = make_server(settings.metrics_address, settings.metrics_port, metrics_app(runtime, settings),
                         server_class=_ThreadingServer, handler_class=_QuietHandler)
    if ready is not None:
        ready(server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def render_metrics(runtime: Runtime) -> str:
    """The metrics as Prometheus text, once (``personio-sync metrics --print``)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProductCollector(runtime))
    return generate_latest(registry).decode()


