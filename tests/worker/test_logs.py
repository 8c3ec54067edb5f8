"""Redacted logs and JSON lines (worker/logs.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from config import load_settings
from worker import logs
from worker.logs import JsonFormatter, RedactionFilter, redact, task_fields

TOKEN = "papi-9f8e7d6c5b4a-canary-token"
FERNET = "gAAAAABnX1c2" + "x" * 60
EMAIL = "alex.example+canary@münchen.de"
PHONE = "+49 30 1234567"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)
    logger.propagate = True


@pytest.mark.parametrize(
    "text, secret",
    [
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (f"calling with token={TOKEN}&x=1", TOKEN),
        (f'{{"access_token": "{TOKEN}"}}', TOKEN),
        (f"stored {FERNET}", FERNET),
        ("redis://default:hunter2secret@redis:6379/0", "hunter2secret"),
        (f"candidate {EMAIL} refused", "canary@"),
        ("mail alex@example.org now", "alex@example.org"),
        (f"phone {PHONE}", "1234567"),
        ("phone 030 1234567", "1234567"),
        ("document " + "JVBERi0xLjQK" * 40, "JVBERi0xLjQKJVBERi0xLjQK"),
    ],
)
def test_secrets_and_personal_data_are_masked(text: str, secret: str) -> None:
    assert secret not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "upload it-3f2a9c finished: submitted (none) in 0.25 s",
        "Task personio_sync.pump[5f0c6a4e-3b1f-4c55-9d0e-6f3c2b1a9e77] succeeded in 0.012s: 3",
        "2026-11-29 18:36:36,123 company 123456 job 1000001 upload 42",
        "Connected to redis+socket:///tmp/redis.sock",
        "worker personio-sync@host ready.",
    ],
)
def test_operational_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_library_record_with_a_token_and_an_email_is_masked_on_the_handler(captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, handler = captured
    logs.apply_to_handlers([handler], "text")
    logger.warning("POST failed: Authorization: Bearer %s for %s", TOKEN, EMAIL)
    try:
        raise ValueError(f"bad answer for {EMAIL} with token={TOKEN}")
    except ValueError:
        logger.exception("request failed")
    logger.info("extra fields", extra={"email": EMAIL, "first_name": "Alex"})
    output = stream.getvalue()
    assert TOKEN not in output and "canary@" not in output
    assert "POST failed: Authorization: Bearer [redacted] for [email]" in output
    assert "ValueError: bad answer for [email] with token=[redacted]" in output


def test_json_lines_carry_the_task_fields_and_are_redacted(captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, handler = captured
    logs.apply_to_handlers([handler], "json")
    token = logs._task_context.set({"task_id": "t-1", "task_name": "personio_sync.upload_candidate", "request_id": "r-1", "account_id": "acct-42"})
    try:
        logger.info("upload %s finished for %s", "r-1", EMAIL, extra={"outcome": "submitted", "reason_code": None, "upload_id": 7})
        logger.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
                    {"name": "personio_sync.pump", "id": "t-1", "runtime": 0.25, "return_value": None, "args": "", "kwargs": ""})
    finally:
        logs._task_context.reset(token)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "upload r-1 finished for [email]"
    assert first["level"] == "INFO" and first["logger"] == "some.library" and first["time"].endswith("Z")
    assert (first["task_id"], first["task_name"], first["request_id"], first["account_id"], first["upload_id"], first["outcome"]) == (
        "t-1", "personio_sync.upload_candidate", "r-1", "acct-42", 7, "submitted")
    assert "reason_code" not in first
    assert second["duration"] == 0.25


def test_configured_secrets_are_masked_wherever_they_appear(tmp_path: object) -> None:
    settings = load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path), "PERSONIO_SYNC_FLOWER_BASIC_AUTH": "ops:flower-pass-canary"})
    logs.configure_process_logging(settings, logging.getLogger("nothing.here"))
    assert "flower-pass-canary" not in redact("login ops:flower-pass-canary failed")


def test_task_fields_take_ids_only() -> None:
    request = {"request_id": "r-9", "account_id": "acct-1", "candidate": {"email": EMAIL, "first_name": "Alex"}}
    assert task_fields("personio_sync.upload_candidate", [request]) == {"request_id": "r-9", "account_id": "acct-1"}
    assert task_fields("personio_sync.upload_candidate", [{"request_id": "bad\n"}]) == {}
    assert task_fields("personio_sync.process_upload", [42, "lease"]) == {"upload_id": 42}
    assert task_fields("personio_sync.dispatch_connection", [3]) == {"connection_id": 3}


def test_celery_logging_signals_apply_redaction_and_json(tmp_path: object) -> None:
    from celery import signals

    settings = load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path), "PERSONIO_SYNC_LOG_FORMAT": "json"})
    # An app built earlier in this process (text format) must not keep its receivers.
    logs.install_celery_logging(load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path)}))
    logs.install_celery_logging(settings)
    logger = logging.getLogger("celery.test-signal")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        signals.after_setup_logger.send(sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="", colorize=False)
        assert any(isinstance(f, RedactionFilter) for f in handler.filters)
        assert isinstance(handler.formatter, JsonFormatter)
    finally:
        logger.removeHandler(handler)
        logs.install_celery_logging(load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path)}))
