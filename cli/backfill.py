"""``personio-sync backfill …``: start a backfill from a JSON Lines file, watch it, steer it, re-drive.

``start`` streams the file (one line at a time, never the whole file in memory) into chunks of
the contract (``tasks.producer.backfill_chunks``) and sends them; the chunk numbering depends
only on the file, so running the same file again with the same ``--id`` records nothing twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from cli.inputs import unreadable_file
from config import Settings

if TYPE_CHECKING:
    from worker.runtime import Runtime

Printer = Callable[[Any, bool, "str | None"], None]


class CliContext:
    """What the commands need from cli.main (settings, runtime, printing) without importing it back."""

    def __init__(self, settings: Callable[[], Settings], runtime: Callable[[Settings], Runtime], printer: Printer) -> None:
        self.settings = settings
        self.runtime = runtime
        self.print = printer


_context: CliContext | None = None


def _ctx() -> CliContext:
    assert _context is not None, "register() was not called"
    return _context


# ------------------------------------------------------------------ start


class _LineReader:
    """Entries from a JSON Lines file, one line at a time; refused lines are collected by number."""

    def __init__(self, handle: IO[str], account: str | None, project: str | None) -> None:
        self.handle = handle
        self.account = account
        self.project = project
        self.refused: list[dict[str, Any]] = []
        self.bytes_read = 0
        self.lines = 0
        self.sent = 0

    def __iter__(self) -> Iterator[Any]:
        for number, line in enumerate(self.handle, 1):
            self.lines = number
            self.bytes_read += len(line.encode("utf-8", "surrogatepass"))
            if not line.strip():
                continue
            entry = self._entry(number, line)
            if entry is not None:
                self.sent += 1
                yield entry

    def _refuse(self, number: int, error: str) -> None:
        if len(self.refused) < 1000:
            self.refused.append({"line": number, "error": error})

    def _entry(self, number: int, line: str) -> Any:
        from services.schemas import usable_request_id

        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as error:
            self._refuse(number, f"not valid JSON ({type(error).__name__}); each line is one JSON object.")
            return None
        if not isinstance(item, dict):
            self._refuse(number, "must be a JSON object: a candidate, or an upload request with a candidate.")
            return None
        if "candidate" not in item:
            return item  # a candidate; the worker checks its fields
        for name in ("account_id", "project_id"):
            wanted = self.account if name == "account_id" else self.project
            given = item.get(name)
            if given is not None and wanted is not None and given != wanted:
                self._refuse(number, f"{name}: differs from the backfill's ({wanted}); one backfill is one account and project.")
                return None
        entry: dict[str, Any] = {"candidate": item["candidate"]}
        if item.get("request_id") is not None:
            if usable_request_id(item["request_id"]) is None:
                self._refuse(number, "request_id: must be 1–128 characters of letters, digits and . _ : -, starting with a letter or digit.")
                return None
            entry["request_id"] = item["request_id"]
        return entry


def _first_ids(path: str) -> tuple[str | None, str | None]:
    """account_id and project_id of the file's first upload-request line (read alone, not the file)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    item = json.loads(line)
                except ValueError:
                    return None, None
                if isinstance(item, dict):
                    return item.get("account_id"), item.get("project_id")
                return None, None
    return None, None


