"""Per-process resources for tasks: engine, sessions, Redis, limiter, HTTP, cipher.

Built once per process on first use (and rebuilt in a forked pool child), then handed to
the service functions as arguments.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import date
from functools import cached_property

import redis
import requests
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, get_settings
from models import Connection, utcnow
from models.db import create_db_engine, make_session_factory, migrate
from personio.client import PersonioClient, PersonioCredentials
from ratelimit import CompanyRateLimiter, LatencyStats, RateBudget
from services.connect import ConnectReport, ConnectRequest, connect_account
from services.context import SyncDeps, UploadPolicy
from services.documents import fetch_document
from services.events import OutboxPublisher, relay_outbox
from services.jobs import RefreshResult, refresh_jobs
from services.retention import EmailDigests
from services.schemas import IntakePolicy
from services.secrets import TokenCipher, load_cipher
from worker import embedded_redis
from worker.metrics import MetricsRecorder, response_hook

log = logging.getLogger(__name__)



class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._pid = os.getpid()

    def prepare(self) -> None:
        """Start the embedded Redis if configured, and migrate the database."""
        if self.settings.embedded_redis:
            embedded_redis.ensure_running(self.settings.embedded_redis_socket)
        migrate(self.settings.database_url, self.settings.data_dir)

    @cached_property
    def engine(self) -> Engine:
        return create_db_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one unit of work: committed when the block ends, rolled back if it raises.

        The services only flush; this is where their work commits (see ``services``). Events
        it committed are relayed when it closes.
        """
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            if session.info.pop(OutboxPublisher.SESSION_FLAG, False):
                self.relay_events()

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_client_url, decode_responses=True, health_check_interval=30)

    @cached_property
    def metrics(self) -> MetricsRecorder:
        """The shared counters in Redis every worker process adds to (worker/metrics.py)."""
        return MetricsRecorder(self.redis)

    @cached_property
    def limiter(self) -> CompanyRateLimiter:
        budget = RateBudget(
            limit=self.settings.rate_limit.limit,
            period=self.settings.rate_limit.period,
            margin=self.settings.rate_limit_margin,
            lockout=self.settings.lockout_seconds,
            margin_floor=self.settings.rate_limit_margin_floor,
        )
        return CompanyRateLimiter(self.redis, budget, per_endpoint=self.settings.rate_limit_per_endpoint)

    @cached_property
    def latency(self) -> LatencyStats:
        """Personio's answer times per company: the in-flight cap and the limiter's margin follow them."""
        return LatencyStats(self.redis)

    @cached_property
    def cipher(self) -> TokenCipher:
        return load_cipher(self.settings)

    @cached_property
    def email_digests(self) -> EmailDigests:
        """Keyed digests of email addresses, keyed from the token cipher's keys (services.retention)."""
        return EmailDigests.from_cipher(self.cipher)

    def events_for(self, session: Session) -> OutboxPublisher:
        """The publisher for work done in ``session``: events commit with it (the outbox)."""
        return OutboxPublisher(session)

    def relay_events(self) -> int:
        """Send committed outbox events to the stream now; best effort, never raises.

        Runs after every session that published, and from beat (``personio_sync.relay_events``)
        for whatever this missed: Redis down, another relay busy, a crash in between.
        """
        try:
            with self.sessions() as session:
                return relay_outbox(session, self.redis, self.settings.events_stream, maxlen=self.settings.events_maxlen)
        except Exception as exc:  # noqa: BLE001 - the events wait in the outbox for the next relay
            log.warning("event relay failed (%s); the events stay in the outbox", type(exc).__name__)
            return 0

    @property
    def http(self) -> requests.Session:
        """One pooled HTTP session per thread (requests.Session is not thread-safe)."""
        session = getattr(self._local, "http", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "personio-sync/0.1"
            # Every Personio answer counted by endpoint and status, with its latency (worker/metrics.py).
            session.hooks["response"].append(response_hook(lambda: self.metrics, self.settings.personio_api_url))
            self._local.http = session
        return session

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.settings.http_connect_timeout, self.settings.http_read_timeout)

    def client_for(self, connection: Connection) -> PersonioClient:
        return PersonioClient(
            self.http,
            base_url=self.settings.personio_api_url,
            credentials=PersonioCredentials(connection.company_id, self.cipher.decrypt(connection.access_token_encrypted)),
            app_id=self.settings.personio_app_id,
            partner_id=self.settings.personio_partner_id,
            timeout=self.timeout,
        )

    def connect(self, request: ConnectRequest) -> ConnectReport:
        """Check and store a connection (``personio-sync connect``) with this process's resources."""
        with self.session() as session:
            return connect_account(
                session,
                request,
                cipher=self.cipher,
                client_factory=lambda credentials: PersonioClient(
                    self.http,
                    base_url=self.settings.personio_api_url,
                    credentials=credentials,
                    app_id=self.settings.personio_app_id,
                    partner_id=self.settings.personio_partner_id,
                    timeout=self.timeout,
                ),
                limiter=self.limiter,
                http=self.http,
                feed_url_template=self.settings.personio_feed_url,
                timeout=self.timeout,
                events=self.events_for(session),
                lockout=self.settings.lockout_seconds,
                now=utcnow(),
            )

    def intake_policy(self) -> IntakePolicy:
        return IntakePolicy(
            inline_document_max_bytes=self.settings.inline_document_max_bytes,
            url_document_max_bytes=self.settings.url_document_max_bytes,
            document_url_hosts=self.settings.document_url_hosts,
            today=date.today(),
        )

    @cached_property
    def upload_policy(self) -> UploadPolicy:
        s = self.settings
        return UploadPolicy(
            max_attempts=s.max_attempts,
            backoff_base=s.backoff_base,
            backoff_cap=s.backoff_cap,
            lockout=s.lockout_seconds,
            lease=s.lease_seconds,
            company_concurrency=s.company_concurrency,
            url_document_max_bytes=s.url_document_max_bytes,
            document_url_hosts=s.document_url_hosts,
            per_endpoint_budget=s.rate_limit_per_endpoint,
            budget_per_second=s.rate_limit.limit / s.rate_limit.period,
            rate_limited_alert_after=s.rate_limited_alert_after,
        )

    def refresh_jobs(self, session: Session, connection: Connection) -> RefreshResult:
        """Bring the connection's jobs cache in step with its feed."""
        return refresh_jobs(
            session, connection, http=self.http, feed_url_template=self.settings.personio_feed_url,
            timeout=self.timeout, events=self.events_for(session), now=utcnow(),
        )

    def deps(self, session: Session, *, wake: Callable[[int, float], None]) -> SyncDeps:
        """What the service functions need for work done in ``session``; ``wake`` is the tasks' timer."""
        return SyncDeps(
            policy=self.upload_policy,
            limiter=self.limiter,
            clients=self.client_for,
            events=self.events_for(session),
            wake=wake,
            fetch_document=lambda url: fetch_document(
                self.http, url, allowed_hosts=self.settings.document_url_hosts, max_bytes=self.settings.url_document_max_bytes,
                timeout=self.timeout, deadline=self.settings.document_fetch_deadline,
            ),
            refresh_jobs=self.refresh_jobs,
            latency=self.latency,
            email_digests=self.email_digests,
        )


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime._pid != os.getpid():
            _runtime = Runtime(get_settings())
        return _runtime


def reset_runtime() -> None:
    global _runtime
    with _lock:
        _runtime = None
