"""config.settings: defaults, every variable parsed, and bad values explained."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config import (
    ConfigError,
    RateLimitSetting,
    Settings,
    get_settings,
    load_settings,
    parse_rate_limit,
)


def problems_for(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return caught.value.problems


# --------------------------------------------------------------- defaults


def test_defaults_without_any_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: an empty environment, run from tmp_path so the relative data dir lands there
    monkeypatch.chdir(tmp_path)

    # when
    settings = load_settings({})

    # then
    assert settings.data_dir == (tmp_path / ".personio-sync").resolve()
    assert settings.redis_url is None and settings.embedded_redis
    assert settings.database_url == f"sqlite:///{settings.data_dir / 'personio-sync.db'}"
    assert settings.personio_api_url == "https://api.personio.de"
    assert settings.personio_feed_url == "https://{domain}/xml"
    assert settings.personio_app_id == "PERSONIO_SYNC"
    assert settings.personio_partner_id is None
    assert settings.rate_limit == RateLimitSetting(limit=20, period=60.0)
    # Margin and lock-out scale with the period: 60 s / 30 = 2 s, lock-out one period.
    assert settings.rate_limit_margin == pytest.approx(2.0)
    assert settings.lockout_seconds == 60.0
    assert settings.rate_limit_per_endpoint is False
    assert settings.secret_keys == ()
    assert settings.language == "en"
    assert (settings.http_connect_timeout, settings.http_read_timeout) == (5.0, 30.0)
    assert settings.max_attempts == 8
    assert (settings.backoff_base, settings.backoff_cap) == (2.0, 600.0)
    assert settings.visibility_timeout == 30.0
    assert settings.lease_seconds == 300.0
    assert (settings.company_concurrency, settings.worker_concurrency) == (8, 32)
    assert settings.inline_document_max_bytes == 10 * 1024 * 1024
    assert settings.url_document_max_bytes == 20 * 1024 * 1024
    assert settings.document_url_hosts == ()
    assert settings.feed_refresh_interval == 900.0
    assert settings.health_check_interval == 3600.0
    assert settings.reconcile_interval == 60.0
    assert settings.pump_interval == 2.0
    assert (settings.flower_address, settings.flower_port, settings.flower_basic_auth) == ("127.0.0.1", 5555, None)
    assert settings.events_stream == "personio-sync:events"
    assert settings.log_level == "INFO"


def test_embedded_redis_urls_point_at_the_socket_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path)})

    socket_path = tmp_path.resolve() / "redis" / "redis.sock"
    assert settings.embedded_redis_socket == socket_path
    assert settings.broker_url == f"redis+socket://{socket_path}"
    assert settings.redis_client_url == f"unix://{socket_path}"


def test_settings_are_frozen() -> None:
    settings = load_settings({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_attempts = 1  # type: ignore[misc]


# ------------------------------------------------------- every variable parsed


def test_every_variable_is_parsed(tmp_path: Path) -> None:
    # given: a value different from the default for every variable
    key_1, key_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env = {
        "PERSONIO_SYNC_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "redis://cache.internal:6380/2",
        "DATABASE_URL": "sqlite:////var/lib/personio-sync/db.sqlite",
        "PERSONIO_API_URL": "http://127.0.0.1:8765/",
        "PERSONIO_FEED_URL": "http://127.0.0.1:8765/feeds/{domain}/xml",
        "PERSONIO_APP_ID": "TALENTWUNDER_SYNC",
        "PERSONIO_PARTNER_ID": "TALENTWUNDER",
        "PERSONIO_RATE_LIMIT": "10/2s",
        "PERSONIO_RATE_LIMIT_MARGIN": "250ms",
        "PERSONIO_LOCKOUT": "3s",
        "PERSONIO_RATE_LIMIT_PER_ENDPOINT": "yes",
        "PERSONIO_SYNC_SECRET_KEYS": f" {key_1} , {key_2} ",
        "PERSONIO_SYNC_LANGUAGE": "DE",
        "PERSONIO_HTTP_CONNECT_TIMEOUT": "500ms",
        "PERSONIO_HTTP_READ_TIMEOUT": "1m",
        "PERSONIO_SYNC_MAX_ATTEMPTS": "5",
        "PERSONIO_SYNC_BACKOFF_BASE": "1.5",
        "PERSONIO_SYNC_BACKOFF_CAP": "2m",
        "PERSONIO_SYNC_VISIBILITY_TIMEOUT": "1h",
        "PERSONIO_SYNC_LEASE": "90",
        "PERSONIO_SYNC_COMPANY_CONCURRENCY": "3",
        "PERSONIO_SYNC_WORKER_CONCURRENCY": "8",
        "PERSONIO_SYNC_INLINE_DOCUMENT_MAX_BYTES": "2048",
        "PERSONIO_SYNC_URL_DOCUMENT_MAX_BYTES": "4096",
        "PERSONIO_SYNC_DOCUMENT_URL_HOSTS": "Files.Example.com, *.cdn.example.net,",
        "PERSONIO_SYNC_FEED_REFRESH_INTERVAL": "10m",
        "PERSONIO_SYNC_HEALTH_CHECK_INTERVAL": "2h",
        "PERSONIO_SYNC_RECONCILE_INTERVAL": "30s",
        "PERSONIO_SYNC_PUMP_INTERVAL": "1",
        "PERSONIO_SYNC_FLOWER_ADDRESS": "0.0.0.0",
        "PERSONIO_SYNC_FLOWER_PORT": "5566",
        "PERSONIO_SYNC_FLOWER_BASIC_AUTH": "admin:s3cret",
        "PERSONIO_SYNC_EVENTS_STREAM": "custom:events",
        "PERSONIO_SYNC_LOG_LEVEL": "debug",
    }

    # when
    settings = load_settings(env)

    # then
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.redis_url == "redis://cache.internal:6380/2" and not settings.embedded_redis
    assert settings.broker_url == settings.redis_client_url == "redis://cache.internal:6380/2"
    assert settings.database_url == "sqlite:////var/lib/personio-sync/db.sqlite"
    assert settings.personio_api_url == "http://127.0.0.1:8765"  # trailing slash dropped
    assert settings.personio_feed_url == "http://127.0.0.1:8765/feeds/{domain}/xml"
    assert settings.personio_app_id == "TALENTWUNDER_SYNC"
    assert settings.personio_partner_id == "TALENTWUNDER"
    assert settings.rate_limit == RateLimitSetting(limit=10, period=2.0)
    assert settings.rate_limit_margin == pytest.approx(0.25)
    assert settings.lockout_seconds == 3.0
    assert settings.rate_limit_per_endpoint is True
    assert settings.secret_keys == (key_1, key_2)
    assert settings.language == "de"
    assert settings.http_connect_timeout == pytest.approx(0.5)
    assert settings.http_read_timeout == 60.0
    assert settings.max_attempts == 5
    assert settings.backoff_base == 1.5
    assert settings.backoff_cap == 120.0
    assert settings.visibility_timeout == 3600.0
    assert settings.lease_seconds == 90.0
    assert settings.company_concurrency == 3
    assert settings.worker_concurrency == 8
    assert settings.inline_document_max_bytes == 2048
    assert settings.url_document_max_bytes == 4096
    assert settings.document_url_hosts == ("files.example.com", "*.cdn.example.net")
    assert settings.feed_refresh_interval == 600.0
    assert settings.health_check_interval == 7200.0
    assert settings.reconcile_interval == 30.0
    assert settings.pump_interval == 1.0
    assert settings.flower_address == "0.0.0.0"
    assert settings.flower_port == 5566
    assert settings.flower_basic_auth == "admin:s3cret"
    assert settings.events_stream == "custom:events"
    assert settings.log_level == "DEBUG"


def test_time_scaled_rate_limit_scales_margin_and_lockout() -> None:
    settings = load_settings({"PERSONIO_RATE_LIMIT": "20/2s"})

    assert settings.rate_limit == RateLimitSetting(20, 2.0)
    assert settings.rate_limit_margin == pytest.approx(2.0 / 30)
    assert settings.rate_limit_margin_floor == pytest.approx(2.0 / 300)
    assert settings.lockout_seconds == 2.0


def test_margin_floor_defaults_to_a_tenth_of_the_margin_and_may_not_exceed_it() -> None:
    assert load_settings({}).rate_limit_margin_floor == pytest.approx(0.2)
    assert load_settings({"PERSONIO_RATE_LIMIT_MARGIN": "0"}).rate_limit_margin_floor == 0.0
    assert load_settings({"PERSONIO_RATE_LIMIT_MARGIN_FLOOR": "2s"}).rate_limit_margin_floor == 2.0  # fixed margin
    with pytest.raises(ConfigError, match="must not exceed the margin"):
        load_settings({"PERSONIO_RATE_LIMIT_MARGIN_FLOOR": "3s"})


def test_max_in_flight_takes_the_new_name_over_the_former_one() -> None:
    assert load_settings({"PERSONIO_SYNC_COMPANY_CONCURRENCY": "3"}).company_concurrency == 3
    both = {"PERSONIO_SYNC_COMPANY_CONCURRENCY": "3", "PERSONIO_SYNC_COMPANY_MAX_IN_FLIGHT": "12"}
    assert load_settings(both).company_concurrency == 12


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20/60s", (20, 60.0)), ("20/60", (20, 60.0)), ("20/1m", (20, 60.0)), ("5/500ms", (5, 0.5)), (" 3 / 2 s ", (3, 2.0)), ("1/1h", (1, 3600.0))],
)
def test_parse_rate_limit_accepts_units(raw: str, expected: tuple[int, float]) -> None:
    assert parse_rate_limit(raw) == RateLimitSetting(*expected)


@pytest.mark.parametrize("raw", ["20", "twenty/60s", "20/", "0/60s", "20/0s", "20/60x", "-1/60s"])
def test_parse_rate_limit_refuses_garbage(raw: str) -> None:
    with pytest.raises(ValueError, match="20/60s|greater than zero"):
        parse_rate_limit(raw)


@pytest.mark.parametrize("raw", ["1", "true", "YES", "on", " True "])
def test_boolean_true_spellings(raw: str) -> None:
    assert load_settings({"PERSONIO_RATE_LIMIT_PER_ENDPOINT": raw}).rate_limit_per_endpoint is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_boolean_false_spellings(raw: str) -> None:
    assert load_settings({"PERSONIO_RATE_LIMIT_PER_ENDPOINT": raw}).rate_limit_per_endpoint is False


# ---------------------------------------------------------- database URLs


def test_postgresql_url_gets_the_psycopg_driver() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://sync:pw@db.internal:5432/personio"})

    assert settings.database_url == "postgresql+psycopg://sync:pw@db.internal:5432/personio"


def test_postgresql_url_with_explicit_driver_is_kept() -> None:
    url = "postgresql+psycopg://sync@db.internal/personio"

    assert load_settings({"DATABASE_URL": url}).database_url == url


def test_empty_database_url_means_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"DATABASE_URL": "", "PERSONIO_SYNC_DATA_DIR": str(tmp_path)})

    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'personio-sync.db'}"


# ------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("variable", "value", "fix"),
    [
        ("REDIS_URL", "http://cache:6379", "redis://HOST:6379/0"),
        ("DATABASE_URL", "mysql://u@h/db", "postgresql://USER@HOST/DB or sqlite:///PATH"),
        ("PERSONIO_API_URL", "ftp://api.personio.de", "http(s) URL such as https://api.personio.de"),
        ("PERSONIO_API_URL", "not a url", "http(s) URL"),
        ("PERSONIO_FEED_URL", "https://example.com/xml", "must contain the placeholder {domain}"),
        ("PERSONIO_FEED_URL", "gopher://{domain}/xml", "http(s) URL"),
        ("PERSONIO_RATE_LIMIT", "fast", "REQUESTS/PERIOD such as 20/60s"),
        ("PERSONIO_RATE_LIMIT", "0/60s", "greater than zero"),
        ("PERSONIO_RATE_LIMIT_MARGIN", "a bit", "number of seconds such as 60"),
        ("PERSONIO_LOCKOUT", "-5", "number of seconds such as 60"),
        ("PERSONIO_LOCKOUT", "0", "greater than zero"),
        ("PERSONIO_APP_ID", "my-worker", "UPPER_SNAKE_CASE"),
        ("PERSONIO_PARTNER_ID", "talentwunder", "UPPER_SNAKE_CASE"),
        ("PERSONIO_RATE_LIMIT_PER_ENDPOINT", "maybe", "use true or false"),
        ("PERSONIO_SYNC_LANGUAGE", "fr", "must be one of en, de"),
        ("PERSONIO_HTTP_CONNECT_TIMEOUT", "5 seconds", "500ms or 5m"),
        ("PERSONIO_HTTP_READ_TIMEOUT", "0s", "greater than zero"),
        ("PERSONIO_SYNC_MAX_ATTEMPTS", "many", "integer such as 8"),
        ("PERSONIO_SYNC_MAX_ATTEMPTS", "0", "at least 1"),
        ("PERSONIO_SYNC_BACKOFF_BASE", "2x", "number of seconds"),
        ("PERSONIO_SYNC_BACKOFF_CAP", "forever", "number of seconds"),
        ("PERSONIO_SYNC_VISIBILITY_TIMEOUT", "soon", "number of seconds"),
        ("PERSONIO_SYNC_LEASE", "5 min", "number of seconds"),
        ("PERSONIO_SYNC_COMPANY_CONCURRENCY", "1.5", "integer such as 8"),
        ("PERSONIO_SYNC_COMPANY_MAX_IN_FLIGHT", "0", "at least 1"),
        ("PERSONIO_RATE_LIMIT_MARGIN_FLOOR", "soon", "number of seconds"),
        ("PERSONIO_SYNC_WORKER_CONCURRENCY", "-1", "at least 1"),
        ("PERSONIO_SYNC_INLINE_DOCUMENT_MAX_BYTES", "10MB", "integer such as 10485760"),
        ("PERSONIO_SYNC_URL_DOCUMENT_MAX_BYTES", "0", "at least 1"),
        ("PERSONIO_SYNC_DOCUMENT_URL_HOSTS", "files.example.com,https://cdn.example.com", "host name (use files.example.com or *.example.com)"),
        ("PERSONIO_SYNC_FEED_REFRESH_INTERVAL", "hourly", "number of seconds"),
        ("PERSONIO_SYNC_HEALTH_CHECK_INTERVAL", "0", "greater than zero"),
        ("PERSONIO_SYNC_RECONCILE_INTERVAL", "1d", "number of seconds"),
        ("PERSONIO_SYNC_VISIBILITY_TIMEOUT", "5", "must be at least 6 s"),
        ("PERSONIO_SYNC_FLOWER_PORT", "http", "integer such as 5555"),
        ("PERSONIO_SYNC_FLOWER_BASIC_AUTH", "admin", "user:password"),
        ("PERSONIO_SYNC_LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_bad_value_names_the_variable_and_the_fix(variable: str, value: str, fix: str) -> None:
    problems = problems_for({variable: value})

    assert len(problems) == 1, problems
    assert problems[0].startswith(variable)
    assert fix in problems[0]


def test_bad_secret_key_names_the_variable_and_how_to_generate_one_without_echoing_it() -> None:
    good = Fernet.generate_key().decode()
    bad = "not-a-fernet-key-but-maybe-a-password"

    problems = problems_for({"PERSONIO_SYNC_SECRET_KEYS": f"{good},{bad}"})

    assert len(problems) == 1
    assert problems[0].startswith("PERSONIO_SYNC_SECRET_KEYS entry 2 ")
    assert "personio-sync generate-key" in problems[0]
    assert bad not in problems[0] and good not in problems[0]


def test_bad_flower_password_is_not_echoed() -> None:
    problems = problems_for({"PERSONIO_SYNC_FLOWER_BASIC_AUTH": ":hunter2"})

    assert "hunter2" not in problems[0]


def test_flower_port_above_65535_is_refused() -> None:
    problems = problems_for({"PERSONIO_SYNC_FLOWER_PORT": "70000"})

    assert problems[0].startswith("PERSONIO_SYNC_FLOWER_PORT")


def test_several_problems_are_reported_together() -> None:
    # given: four independent mistakes
    env = {
        "DATABASE_URL": "oracle://x",
        "PERSONIO_APP_ID": "lower",
        "PERSONIO_SYNC_MAX_ATTEMPTS": "zero",
        "PERSONIO_SYNC_LANGUAGE": "it",
    }

    # when
    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    # then: one line per variable, all in the exception text
    problems = caught.value.problems
    assert [p.split("=", 1)[0] for p in problems] == [
        "DATABASE_URL",
        "PERSONIO_APP_ID",
        "PERSONIO_SYNC_LANGUAGE",
        "PERSONIO_SYNC_MAX_ATTEMPTS",
    ]
    text = str(caught.value)
    assert text.startswith("Invalid configuration:")
    assert all(problem in text for problem in problems)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------- read-once cache


def test_get_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("PERSONIO_SYNC_MAX_ATTEMPTS", "4")
    try:
        first = get_settings()
        monkeypatch.setenv("PERSONIO_SYNC_MAX_ATTEMPTS", "6")

        assert isinstance(first, Settings)
        assert first.max_attempts == 4
        assert get_settings() is first
    finally:
        get_settings.cache_clear()


def test_load_settings_without_argument_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONIO_SYNC_WORKER_CONCURRENCY", "7")

    assert load_settings().worker_concurrency == 7
