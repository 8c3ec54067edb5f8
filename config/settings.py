"""The one settings object, read from the environment once and validated at start.

Every value the service reads from its environment is parsed here and nowhere else,
once, at start: business code receives a frozen :class:`Settings` and never touches
``os.environ``. A bad value fails fast with one message per variable that names the
variable, what was given and what is expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from config.names import EVENTS_STREAM
from ratelimit.limiter import parse_rate

DEFAULT_API_URL = "https://api.personio.de"
DEFAULT_FEED_URL = "https://{domain}/xml"
DEFAULT_RATE_LIMIT = "20/60s"
DEFAULT_DATA_DIR = ".personio-sync"
LANGUAGES = ("en", "de")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_APP_ID = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")


class ConfigError(ValueError):
    """One or more environment variables are invalid; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class RateLimitSetting:
    """Personio's per-company budget as configured: ``limit`` requests per ``period`` seconds."""

    limit: int
    period: float


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    redis_url: str | None  # None: the embedded redis-server under data_dir
    database_url: str
    personio_api_url: str
    personio_feed_url: str
    personio_app_id: str
    personio_partner_id: str | None
    rate_limit: RateLimitSetting
    rate_limit_margin: float  # seconds the sliding window is widened by at most (and while nothing is observed)
    rate_limit_margin_floor: float  # the margin follows the observed answer-time spread, never below this
    rate_limit_per_endpoint: bool
    lockout_seconds: float  # lock-out after a 429 without Retry-After
    rate_limited_alert_after: float  # 429s without a break this long: health rate_limited_sustained
    secret_keys: tuple[str, ...]  # empty: a key generated into data_dir
    language: str
    http_connect_timeout: float
    http_read_timeout: float
    max_attempts: int
    backoff_base: float
    backoff_cap: float
    visibility_timeout: float
    lease_seconds: float
    company_concurrency: int  # upper bound of a company's uploads in flight (the cap adapts below it)
    worker_concurrency: int
    inline_document_max_bytes: int
    url_document_max_bytes: int
    document_fetch_deadline: float
    document_url_hosts: tuple[str, ...]
    feed_refresh_interval: float
    health_check_interval: float
    reconcile_interval: float
    pump_interval: float
    flower_address: str
    flower_port: int
    flower_basic_auth: str | None
    events_stream: str = EVENTS_STREAM
    events_maxlen: int = 100_000
    events_relay_interval: float = 2.0  # beat: relay outbox events the relay after a task missed
    # Beat: backfill progress events (at most one per backfill this often) and completion.
    backfill_progress_interval: float = 5.0
    # Days a terminal upload keeps its candidate data; then only ids, hashes and outcomes (services.retention).
    retention_days: int = 30
    log_level: str = "INFO"
    log_format: str = "text"  # text (the console format) or json (one object per line)
    # `personio-sync metrics`: where the Prometheus endpoint listens, and its optional user:password.
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 9808
    metrics_basic_auth: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def embedded_redis_socket(self) -> Path:
        return self.data_dir / "redis" / "redis.sock"

    @property
    def broker_url(self) -> str:
        """The URL Celery/kombu understands for the broker."""
        if self.redis_url is not None:
            return self.redis_url
        return f"redis+socket://{self.embedded_redis_socket}"

    @property
    def redis_client_url(self) -> str:
        """The URL redis-py understands (kombu's ``redis+socket`` is spelled ``unix`` there)."""
        if self.redis_url is not None:
            return self.redis_url
        return f"unix://{self.embedded_redis_socket}"


def _duration(env: Mapping[str, str], name: str, default: str, problems: list[str], *, allow_zero: bool = False) -> float:
    raw = env.get(name, default)
    match = _DURATION.match(raw)
    if not match:
        problems.append(f"{name}={raw!r} is not a duration: use a number of seconds such as 60, 60s, 500ms or 5m.")
        fallback = _DURATION.match(default)
        if fallback is None:  # the defaults are literals in this module
            raise ValueError(f"invalid default duration {default!r} for {name}")
        return float(fallback.group(1)) * _UNITS[fallback.group(2)]
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{name}={raw!r} must be greater than zero.")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, problems: list[str], *, minimum: int = 1, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name}={raw!r} is not a whole number: set it to an integer such as {default}.")
        return default
    if value < minimum:
        problems.append(f"{name}={raw!r} must be at least {minimum}.")
    if maximum is not None and value > maximum:
        problems.append(f"{name}={raw!r} must be at most {maximum}.")
    return value


