"""Flower locked down, tried against real Flower processes: `personio-sync flower` and a plain
`celery -A worker flower` both answer 401 without credentials on every route but /healthcheck,
and the password is on no command line."""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cli.processes import LoggedProcess, flower_command
from config import load_settings
from worker import embedded_redis
from worker.flower import basic_credentials, credentials_match
from worker.runtime import Runtime

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GUARDED_ROUTES = ["/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks", "/api/queues/length", "/metrics",
                  "/static/css/flower.css", "/no-such-page", "/login", "/api/task/send-task/personio_sync.pump"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("flower")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "PERSONIO_SYNC_FLOWER"))}
    env.update(PERSONIO_SYNC_DATA_DIR=str(data_dir))
    settings = load_settings(env)
    Runtime(settings).prepare()
    yield env
    if settings.embedded_redis:
        embedded_redis.stop(settings.embedded_redis_socket)


def _start(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> LoggedProcess:
    flower = LoggedProcess(name, command, env, log_dir / f"{name}.log", cwd=ROOT)

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthcheck", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    url = _url(command)
    flower.wait_until(up, 60, "answer /healthcheck")
    return flower


def _url(command: list[str]) -> str:
    port = next(a.split("=", 1)[1] for a in command if a.startswith("--port="))
    return f"http://127.0.0.1:{port}"


def _check_locked(url: str, user_password: str) -> None:
    for route in GUARDED_ROUTES:
        answer = requests.get(url + route, timeout=5)
        assert answer.status_code == 401, f"{route} answered {answer.status_code} without credentials"
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        wrong = requests.get(url + route, auth=("admin", "wrong"), timeout=5)
        assert wrong.status_code == 401, route
    assert requests.post(url + "/api/task/async-apply/personio_sync.pump", timeout=5).status_code == 401
    assert requests.get(url + "/healthcheck", timeout=5).text == "OK"
    user, password = user_password.split(":", 1)
    for route in ("/", "/api/workers", "/metrics", "/static/css/flower.css"):
        answer = requests.get(url + route, auth=(user, password), timeout=10)
        assert answer.status_code == 200, f"{route} answered {answer.status_code} with credentials"
    assert "flower_events_total" in requests.get(url + "/metrics", auth=(user, password), timeout=10).text


def _command_lines(pid: int) -> list[str]:
    """The command lines of the process and every descendant."""
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        session = int(stat.rsplit(")", 1)[1].split()[4])
        if int(entry.name) == pid or session == pid:
            lines.append(cmdline)
    return lines


def test_personio_sync_flower_is_locked_and_keeps_its_password_off_the_command_line(environment: dict[str, str], tmp_path: Path) -> None:
    env = {**environment, "PERSONIO_SYNC_FLOWER_PORT": str(_free_port())}
    settings = load_settings(env)
    command = [sys.executable, "-m", "cli.main", "flower"]
    flower = LoggedProcess("flower", command, env, tmp_path / "flower.log", cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{settings.flower_port}"

        def up() -> bool:
            try:
                return requests.get(f"{url}/healthcheck", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        flower.wait_until(up, 60, "answer /healthcheck")
        password_file = settings.data_dir / "flower-password"
        assert password_file.stat().st_mode & 0o777 == 0o600
        user_password = "admin:" + password_file.read_text().strip()
        _check_locked(url, user_password)
        lines = _command_lines(flower.pid)
        assert lines and any("flower" in line for line in lines)
        password = user_password.split(":", 1)[1]
        assert not [line for line in lines if password in line]
        assert password not in " ".join(flower_command(settings))
    finally:
        flower.stop()


def test_plain_celery_flower_is_locked_with_the_credentials_from_the_environment(environment: dict[str, str], tmp_path: Path) -> None:
    port = _free_port()
    env = {**environment, "PERSONIO_SYNC_FLOWER_BASIC_AUTH": "ops:plain-celery-secret", "PERSONIO_SYNC_LOG_FORMAT": "json"}
    command = [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}", "--address=127.0.0.1"]
    flower = _start("plain-flower", command, env, tmp_path)
    try:
        _check_locked(f"http://127.0.0.1:{port}", "ops:plain-celery-secret")
        assert not [line for line in _command_lines(flower.pid) if "plain-celery-secret" in line]
        # Flower's own log lines (tornado's handlers) are JSON too, and never show the password.
        log = (tmp_path / "plain-flower.log").read_text()
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert any(r["logger"].startswith("flower") for r in records), log[-2000:]
        assert "plain-celery-secret" not in log
    finally:
        flower.stop()


def test_basic_credentials_are_read_and_compared_strictly() -> None:
    header = "Basic " + base64.b64encode(b"admin:pw:with:colons").decode()
    assert basic_credentials(header) == "admin:pw:with:colons"
    assert basic_credentials("Bearer abc") is None
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("") is None
    assert credentials_match("admin:pw", ["other:x", "admin:pw"])
    assert not credentials_match("admin:p", ["admin:pw"])
    assert not credentials_match(None, ["admin:pw"])
