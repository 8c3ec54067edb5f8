"""``personio-sync upload FILE``: a bad item is reported and skipped, every other item is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from cli.main import main
from config import load_settings
from tasks.producer import INTAKE_QUEUE


def request(request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "account_id": "acct-1",
        "project_id": "proj-1",
        "candidate": {"first_name": "Zelinda", "last_name": "Quarterman", "email": "zq@quarterman-mail.net"},
    }


@pytest.fixture()
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the command hands to the broker (no Redis, no database)."""
    monkeypatch.setenv("PERSONIO_SYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("cli.main._runtime", lambda settings: object())
    calls: list[dict[str, Any]] = []

    def send(item: dict[str, Any], *, broker_url: str) -> str:
        calls.append(item)
        return "message-id"

    monkeypatch.setattr("tasks.producer.send_upload_request", send)
    return calls


def write(tmp_path: Path, content: Any, *, raw: str | None = None) -> str:
    path = tmp_path / "requests.json"
    path.write_text(raw if raw is not None else json.dumps(content), encoding="utf-8")
    return str(path)


def test_a_non_object_item_is_reported_and_every_other_item_is_sent(tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    items = [request("r-1"), "Zelinda Quarterman", request("r-2"), 42, None, ["r-3"], request("r-3")]

    code = main(["upload", write(tmp_path, items)])

    out, err = capsys.readouterr()
    assert code == 1
    assert [item["request_id"] for item in sent] == ["r-1", "r-2", "r-3"]
    assert out.split() == ["queued", "r-1", "queued", "r-2", "queued", "r-3"]
    assert err.splitlines() == [
        "item 1: not sent: must be a JSON object (an upload request), not a string; see the README's message contract.",
        "item 3: not sent: must be a JSON object (an upload request), not a number; see the README's message contract.",
        "item 4: not sent: must be a JSON object (an upload request), not null; see the README's message contract.",
        "item 5: not sent: must be a JSON object (an upload request), not a list; see the README's message contract.",
    ]
    assert "Zelinda" not in err  # the item's content is not echoed


def test_json_output_lists_queued_and_refused(tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["upload", write(tmp_path, [request("r-1"), True]), "--json"])

    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["queued"] == ["r-1"]
    assert [(r["index"], r["error"].split(";")[0]) for r in out["refused"]] == [(1, "must be a JSON object (an upload request), not true/false")]


@pytest.mark.parametrize(
    "request_id",
    [None, "", "has space", "trailing-newline\n", "x" * 129, 42, "bad\ud800"],
    ids=["missing", "empty", "space", "newline", "too-long", "number", "surrogate"],
)
def test_an_item_without_a_usable_request_id_is_not_sent(request_id: Any, tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    bad = request("unused")
    if request_id is None:
        del bad["request_id"]
    else:
        bad["request_id"] = request_id
    # json.dumps writes a lone surrogate as the escape \ud800, as a producer might.
    path = write(tmp_path, [bad, request("r-ok")])

    code = main(["upload", path])

    out, err = capsys.readouterr()
    assert code == 1
    assert [item["request_id"] for item in sent] == ["r-ok"]
    assert err.startswith("item 0: not sent: request_id: ")
    err.encode("utf-8")  # printable: no lone surrogate echoed


def test_all_good_items_exit_zero(tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", write(tmp_path, [request("r-1"), request("r-2")])]) == 0
    assert len(sent) == 2
    assert main(["upload", write(tmp_path, request("r-single"))]) == 0
    assert sent[-1]["request_id"] == "r-single"


def test_a_single_non_object_is_refused_naming_the_file(tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "just a string")

    assert main(["upload", path]) == 1

    assert sent == []
    assert capsys.readouterr().err.startswith(f"{path}: not sent: must be a JSON object")


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ('[{"request_id": "r-1",', "is not valid JSON: Expecting"),
        ("[" + "9" * 5000 + "]", "holds a value JSON readers refuse"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=["truncated", "huge-number", "deep"],
)
def test_an_unreadable_file_is_explained_without_a_traceback(raw: str, text: str, tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", write(tmp_path, None, raw=raw)]) == 2
    assert text in capsys.readouterr().err
    assert sent == []


def test_a_file_that_is_not_utf8_is_explained(tmp_path: Path, sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"first_name": "Zoë"}]'.encode("latin-1"))

    assert main(["upload", str(path)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_a_failing_broker_is_reported_per_item(tmp_path: Path, sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(item: dict[str, Any], *, broker_url: str) -> str:
        if item["request_id"] == "r-2":
            raise ConnectionError("broker gone")
        sent.append(item)
        return "id"

    monkeypatch.setattr("tasks.producer.send_upload_request", refuse)

    code = main(["upload", write(tmp_path, [request("r-1"), request("r-2"), request("r-3")])])

    assert code == 1
    assert [item["request_id"] for item in sent] == ["r-1", "r-3"]
    assert "item 1: not sent: could not be queued (ConnectionError)" in capsys.readouterr().err


def test_good_items_reach_the_queue(tmp_path: Path, real_broker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [request("r-1"), 7731, request("r-2")]

    code = main(["upload", write(tmp_path, items)])

    assert code == 1
    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_client_url)
    try:
        assert client.llen(INTAKE_QUEUE) == 2
    finally:
        client.close()