def cmd_backfill_start(args: argparse.Namespace) -> int:
    from tasks.producer import (
        BackfillChunkError,
        backfill_chunks,
        send_backfill_chunk,
        send_backfill_seal,
        send_backfill_start,
        wait_for_room,
    )

    ctx = _ctx()
    settings = ctx.settings()
    try:
        size = os.path.getsize(args.file)
        account, project = args.account, args.project
        if account is None or project is None:
            first_account, first_project = _first_ids(args.file)
            account, project = account or first_account, project or first_project
    except (OSError, UnicodeDecodeError) as error:
        print(unreadable_file(args.file, error, save_as="UTF-8 JSON Lines"), file=sys.stderr)
        return 2
    if not account or not project:
        print("name the account and project: --account and --project (or give them in the file's first line as account_id and project_id).", file=sys.stderr)
        return 2
    backfill_id = args.id or f"cli-{uuid.uuid4()}"
    ctx.runtime(settings)  # the embedded Redis runs when REDIS_URL is unset
    send_backfill_start(backfill_id, account_id=account, project_id=project, expected_total=args.expected_total, broker_url=settings.broker_url)
    chunks = 0
    bar = _Bar(total=size, label=f"backfill {backfill_id}", unit="bytes", stderr=True) if sys.stderr.isatty() and not args.json else None
    try:
        with open(args.file, encoding="utf-8") as handle:
            reader = _LineReader(handle, account, project)
            for chunk in backfill_chunks(reader):
                if args.max_waiting:  # paced: the file waits on disk, not in Redis
                    wait_for_room(broker_url=settings.broker_url, max_waiting=args.max_waiting)
                send_backfill_chunk(backfill_id, chunks, chunk, broker_url=settings.broker_url)
                chunks += 1
                if bar is not None:
                    bar.update(reader.bytes_read, f"{reader.sent} candidates in {chunks} chunks")
    except BackfillChunkError as error:
        print(f"line {reader.lines}: {error}", file=sys.stderr)
        print(f"stopped after {chunks} chunks; fix the line and run the same command again with --id {backfill_id} (nothing is recorded twice).", file=sys.stderr)
        return 1
    except UnicodeDecodeError as error:
        print(f"{args.file} is not UTF-8 text (byte {error.start}); stopped after {chunks} chunks.", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    if not args.no_seal:
        send_backfill_seal(backfill_id, chunk_count=chunks, broker_url=settings.broker_url)
    for entry in reader.refused[:50]:
        print(f"line {entry['line']}: not sent: {entry['error']}", file=sys.stderr)
    if len(reader.refused) > 50:
        print(f"… and {len(reader.refused) - 50} more lines not sent", file=sys.stderr)
    data = {"backfill_id": backfill_id, "account_id": account, "project_id": project, "candidates_sent": reader.sent, "chunks": chunks,
            "sealed": not args.no_seal, "refused_lines": reader.refused}
    text = (f"backfill {backfill_id}: {reader.sent} candidates sent in {chunks} chunks"
            + ("" if args.no_seal else " (sealed)") + f"; follow it with `personio-sync backfill status {backfill_id} --follow`")
    ctx.print(data, args.json, text)
    return 1 if reader.refused else 0


# ------------------------------------------------------------------ status, list


def _budget(settings: Settings) -> Any:
    from tasks.backfills import company_budget

    return company_budget(settings)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def status_text(status: dict[str, Any]) -> str:
    counts = ", ".join(f"{state} {number}" for state, number in status["counts"].items() if number)
    lines = [
        f"backfill {status['backfill_id']} ({status['kind']}, account {status['account_id']}"
        + (f", project {status['project_id']}" if status["project_id"] else "") + f"): {status['state']}"
        + ("" if status["sealed"] else " (not sealed: more chunks may come)"),
        f"  {status['done']} of {status['total']} done ({counts or 'nothing recorded yet'})",
        f"  rate {status['rate_per_minute']}/min; {status['remaining_requests']} Personio requests left; "
        f"ETA {_duration(status['eta_seconds'])}" + (f" ({status['eta_at']})" if status["eta_at"] else ""),
        f"  created {status['created_at']}; started {status['started_at'] or '–'}; finished {status['finished_at'] or '–'}",
    ]
    if status["refused_chunks"] or status["missing_chunks"]:
        lines.append(f"  chunks: {status['chunks_received']} received, {status['refused_chunks']} refused"
                     + (f", missing {status['missing_chunks']}" if status["missing_chunks"] else ""))
    if status["skipped_already_in_personio"]:
        lines.append(f"  {status['skipped_already_in_personio']} not sent again: already in Personio for the job")
    return "\n".join(lines)


def cmd_backfill_status(args: argparse.Namespace) -> int:
    from models import utcnow
    from services.backfill import backfill_status

    ctx = _ctx()
    settings = ctx.settings()
    runtime = ctx.runtime(settings)
    budget = _budget(settings)
    bar: _Bar | None = None
    while True:
        with runtime.session() as session:
            status = backfill_status(session, args.backfill_id, budget=budget, now=utcnow())
        if status is None:
            print(f"no backfill {args.backfill_id!r} (not started yet? `personio-sync backfill list ACCOUNT` lists them)", file=sys.stderr)
            return 1
        over = status["state"] == "finished" or (status["state"] == "cancelled" and status["finished_at"])
        if not args.follow:
            ctx.print(status, args.json, status_text(status))
            return 0
        if args.json:
            print(json.dumps(status, ensure_ascii=False, default=str), flush=True)  # one line per poll (JSON Lines)
        elif sys.stdout.isatty():
            bar = bar or _Bar(total=max(status["total"], 1), label=f"backfill {status['backfill_id']}", unit="uploads")
            bar.set_total(max(status["total"], 1))
            bar.update(status["done"], f"{status['state']} · {status['rate_per_minute']}/min · ETA {_duration(status['eta_seconds'])}")
        else:
            print(f"{datetime.now(UTC).isoformat(timespec='seconds')} {status['state']} {status['done']}/{status['total']} "
                  f"ETA {_duration(status['eta_seconds'])}", flush=True)
        if over:
            if bar is not None:
                bar.close()
                print(status_text(status))
            return 0
        time.sleep(args.interval)


def cmd_backfill_list(args: argparse.Namespace) -> int:
    from models import utcnow
    from services.backfill import list_backfills

    ctx = _ctx()
    settings = ctx.settings()
    runtime = ctx.runtime(settings)
    with runtime.session() as session:
        rows = list_backfills(session, args.account, budget=_budget(settings), now=utcnow())
    text = "\n".join(
        f"{r['backfill_id']}  {r['state']:<9}  {r['done']}/{r['total']}  ETA {_duration(r['eta_seconds'])}  created {r['created_at']}" for r in rows
    ) or f"(no backfills for {args.account})"
    ctx.print(rows, args.json, text)
    return 0


# ------------------------------------------------------------------ steering


def cmd_backfill_steer(args: argparse.Namespace) -> int:
    from models import utcnow
    from services.backfill import BackfillStateError, pause_backfill, resume_backfill

    ctx = _ctx()
    settings = ctx.settings()
    runtime = ctx.runtime(settings)
    action = args.backfill_command
    ended = 0
    try:
        if action == "cancel":
            from tasks.backfills import cancel_backfill_everything

            with runtime.session() as session:
                from models import Backfill

                if session.get(Backfill, args.backfill_id) is None:
                    print(f"no backfill {args.backfill_id!r}", file=sys.stderr)
                    return 1
            ended = cancel_backfill_everything(args.backfill_id)
        else:
            steer = pause_backfill if action == "pause" else resume_backfill
            with runtime.session() as session:
                if steer(session, args.backfill_id, now=utcnow()) is None:
                    print(f"no backfill {args.backfill_id!r}", file=sys.stderr)
                    return 1
    except BackfillStateError as error:
        print(f"cannot {action}: {error}", file=sys.stderr)
        return 1
    from services.backfill import backfill_status

    with runtime.session() as session:
        status = backfill_status(session, args.backfill_id, budget=_budget(settings), now=utcnow())
    if action == "resume":
        from tasks.dispatching import dispatch_now

        connection_id = _connection_of(runtime, args.backfill_id)
        if connection_id is not None:
            try:
                dispatch_now(connection_id)
            except Exception as error:  # the worker's pump dispatches it within one tick anyway
                print(f"(not dispatched right now: {type(error).__name__}; the pump does it within seconds)", file=sys.stderr)
    done = {"pause": "paused: no new upload of it starts; uploads already half-sent finish",
            "resume": "resumed", "cancel": f"cancelled: {ended} not-yet-started uploads ended cancelled; half-sent ones finish"}[action]
    ctx.print({"action": action, "cancelled_uploads": ended, "status": status}, args.json, f"backfill {args.backfill_id} {done}")
    return 0


def _connection_of(runtime: Runtime, backfill_id: str) -> int | None:
    from models import Backfill

    with runtime.session() as session:
        backfill = session.get(Backfill, backfill_id)
        return backfill.connection_id if backfill is not None else None


# ------------------------------------------------------------------ re-drive


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--{name}: {text!r} is not an ISO 8601 time such as 2026-11-29T08:00:00+00:00") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cmd_backfill_redrive(args: argparse.Namespace) -> int:
    from models import UploadState, utcnow
    from services.backfill import RedriveFilter, backfill_status, count_unsendable, redrive_uploads
    from tasks.dispatching import dispatch_now

    ctx = _ctx()
    settings = ctx.settings()
    runtime = ctx.runtime(settings)
    selection = RedriveFilter(
        account_id=args.account,
        outcome=UploadState(args.outcome),
        reason_code=args.reason,
        project_id=args.project,
        since=_moment(args.since, "since"),
        until=_moment(args.until, "until"),
    )
    backfill_id = args.id or f"redrive-{uuid.uuid4()}"
    with runtime.session() as session:
        unsendable = count_unsendable(session, selection)
    queued = 0
    more = True
    while more:
        with runtime.session() as session:
            backfill, count, more = redrive_uploads(session, selection, now=utcnow(), backfill_id=backfill_id)
            connection_id = backfill.connection_id
        queued += count
    with runtime.session() as session:
        status = backfill_status(session, backfill_id, budget=_budget(settings), now=utcnow())
    if connection_id is not None and queued:
        try:
            dispatch_now(connection_id)
        except Exception as error:  # the pump picks them up within one tick
            print(f"(not dispatched right now: {type(error).__name__}; the pump does it within seconds)", file=sys.stderr)
    skipped = status["skipped_already_in_personio"] if status else 0
    ctx.print({"backfill_id": backfill_id, "queued": queued, "skipped_already_in_personio": skipped,
               "not_redrivable_documents_gone": unsendable, "status": status}, args.json,
              f"re-drive {backfill_id}: {queued} uploads queued again, {skipped} left alone (already in Personio for the job)"
              + (f", {unsendable} not re-driven (an inline document was never uploaded and is no longer kept: send them again as new uploads)" if unsendable else "")
              + f"; follow it with `personio-sync backfill status {backfill_id} --follow`")
    return 0


# ------------------------------------------------------------------ progress bar


class _Bar:
    """A rich progress bar on stderr/stdout of a terminal."""

    def __init__(self, *, total: int, label: str, unit: str, stderr: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[note]}"), transient=False, console=Console(stderr=stderr))
        self.progress.start()
        self.task = self.progress.add_task(label, total=total, note="")
        self.unit = unit

    def set_total(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def update(self, completed: int, note: str) -> None:
        self.progress.update(self.task, completed=completed, note=note)

    def close(self) -> None:
        self.progress.stop()


# ------------------------------------------------------------------ parser


def register(sub: Any, handler_context: CliContext) -> None:
    """Add ``backfill`` and its subcommands to the ``personio-sync`` parser."""
    global _context
    _context = handler_context
    parser = sub.add_parser("backfill", help="start, watch, pause, resume, cancel and re-drive backfills",
                            description="start, watch, pause, resume, cancel and re-drive backfills")
    commands = parser.add_subparsers(dest="backfill_command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    p = add("start", cmd_backfill_start, "send a JSON Lines file (one candidate or upload request per line) as a backfill, streamed in chunks")
    p.add_argument("file")
    p.add_argument("--id", default=None, help="backfill id (default: a new one); the same id and file again records nothing twice")
    p.add_argument("--account", default=None, help="account id (default: account_id of the file's first line)")
    p.add_argument("--project", default=None, help="project id (default: project_id of the file's first line)")
    p.add_argument("--expected-total", type=int, default=None, help="how many candidates the backfill will have")
    p.add_argument("--no-seal", action="store_true", help="do not mark the set complete (more chunks will follow)")
    p.add_argument("--max-waiting", type=int, default=8, metavar="N",
                   help="send the next chunk only while at most N messages wait on the intake queue (0: do not wait)")
    p = add("status", cmd_backfill_status, "show a backfill: counts, rate, ETA")
    p.add_argument("backfill_id")
    p.add_argument("--follow", action="store_true", help="keep showing it (a live bar on a terminal) until it ends")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between updates with --follow")
    p = add("list", cmd_backfill_list, "list an account's backfills, newest first")
    p.add_argument("account")
    for name, text in (("pause", "stop starting uploads of a backfill (half-sent ones finish)"), ("resume", "continue a paused backfill"),
                       ("cancel", "end every not-yet-started upload of a backfill as cancelled")):
        p = add(name, cmd_backfill_steer, text)
        p.add_argument("backfill_id")
    p = add("redrive", cmd_backfill_redrive, "queue existing uploads again as a backfill (failed, rejected or held)")
    p.add_argument("account")
    p.add_argument("--outcome", required=True, choices=("failed", "rejected", "held"))
    p.add_argument("--reason", default=None, help="only this reason code, e.g. personio-sync.job-not-published")
    p.add_argument("--project", default=None)
    p.add_argument("--since", default=None, help="finished (held: changed) at or after this ISO 8601 time")
    p.add_argument("--until", default=None, help="… and before this one")
    p.add_argument("--id", default=None, help="backfill id for the re-drive (default: a new one)")
