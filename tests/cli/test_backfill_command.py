"""``personio-sync backfill …``: a file streamed into chunks, status, list, pause/resume/cancel, re-drive."""

from __future__ import annotations

import contextlib
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cli.main import main
from config import load_settings
from models import Backfill, BackfillState, Upload, UploadState, utcnow
from services.backfill import add_to_backfill, start_backfill
from services.events import ListPublisher
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from tests.factories import ACCOUNT, PROJECT, make_connection, make_link, make_upload


def candidate(n: int) -> dict[str, Any]:
    return {"first_name": "Cand", "last_name": f"No{n}", "email": f"c{n}@example.org"}


@pytest.fixture()
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What `backfill start` hands to the broker (no Redis, no database)."""
    monkeypatch.setenv("PERSONIO_SYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("cli.main._runtime", lambda settings: object())
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr("tasks.producer.send_backfill_start", lambda backfill_id, **kw: calls.append(("start", {"backfill_id": backfill_id, **kw})))
    monkeypatch.setattr("tasks.producer.send_backfill_chunk", lambda backfill_id, index, chunk, **kw: calls.append(("chunk", (index, len(chunk), chunk[0]))))
    monkeypatch.setattr("tasks.producer.send_backfill_seal", lambda backfill_id, **kw: calls.append(("seal", kw.get("chunk_count"))))
    monkeypatch.setattr("tasks.producer.wait_for_room", lambda **kw: calls.append(("wait", kw["max_waiting"])))
    return calls


def write_lines(path: Path, lines: Iterator[str]) -> str:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    return str(path)


def test_start_streams_the_file_in_chunks_and_reports_bad_lines(tmp_path: Path, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.dumps(candidate(n)) for n in range(1100)]
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps({"request_id": "own-1", "account_id": ACCOUNT, "project_id": PROJECT, "candidate": candidate(9999)}))
    lines.insert(9, json.dumps({"account_id": "someone-else", "project_id": PROJECT, "candidate": candidate(1)}))
    path = write_lines(tmp_path / "candidates.jsonl", iter(lines))

    code = main(["backfill", "start", path, "--id", "bf-1", "--account", ACCOUNT, "--project", PROJECT, "--json"])

    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert sent[0] == ("start", {"backfill_id": "bf-1", "account_id": ACCOUNT, "project_id": PROJECT, "expected_total": None, "broker_url": load_settings().broker_url})
    assert [call for call in sent if call[0] == "wait"] == [("wait", 8)] * 3  # paced before each chunk
    chunks = [call[1] for call in sent if call[0] == "chunk"]
    assert [(index, size) for index, size, _ in chunks] == [(0, 500), (1, 500), (2, 101)]
    assert sent[-1] == ("seal", 3)
    assert out["candidates_sent"] == 1101 and out["chunks"] == 3
    assert [r["line"] for r in out["refused_lines"]] == [4, 10]


def test_start_takes_account_and_project_from_the_first_line(tmp_path: Path, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "requests.jsonl", (json.dumps({"request_id": f"r-{n}", "account_id": ACCOUNT, "project_id": PROJECT, "candidate": candidate(n)}) for n in range(3)))

    assert main(["backfill", "start", path, "--id", "bf-2"]) == 0

    assert sent[0][1]["account_id"] == ACCOUNT and sent[0][1]["project_id"] == PROJECT
    assert [call for call in sent if call[0] == "chunk"] == [("chunk", (0, 3, {"candidate": candidate(0), "request_id": "r-0"}))]
    assert "3 candidates sent in 1 chunks (sealed)" in capsys.readouterr().out


def test_start_without_account_says_how_to_name_it(tmp_path: Path, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "c.jsonl", iter([json.dumps(candidate(1))]))

    assert main(["backfill", "start", path]) == 2
    assert "--account and --project" in capsys.readouterr().err
    assert sent == []


def test_start_streams_a_100000_line_file_with_flat_memory(tmp_path: Path, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "big.jsonl", (json.dumps(candidate(n)) for n in range(100_000)))
    size = Path(path).stat().st_size

    tracemalloc.start()
    try:
        assert main(["backfill", "start", path, "--id", "bf-big", "--account", ACCOUNT, "--project", PROJECT, "--json"]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sum(1 for call in sent if call[0] == "chunk") == 200
    # One chunk at a time is held (the stub keeps only each chunk's first entry): far below the file.
    assert size > 6_000_000
    assert peak < size / 4, (peak, size)


# ------------------------------------------------------------------ against a database


class FakeRuntime:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.settings = load_settings()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        session = self.factory()
        try:
            yield session
            session.commit()
        finally:
            session.close()

    def events_for(self, session: Session) -> ListPublisher:
        return ListPublisher()


@pytest.fixture()
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_factory: sessionmaker[Session]) -> FakeRuntime:
    monkeypatch.setenv("PERSONIO_SYNC_DATA_DIR", str(tmp_path))
    fake = FakeRuntime(session_factory)
    monkeypatch.setattr("cli.main._runtime", lambda settings: fake)
    monkeypatch.setattr("tasks.backfills.get_runtime", lambda: fake)
    dispatched: list[int] = []
    monkeypatch.setattr("tasks.dispatching.dispatch_now", lambda connection_id: dispatched.append(connection_id) or 0)
    return fake


@pytest.fixture()
def recorded(session_factory: sessionmaker[Session], cipher: TokenCipher, intake_policy: IntakePolicy) -> int:
    with session_factory() as session:
        connection = make_connection(session, cipher)
        make_link(session, connection)
        events = ListPublisher()
        start_backfill(session, {"backfill_id": "bf-1", "account_id": ACCOUNT, "project_id": PROJECT}, events=events, now=utcnow())
        add_to_backfill(session, {"backfill_id": "bf-1", "chunk_index": 0, "candidates": [candidate(n) for n in range(5)]}, policy=intake_policy, events=events, now=utcnow())
        session.commit()
        return connection.id


def test_status_and_list(runtime: FakeRuntime, recorded: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "status", "bf-1", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["state"], status["total"], status["counts"]["queued"], status["remaining_requests"]) == ("running", 5, 5, 5)
    assert status["eta_seconds"] > 0

    assert main(["backfill", "status", "bf-1"]) == 0
    text = capsys.readouterr().out
    assert "0 of 5 done (queued 5)" in text and "not sealed" in text

    assert main(["backfill", "list", ACCOUNT, "--json"]) == 0
    assert [row["backfill_id"] for row in json.loads(capsys.readouterr().out)] == ["bf-1"]

    assert main(["backfill", "status", "nope"]) == 1


def test_pause_resume_cancel(runtime: FakeRuntime, recorded: int, session_factory: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "pause", "bf-1"]) == 0
    with session_factory() as session:
        assert session.get(Backfill, "bf-1").state == BackfillState.PAUSED  # type: ignore[union-attr]
    assert main(["backfill", "resume", "bf-1"]) == 0
    capsys.readouterr()
    assert main(["backfill", "cancel", "bf-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cancelled_uploads"] == 5
    with session_factory() as session:
        assert set(session.scalars(select(Upload.state).where(Upload.backfill_id == "bf-1"))) == {UploadState.CANCELLED}
    assert main(["backfill", "resume", "bf-1"]) == 1
    assert "only a paused backfill can be resumed" in capsys.readouterr().err


def test_follow_ends_when_the_backfill_finishes(runtime: FakeRuntime, recorded: int, session_factory: sessionmaker[Session], capsys: pytest.CaptureFixture[str]) -> None:
    with session_factory.begin() as session:
        session.execute(update(Upload).values(state=UploadState.SUBMITTED, finished_at=utcnow()))
        session.execute(update(Backfill).values(state=BackfillState.FINISHED, finished_at=utcnow()))

    assert main(["backfill", "status", "bf-1", "--follow", "--json", "--interval", "0.01"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["done"] == 5


def test_redrive_from_the_cli(runtime: FakeRuntime, session_factory: sessionmaker[Session], cipher: TokenCipher, intake_policy: IntakePolicy, capsys: pytest.CaptureFixture[str]) -> None:
    with session_factory() as session:
        make_connection(session, cipher)
        upload_id = make_upload(session, intake_policy, utcnow(), "r-1")
        session.execute(update(Upload).where(Upload.id == upload_id).values(state=UploadState.FAILED, finished_at=utcnow()))
        session.commit()

    assert main(["backfill", "redrive", ACCOUNT, "--outcome", "failed", "--since", "2020-01-01", "--id", "rd-1", "--json"]) == 0

    out = json.loads(capsys.readouterr().out)
    assert (out["backfill_id"], out["queued"]) == ("rd-1", 1)
    with session_factory() as session:
        assert session.get(Upload, upload_id).state == UploadState.QUEUED  # type: ignore[union-attr]
