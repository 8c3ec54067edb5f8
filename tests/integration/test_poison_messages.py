"""Whatever bytes a producer pushes, every worker keeps consuming; the bad ones become dead letters.

A real worker process against a real Redis: the raw corpus of tests/worker/poison.py is pushed
onto the main app's queue between good requests, then the dead-letter tools resolve them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from config.names import DEAD_LETTERS_KEY, INTAKE_QUEUE
from services.dead_letters import drop_dead_letters, list_dead_letters, requeue_dead_letters
from tests.integration.conftest import ROOT, Stack, candidate, new_id
from tests.worker.poison import POISON

pytestmark = pytest.mark.integration


def _upload(stack: Stack) -> str:
    request_id = new_id()
    stack.send({"request_id": request_id, "account_id": "acct-b", "project_id": "proj-b", "candidate": candidate(f"{request_id}@example.org")})
    return request_id


def test_poison_leaves_every_worker_consuming_and_lands_in_the_dead_letters(stack: Stack) -> None:
    redis = stack.runtime.redis
    drop_dead_letters(redis, None)
    alive = [process for process in stack.processes if process.poll() is None]  # earlier tests kill some
    before = _upload(stack)
    for _, raw, _ in POISON:
        redis.lpush(INTAKE_QUEUE, raw)
    after = _upload(stack)

    started = time.monotonic()
    assert stack.wait_terminal(before, timeout=30)["state"] == "submitted"
    assert stack.wait_terminal(after, timeout=30)["state"] == "submitted"
    assert time.monotonic() - started < 30
    assert all(process.poll() is None for process in alive), "a process died"

    letters = list_dead_letters(redis)
    assert len(letters) == len(POISON)
    for name, raw, phrase in POISON:
        assert any(letter.raw == raw and phrase in letter.reason for letter in letters), name


def test_the_dead_letter_command_lists_requeues_and_drops(stack: Stack) -> None:
    redis = stack.runtime.redis
    drop_dead_letters(redis, None)
    alive = [process for process in stack.processes if process.poll() is None]
    redis.lpush(INTAKE_QUEUE, b"not JSON")
    redis.lpush(INTAKE_QUEUE, json.dumps({"headers": {"task": "personio_sync.upload_candidate", "id": "x"}, "properties": {}}))
    deadline = time.monotonic() + 20
    while redis.llen(DEAD_LETTERS_KEY) < 2:
        assert time.monotonic() < deadline, "not dead-lettered"
        time.sleep(0.1)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "dead-letters", *args], env=stack.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    listed = cli("--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)["dead_letters"]
    assert {letter["reason"].split(" (")[0] for letter in letters} == {"message is not JSON", "envelope's body is missing; it must be a JSON string"}
    assert all("not JSON" not in json.dumps(letter.get("raw", "")) for letter in letters)  # bytes are not printed

    # A requeued message is checked again on arrival: still bad, so back in the dead letters.
    requeued = requeue_dead_letters(redis, [letters[0]["id"]])
    assert len(requeued) == 1
    deadline = time.monotonic() + 20
    while len(list_dead_letters(redis)) < 2 or redis.llen(INTAKE_QUEUE):
        assert time.monotonic() < deadline, "requeued message not seen again"
        time.sleep(0.1)
    assert not any(letter.id == letters[0]["id"] for letter in list_dead_letters(redis))  # a new entry, with a new id

    assert cli("drop", "no-such-id").returncode == 1
    dropped = cli("drop", "--all", "--json")
    assert dropped.returncode == 0, dropped.stderr
    assert len(json.loads(dropped.stdout)["drop"]) == 2
    assert list_dead_letters(redis) == []
    assert all(process.poll() is None for process in alive)