def _boolean(env: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    problems.append(f"{name}={raw!r} is not a boolean: use true or false.")
    return default


def parse_rate_limit(raw: str) -> RateLimitSetting:
    """Parse ``REQUESTS/PERIOD`` such as ``20/60s`` or ``20/2s``; raise ValueError otherwise."""
    try:
        limit, period = parse_rate(raw)
    except ValueError as exc:
        # The operator's fix, in the words of the variable's documentation.
        if "must be positive" in str(exc):
            raise ValueError("both the request count and the period must be greater than zero") from exc
        raise ValueError("expected REQUESTS/PERIOD such as 20/60s (Personio's budget) or 20/2s") from exc
    return RateLimitSetting(limit=limit, period=period)


def _url(env: Mapping[str, str], name: str, default: str, problems: list[str]) -> str:
    raw = env.get(name, default).strip().rstrip("/")
    parts = urlsplit(raw.replace("{domain}", "example.jobs.personio.de"))
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        problems.append(f"{name}={raw!r} is not an http(s) URL such as {default}.")
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise :class:`ConfigError` listing all problems."""
    env = dict(os.environ if environ is None else environ)
    problems: list[str] = []

    data_dir = Path(env.get("PERSONIO_SYNC_DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()

    redis_url = env.get("REDIS_URL") or None
    if redis_url is not None and urlsplit(redis_url).scheme not in {"redis", "rediss", "unix", "redis+socket"}:
        problems.append(f"REDIS_URL={redis_url!r} is not a Redis URL: use redis://HOST:6379/0, rediss://… or leave it unset for the embedded Redis.")

    database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'personio-sync.db'}"
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", database_url):
        problems.append(f"DATABASE_URL={database_url!r} is not supported: use postgresql://USER@HOST/DB or sqlite:///PATH, or leave it unset for SQLite in the data directory.")
    elif database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; SQLAlchemy's bare postgresql:// means psycopg2.
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]

    feed_url = _url(env, "PERSONIO_FEED_URL", DEFAULT_FEED_URL, problems)
    if "{domain}" not in feed_url:
        problems.append(f"PERSONIO_FEED_URL={feed_url!r} must contain the placeholder {{domain}}, e.g. https://{{domain}}/xml.")

    raw_rate = env.get("PERSONIO_RATE_LIMIT", DEFAULT_RATE_LIMIT)
    try:
        rate_limit = parse_rate_limit(raw_rate)
    except ValueError as exc:
        problems.append(f"PERSONIO_RATE_LIMIT={raw_rate!r} is not valid: {exc}.")
        rate_limit = parse_rate_limit(DEFAULT_RATE_LIMIT)

    # The margin and the lock-out scale with the period so that a time-scaled setup
    # (tests, benchmarks: 20/2s) behaves like production (20/60s) in miniature.
    margin = (
        _duration(env, "PERSONIO_RATE_LIMIT_MARGIN", "1", problems, allow_zero=True)
        if "PERSONIO_RATE_LIMIT_MARGIN" in env
        else rate_limit.period / 30.0
    )
    # The margin follows each company's observed spread of answer times (ratelimit.latency),
    # clamped to [floor, margin]; a floor equal to the margin keeps the margin fixed.
    margin_floor = (
        _duration(env, "PERSONIO_RATE_LIMIT_MARGIN_FLOOR", "0.2", problems, allow_zero=True)
        if "PERSONIO_RATE_LIMIT_MARGIN_FLOOR" in env
        else min(rate_limit.period / 300.0, margin)
    )
    if margin_floor > margin:
        problems.append(
            f"PERSONIO_RATE_LIMIT_MARGIN_FLOOR={env.get('PERSONIO_RATE_LIMIT_MARGIN_FLOOR')!r} must not exceed "
            f"the margin ({margin:g} s, PERSONIO_RATE_LIMIT_MARGIN)."
        )
    # PERSONIO_SYNC_COMPANY_CONCURRENCY is the bound's former name, from when the cap was fixed.
    max_in_flight_name = (
        "PERSONIO_SYNC_COMPANY_CONCURRENCY"
        if "PERSONIO_SYNC_COMPANY_CONCURRENCY" in env and "PERSONIO_SYNC_COMPANY_MAX_IN_FLIGHT" not in env
        else "PERSONIO_SYNC_COMPANY_MAX_IN_FLIGHT"
    )
    lockout = (
        _duration(env, "PERSONIO_LOCKOUT", "60", problems)
        if "PERSONIO_LOCKOUT" in env
        else rate_limit.period
    )

    app_id = env.get("PERSONIO_APP_ID", "PERSONIO_SYNC")
    if not _APP_ID.match(app_id):
        problems.append(f"PERSONIO_APP_ID={app_id!r} must be UPPER_SNAKE_CASE as Personio asks, e.g. TALENTWUNDER_SYNC.")
    partner_id = env.get("PERSONIO_PARTNER_ID") or None
    if partner_id is not None and not _APP_ID.match(partner_id):
        problems.append(f"PERSONIO_PARTNER_ID={partner_id!r} must be UPPER_SNAKE_CASE, e.g. TALENTWUNDER.")

    raw_keys = env.get("PERSONIO_SYNC_SECRET_KEYS", "")
    secret_keys = tuple(k.strip() for k in raw_keys.split(",") if k.strip())
    for index, key in enumerate(secret_keys):
        if not _is_fernet_key(key):
            problems.append(
                f"PERSONIO_SYNC_SECRET_KEYS entry {index + 1} is not a Fernet key (32 url-safe base64 bytes); "
                "generate one with: personio-sync generate-key"
            )

    language = env.get("PERSONIO_SYNC_LANGUAGE", "en").strip().lower()
    if language not in LANGUAGES:
        problems.append(f"PERSONIO_SYNC_LANGUAGE={language!r} must be one of {', '.join(LANGUAGES)}.")

    visibility_timeout = _duration(env, "PERSONIO_SYNC_VISIBILITY_TIMEOUT", "30", problems)
    lease = _duration(env, "PERSONIO_SYNC_LEASE", "300", problems)
    backoff_cap = _duration(env, "PERSONIO_SYNC_BACKOFF_CAP", "600", problems)

    hosts = tuple(
        h.strip().lower() for h in env.get("PERSONIO_SYNC_DOCUMENT_URL_HOSTS", "").split(",") if h.strip()
    )
    for host in hosts:
        if not re.match(r"^(\*\.)?[a-z0-9.-]+$", host) or host.startswith("."):
            problems.append(f"PERSONIO_SYNC_DOCUMENT_URL_HOSTS entry {host!r} is not a host name (use files.example.com or *.example.com).")

    flower_auth = env.get("PERSONIO_SYNC_FLOWER_BASIC_AUTH") or None
    if flower_auth is not None and (":" not in flower_auth or flower_auth.startswith(":")):
        problems.append("PERSONIO_SYNC_FLOWER_BASIC_AUTH must look like user:password.")

    log_level = env.get("PERSONIO_SYNC_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        problems.append(f"PERSONIO_SYNC_LOG_LEVEL={log_level!r} must be DEBUG, INFO, WARNING or ERROR.")
    log_format = env.get("PERSONIO_SYNC_LOG_FORMAT", "text").strip().lower()
    if log_format not in {"text", "json"}:
        problems.append(f"PERSONIO_SYNC_LOG_FORMAT={log_format!r} must be text or json.")
    metrics_auth = env.get("PERSONIO_SYNC_METRICS_BASIC_AUTH") or None
    if metrics_auth is not None and (":" not in metrics_auth or metrics_auth.startswith(":")):
        problems.append("PERSONIO_SYNC_METRICS_BASIC_AUTH must look like user:password.")

    settings = Settings(
        data_dir=data_dir,
        redis_url=redis_url,
        database_url=database_url,
        personio_api_url=_url(env, "PERSONIO_API_URL", DEFAULT_API_URL, problems),
        personio_feed_url=feed_url,
        personio_app_id=app_id,
        personio_partner_id=partner_id,
        rate_limit=rate_limit,
        rate_limit_margin=margin,
        rate_limit_margin_floor=margin_floor,
        rate_limit_per_endpoint=_boolean(env, "PERSONIO_RATE_LIMIT_PER_ENDPOINT", False, problems),
        lockout_seconds=lockout,
        rate_limited_alert_after=_duration(env, "PERSONIO_SYNC_RATE_LIMITED_ALERT_AFTER", "3600", problems),
        secret_keys=secret_keys,
        language=language,
        http_connect_timeout=_duration(env, "PERSONIO_HTTP_CONNECT_TIMEOUT", "5", problems),
        http_read_timeout=_duration(env, "PERSONIO_HTTP_READ_TIMEOUT", "30", problems),
        max_attempts=_integer(env, "PERSONIO_SYNC_MAX_ATTEMPTS", 8, problems),
        backoff_base=_duration(env, "PERSONIO_SYNC_BACKOFF_BASE", "2", problems),
        backoff_cap=backoff_cap,
        visibility_timeout=visibility_timeout,
        lease_seconds=lease,
        company_concurrency=_integer(env, max_in_flight_name, 8, problems),
        worker_concurrency=_integer(env, "PERSONIO_SYNC_WORKER_CONCURRENCY", 32, problems),
        inline_document_max_bytes=_integer(env, "PERSONIO_SYNC_INLINE_DOCUMENT_MAX_BYTES", 10 * 1024 * 1024, problems),
        url_document_max_bytes=_integer(env, "PERSONIO_SYNC_URL_DOCUMENT_MAX_BYTES", 20 * 1024 * 1024, problems),
        # Unset: 60 s, or half the lease when the lease is shorter (a download runs under it).
        document_fetch_deadline=_duration(env, "PERSONIO_SYNC_DOCUMENT_FETCH_DEADLINE", f"{min(60.0, lease / 2):g}", problems),
        document_url_hosts=hosts,
        feed_refresh_interval=_duration(env, "PERSONIO_SYNC_FEED_REFRESH_INTERVAL", "900", problems),
        health_check_interval=_duration(env, "PERSONIO_SYNC_HEALTH_CHECK_INTERVAL", "3600", problems),
        reconcile_interval=_duration(env, "PERSONIO_SYNC_RECONCILE_INTERVAL", "60", problems),
        pump_interval=_duration(env, "PERSONIO_SYNC_PUMP_INTERVAL", "2", problems),
        flower_address=env.get("PERSONIO_SYNC_FLOWER_ADDRESS", "127.0.0.1"),
        flower_port=_integer(env, "PERSONIO_SYNC_FLOWER_PORT", 5555, problems, maximum=65535),
        flower_basic_auth=flower_auth,
        events_stream=env.get("PERSONIO_SYNC_EVENTS_STREAM", EVENTS_STREAM),
        events_relay_interval=_duration(env, "PERSONIO_SYNC_EVENTS_RELAY_INTERVAL", "2", problems),
        backfill_progress_interval=_duration(env, "PERSONIO_SYNC_BACKFILL_PROGRESS_INTERVAL", "5", problems),
        retention_days=_integer(env, "PERSONIO_SYNC_RETENTION_DAYS", 30, problems, minimum=0, maximum=3650),
        log_level=log_level,
        log_format=log_format,
        metrics_address=env.get("PERSONIO_SYNC_METRICS_ADDRESS", "127.0.0.1"),
        metrics_port=_integer(env, "PERSONIO_SYNC_METRICS_PORT", 9808, problems, maximum=65535),
        metrics_basic_auth=metrics_auth,
    )
    # Workers stamp the messages they hold every third of the visibility timeout; below a few
    # seconds a busy event loop could miss a stamp and let a live worker's message be redelivered.
    if settings.document_fetch_deadline >= settings.lease_seconds:
        problems.append(
            f"PERSONIO_SYNC_DOCUMENT_FETCH_DEADLINE ({settings.document_fetch_deadline:g}s) must be shorter than "
            f"PERSONIO_SYNC_LEASE ({settings.lease_seconds:g}s): a download runs under the upload's lease."
        )
    if visibility_timeout < 6:
        problems.append(
            f"PERSONIO_SYNC_VISIBILITY_TIMEOUT ({visibility_timeout:g}s) must be at least 6 s; it is how long "
            "a killed worker's messages stay invisible (default 30 s)."
        )
    if problems:
        raise ConfigError(problems)
    return settings


def _is_fernet_key(key: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (binascii.Error, ValueError):
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
