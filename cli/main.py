"""``personio-sync``: run the system and operate it. ``--json`` wherever it prints data."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cli import backfill as backfill_commands
from config import ConfigError, Settings, load_settings

if TYPE_CHECKING:  # the worker stack is imported only by the commands that need it
    from worker.runtime import Runtime


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None


def _print(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(text if text is not None else json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _runtime(settings: Settings) -> Runtime:
    from worker.runtime import Runtime

    runtime = Runtime(settings)
    runtime.prepare()
    return runtime


def _connection(session: Any, account: str) -> Any:
    """The account's connection, or exit with the fix."""
    from services.connections import find_connection

    connection = find_connection(session, account)
    if connection is None:
        print(f"account {account!r} is not connected; run `personio-sync connect` first", file=sys.stderr)
        raise SystemExit(1)
    return connection


@contextmanager
def _account(account: str) -> Iterator[tuple[Runtime, Any, Any]]:
    """A prepared runtime, one session and the account's connection (or exit with the fix)."""
    runtime = _runtime(_settings())
    with runtime.session() as session:
        yield runtime, session, _connection(session, account)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    from models.db import migrate

    migrate(settings.database_url, settings.data_dir)
    print("database is at the newest schema")
    return 0


def cmd_generate_key(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def _exec(command: list[str]) -> int:
    os.execv(command[0], command)
    return 0  # pragma: no cover


def cmd_worker(args: argparse.Namespace) -> int:
    from cli.processes import worker_command

    settings = _settings()
    _runtime(settings)
    return _exec(worker_command(settings, concurrency=args.concurrency))


def cmd_beat(args: argparse.Namespace) -> int:
    from cli.processes import beat_command

    settings = _settings()
    _runtime(settings)
    return _exec(beat_command(settings))


def cmd_flower(args: argparse.Namespace) -> int:
    from cli.processes import flower_command

    settings = _settings()
    _runtime(settings)
    return _exec(flower_command(settings))


def cmd_up(args: argparse.Namespace) -> int:
    from cli.stack import run_stack

    return run_stack(_settings(), with_sandbox=args.with_sandbox, demo=False, sandbox_port=args.sandbox_port)


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.stack import run_stack

    return run_stack(_settings(), with_sandbox=True, demo=True, sandbox_port=args.sandbox_port, exit_after_demo=args.exit)


def _read_token(args: argparse.Namespace) -> str:
    if args.token_stdin:
        return sys.stdin.readline().strip()
    token = os.environ.get(args.token_env)
    if not token:
        print(
            f"No access token: set the environment variable {args.token_env} (or choose another with --token-env), "
            "or pass --token-stdin and type it. It is never accepted as a command-line argument, "
            "where it would land in shell history and process lists.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return token


def cmd_connect(args: argparse.Namespace) -> int:
    from services.connect import ConnectRequest

    settings = _settings()
    runtime = _runtime(settings)
    language = args.language or settings.language
    request = ConnectRequest(
        account_id=args.account,
        company_id=args.company_id,
        access_token=_read_token(args),
        domain=args.domain,
        channel_id=args.channel_id,
        feed_language=args.feed_language,
        phase=args.phase,
    )
    report = runtime.connect(request)
    data = {
        "saved": report.saved,
        "checks": [{"field": c.field, "ok": c.ok, "code": c.code, "message": c.message[language]} for c in report.checks],
        "connection": report.connection,
    }
    lines = []
    for check in report.checks:
        mark = {True: "✓", False: "✗", None: "?"}[check.ok]
        lines.append(f"{mark} {check.field}: {check.message[language]}")
    if report.saved:
        lines.append(("Connection saved" if language == "en" else "Verbindung gespeichert") + f" ({args.account}).")
    else:
        lines.append("Nothing was saved: fix the inputs marked ✗ and run connect again." if language == "en" else "Nichts gespeichert: bitte die mit ✗ markierten Angaben korrigieren und connect erneut ausführen.")
    _print(data, args.json, "\n".join(lines))
    return 0 if report.saved else 1


def cmd_link(args: argparse.Namespace) -> int:
    from models import utcnow
    from personio.phases import PhaseInvalid, describe_phase, parse_phase
    from services.connections import LinkError, link_project

    try:
        phase = parse_phase(args.phase) if args.phase else None
    except PhaseInvalid as error:
        print(f"cannot link: --phase {error.fix}", file=sys.stderr)
        return 2
    with _account(args.account) as (_, session, connection):
        try:
            link = link_project(session, connection, args.project, args.job_id, now=utcnow(), require_cached=not args.force, phase=phase)
        except LinkError as error:
            print(f"cannot link: {error}", file=sys.stderr)
            return 1
        shown_phase = describe_phase(link.phase)
        data = {"account_id": args.account, "project_id": link.project_id, "job_position_id": link.job_position_id, "phase": shown_phase}
    _print(data, args.json, f"project {args.project} → Personio job {args.job_id}" + (f" (phase {shown_phase})" if shown_phase else ""))
    return 0


def cmd_links(args: argparse.Namespace) -> int:
    from services.connections import list_links

    with _account(args.account) as (_, session, connection):
        links = list_links(session, connection)
    text = "\n".join(
        f"{link['project_id']} → job {link['job_position_id']}"
        + (f" (phase {link['phase']})" if link.get("phase") else "")
        + (f"  [{link['flag']} since {link['flagged_at']}]" if link["flag"] else "")
        for link in links
    ) or "(no links)"
    _print(links, args.json, text)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from services.jobs import list_jobs

    with _account(args.account) as (runtime, session, connection):
        if args.refresh:
            runtime.refresh_jobs(session, connection)
        jobs = list_jobs(session, connection, include_unpublished=args.all)
    text = "\n".join(
        f"{j['job_position_id']:>10}  {'' if j['published'] else '[unpublished] '}{j['name']} — {j['office'] or ''}{_job_details(j)}" for j in jobs
    ) or "(no jobs cached)"
    _print(jobs, args.json, text)
    return 0


def _job_details(job: dict[str, Any]) -> str:
    """What else the feed says about a job, in one line: ' · Subcompany · 1-2 years · 2800–3200 EUR monthly'."""
    salary = job.get("salary") or {}
    amount = "–".join(str(salary[key]) for key in ("min", "max") if salary.get(key))
    paid = " ".join(part for part in (amount, salary.get("currency_code") or salary.get("currency_symbol"), salary.get("type")) if part) if amount else ""
    experience = f"{job['years_of_experience']} years" if job.get("years_of_experience") else ""
    parts = [job.get("subcompany"), job.get("employment_type"), experience, paid]
    return "".join(f" · {part}" for part in parts if part)


def _feed_line(row: Any, language: str) -> str:
    """The feed's own line under a connection, when it says more than the health message does."""
    if row["feed_message"] is None or row["feed_status"] == "ok" or row["health"] in ("feed_disabled", "feed_unreachable"):
        return ""
    return f"\n    {row['feed_message'][language]}"


def cmd_connections(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from models import Connection
    from services.connections import describe_connection

    settings = _settings()
    runtime = _runtime(settings)
    language = args.language or settings.language
    with runtime.session() as session:
        rows = [describe_connection(c) for c in session.scalars(select(Connection).order_by(Connection.account_id))]
    text = "\n".join(
        f"{r['account_id']}: {r['health']} (company {r['company_id']}, {r['jobs_domain']}) — {r['message'][language]}" + _feed_line(r, language)
        for r in rows
    ) or "(no connections)"
    _print(rows, args.json, text)
    return 0


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


def _upload_item_problem(item: Any) -> str | None:
    """Why one item of an upload file cannot be sent (never quoting its values), or None.

    Only what would make the request untrackable is refused here; the worker checks the rest
    of the contract and records the outcome under the request_id.
    """
    from services.schemas import text_problem, usable_request_id

    if not isinstance(item, dict):
        return f"must be a JSON object (an upload request), not {_json_kind(item)}; see the README's message contract."
    if usable_request_id(item.get("request_id")) is None:
        raw = item.get("request_id")
        if isinstance(raw, str) and text_problem(raw):
            return "request_id: contains characters that are not valid text; send UTF-8 text."
        return (
            "request_id: is required and must be 1–128 characters of letters, digits and . _ : -, "
            "starting with a letter or digit (a UUID is ideal); without it the outcome could not be tracked."
        )
    return None


def cmd_upload(args: argparse.Namespace) -> int:
    from cli.inputs import unreadable_file
    from cli.outcomes import wait_for_outcome
    from tasks.producer import send_upload_request

    settings = _settings()
    try:
        with open(args.file, encoding="utf-8") as handle:
            payload = json.load(handle)
    except (OSError, UnicodeDecodeError) as error:
        print(unreadable_file(args.file, error, save_as="UTF-8 JSON"), file=sys.stderr)
        return 2
    except json.JSONDecodeError as error:
        print(f"{args.file} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.", file=sys.stderr)
        return 2
    except ValueError:  # e.g. a number of more than 4300 digits
        print(f"{args.file} holds a value JSON readers refuse (such as a number thousands of digits long).", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"{args.file} is nested too deeply to read; an upload request is a few levels deep.", file=sys.stderr)
        return 2
    is_list = isinstance(payload, list)
    items = payload if is_list else [payload]
    refused: list[dict[str, Any]] = []
    ready: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items):
        problem = _upload_item_problem(item)
        if problem is None:
            ready.append((index, item))
        else:
            refused.append({"index": index, "error": problem})
    ids: list[str] = []
    runtime = _runtime(settings) if ready else None
    for index, item in ready:
        try:
            send_upload_request(item, broker_url=settings.broker_url)
        except Exception as error:  # the broker is down or refuses: report, go on
            refused.append({"index": index, "error": f"could not be queued ({type(error).__name__}); check REDIS_URL and send it again."})
        else:
            ids.append(item["request_id"])
    refused.sort(key=lambda r: r["index"])
    for entry in refused:
        where = f"item {entry['index']}" if is_list else str(args.file)
        print(f"{where}: not sent: {entry['error']}", file=sys.stderr)
    if not items:
        print(f"{args.file} holds an empty list; nothing was sent.", file=sys.stderr)
    if not args.wait or runtime is None:
        _print({"queued": ids, "refused": refused}, args.json, "\n".join(f"queued {i}" for i in ids) if ids else "nothing queued")
        return 1 if refused else 0
    results = [wait_for_outcome(runtime, i, timeout=args.timeout) for i in ids]
    _print({"queued": ids, "outcomes": results, "refused": refused}, args.json, "\n".join(_status_line(r) for r in results))
    return 0 if not refused and all(r and r["terminal"] for r in results) else 1


def _status_line(status: dict[str, Any] | None, language: str = "en") -> str:
    if status is None:
        return "unknown request (not received yet?)"
    message = (status.get("message") or {}).get(language) or ""
    return f"{status['request_id']}: {status['state']}" + (f" — {message}" if message else "")


def cmd_status(args: argparse.Namespace) -> int:
    from services.uploads import upload_status

    settings = _settings()
    runtime = _runtime(settings)
    with runtime.session() as session:
        status = upload_status(session, args.request_id)
    if status is None:
        print(f"no upload with request_id {args.request_id!r}", file=sys.stderr)
        return 1
    language = args.language or settings.language
    text = _status_line(status, language) + "\n" + "\n".join(
        f"  {h['at']}  {h['state']}" + (f"  ({h['reason_code']})" if h["reason_code"] else "") for h in status["history"]
    )
    _print(status, args.json, text)
    return 0


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    from services.rotation import rotate_tokens

    settings = _settings()
    runtime = _runtime(settings)
    from services.secrets import SecretKeyError

    with runtime.session() as session:
        try:
            result = rotate_tokens(session, runtime.cipher)
        except SecretKeyError as error:
            print(f"cannot rotate: {error}", file=sys.stderr)
            return 1
    _print(result, args.json, f"re-encrypted {result['rotated']} tokens; {result['already_current']} were already under the newest key")
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from services.dead_letters import (
        DeadLetterError,
        drop_dead_letters,
        list_dead_letters,
        requeue_dead_letters,
    )

    runtime = _runtime(_settings())
    ids = None if args.all else list(args.ids)
    if args.action != "list" and not ids and not args.all:
        print(f"name the dead letters to {args.action} (their ids), or --all", file=sys.stderr)
        return 2
    try:
        if args.action == "requeue":
            letters = requeue_dead_letters(runtime.redis, ids)
        elif args.action == "drop":
            letters = drop_dead_letters(runtime.redis, ids)
        else:
            letters = list_dead_letters(runtime.redis)
    except DeadLetterError as error:
        print(error, file=sys.stderr)
        return 1
    summaries = [letter.summary() for letter in letters]
    if args.action == "list":
        text = "\n".join(
            f"{s['at']}  {s['id']}  {s['queue']}  {s['task'] or '-'}  {s['size']} bytes  {s['reason']}" for s in summaries
        ) or "no dead letters"
    else:
        text = f"{'requeued' if args.action == 'requeue' else 'dropped'} {len(summaries)} dead letter(s)"
    _print({args.action if args.action != "list" else "dead_letters": summaries}, args.json, text)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from models import utcnow
    from services.forget import forget_in_database, forget_in_redis, looks_like_email

    if not looks_like_email(args.email):
        print(f"{args.email!r} is not an email address; forget takes the person's email address", file=sys.stderr)
        return 2
    settings = _settings()
    runtime = _runtime(settings)
    import redis

    from services.forget import RedisForgetReport

    # Redis first: a request still queued is recorded (as forgotten) before the database is searched.
    # A client without decoding: a message that is not UTF-8 is compared and removed byte for byte.
    client = redis.Redis.from_url(settings.redis_client_url)
    redis_error = None
    try:
        in_redis = forget_in_redis(client, args.email, events_stream=settings.events_stream)
    except redis.RedisError as error:
        in_redis, redis_error = RedisForgetReport(), f"Redis could not be searched ({type(error).__name__}: {error})"
    finally:
        client.close()
    with runtime.session() as session:
        in_database = forget_in_database(
            session, args.email, now=utcnow(), events=runtime.events_for(session), digests=runtime.email_digests,
            stopped_requests=in_redis.stopped_requests,
        )
    removed = {"database": in_database.counts(), "redis": in_redis.counts()}
    lines = [f"{place}: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in counts.items()) for place, counts in removed.items()]
    if redis_error is not None:
        # The database part is done; the operator runs forget again once Redis is back.
        print(f"{redis_error}; the database was cleaned, run forget again when Redis is back", file=sys.stderr)
        _print({"forgotten": False, "removed": removed, "error": redis_error}, args.json, "\n".join(["erased from the database only:", *lines]))
        return 1
    _print({"forgotten": True, "removed": removed}, args.json, "\n".join(["erased everything this system held about that address:", *lines]))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from models import utcnow
    from services.retention import run_retention, trim_event_stream

    settings = _settings()
    runtime = _runtime(settings)
    retention = timedelta(days=settings.retention_days)
    totals = run_retention(
        runtime.session, now=utcnow, retention=retention, digests=runtime.email_digests,
        events_for=runtime.events_for, max_batches=args.max_batches, max_seconds=float("inf"),
    )
    counts = {**totals.as_dict(), "stream_events": trim_event_stream(runtime.redis, settings.events_stream, now=utcnow(), retention=retention)}
    _print(counts, args.json, f"retention ({settings.retention_days} days): " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from worker.healthcheck import Mode, check_health

    mode: Mode = "liveness" if args.liveness else "readiness" if args.readiness else "full"
    report = check_health(_settings(), mode=mode, timeout=args.timeout)
    if not args.quiet:
        _print(report.as_dict(), args.json, report.text())
    return report.exit_code


def cmd_metrics(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from worker.metrics import render_metrics, serve_metrics
    from worker.runtime import Runtime

    settings = _settings()
    if args.address is not None or args.port is not None:
        settings = replace(settings, metrics_address=args.address or settings.metrics_address,
                           metrics_port=settings.metrics_port if args.port is None else args.port)
    runtime = Runtime(settings)  # reads only: it neither starts Redis nor migrates
    if args.print:
        print(render_metrics(runtime), end="")
        return 0
    auth = "user:password required" if settings.metrics_basic_auth else "no credentials (PERSONIO_SYNC_METRICS_BASIC_AUTH unset)"
    try:
        serve_metrics(runtime, settings, ready=lambda port: print(
            f"metrics at http://{settings.metrics_address}:{port}/metrics ({auth})", flush=True))
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox import main as sandbox_main

    argv = ["--host", args.host, "--port", str(args.port)] + (["--config", args.config] if args.config else []) + list(args.rest)
    return int(sandbox_main(argv) or 0)


def _version() -> str:
    """The installed distribution's version (its metadata, so it cannot drift from pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("personio-sync")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personio-sync", description="Upload sourced candidates into Personio as applicants.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Any, help_text: str, *, json_flag: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON")
        return p

    p = add("up", cmd_up, "run Redis (embedded unless REDIS_URL), worker, beat and Flower together; Ctrl-C stops all")
    p.add_argument("--with-sandbox", action="store_true", help="also run the Personio stand-in and point the worker at it")
    p.add_argument("--sandbox-port", type=int, default=0)
    p = add("demo", cmd_demo, "run everything against the Personio stand-in and send sample candidates")
    p.add_argument("--sandbox-port", type=int, default=0)
    p.add_argument("--exit", action="store_true", help="stop after printing the outcomes instead of staying up")
    p = add("worker", cmd_worker, "run a Celery worker (thread pool)")
    p.add_argument("--concurrency", type=int, default=None)
    add("beat", cmd_beat, "run the periodic scheduler (RedBeat: several beats never double-fire)")
    add("flower", cmd_flower, "run Flower (password-protected; see the README)")
    add("migrate", cmd_migrate, "apply database migrations (every command also does this by itself)")
    add("generate-key", cmd_generate_key, "print a new key for PERSONIO_SYNC_SECRET_KEYS")

    p = add("connect", cmd_connect, "check and store a Personio connection (token from an environment variable or stdin)", json_flag=True)
    p.add_argument("--account", required=True, help="the sourcing account id of the main app")
    p.add_argument("--company-id", required=True, help="Personio company ID (Recruiting API key)")
    p.add_argument("--domain", required=True, help="the jobs page domain, e.g. acme.jobs.personio.de")
    p.add_argument("--channel-id", default=None, help="optional recruiting channel ID")
    p.add_argument("--feed-language", default="de", help="language of the jobs feed (de, en, fr, es, nl, it, pt)")
    p.add_argument("--phase", default=None, help="Personio phase new applications land in: system:<unassigned|rejected|withdrawn|offer|accepted> or custom:<number>; default: the job category's initial phase")
    p.add_argument("--token-env", default="PERSONIO_ACCESS_TOKEN", help="environment variable holding the access token")
    p.add_argument("--token-stdin", action="store_true", help="read the access token from standard input")
    p.add_argument("--language", choices=("en", "de"), default=None, help="language of the messages")

    p = add("link", cmd_link, "link a sourcing project to a Personio job", json_flag=True)
    p.add_argument("account")
    p.add_argument("project")
    p.add_argument("job_id", type=int)
    p.add_argument("--force", action="store_true", help="link even if the job is not in the cached feed")
    p.add_argument("--phase", default=None, help="Personio phase for this project's candidates (overrides the connection's): system:offer, custom:42, …")

    p = add("links", cmd_links, "list a connection's project → job links and their flags", json_flag=True)
    p.add_argument("account")

    p = add("jobs", cmd_jobs, "list the cached Personio jobs of a connection", json_flag=True)
    p.add_argument("account")
    p.add_argument("--refresh", action="store_true", help="fetch the feed first")
    p.add_argument("--all", action="store_true", help="include jobs that left the feed")

    p = add("connections", cmd_connections, "show every connection and its health", json_flag=True)
    p.add_argument("--language", choices=("en", "de"), default=None)

    p = add("upload", cmd_upload, "send upload request(s) from a JSON file (one object or a list)", json_flag=True)
    p.add_argument("file")
    p.add_argument("--wait", action="store_true", help="wait for the outcomes and print them")
    p.add_argument("--timeout", type=float, default=120.0)

    # backfill start|status|list|pause|resume|cancel|redrive (cli/backfill.py)
    backfill_commands.register(sub, backfill_commands.CliContext(_settings, _runtime, _print))

    p = add("status", cmd_status, "show an upload's state and history", json_flag=True)
    p.add_argument("request_id")
    p.add_argument("--language", choices=("en", "de"), default=None)

    p = add("dead-letters", cmd_dead_letters, "list, requeue or drop messages our queues refused", json_flag=True)
    p.add_argument("action", nargs="?", choices=("list", "requeue", "drop"), default="list")
    p.add_argument("ids", nargs="*", help="dead letter ids (from the list)")
    p.add_argument("--all", action="store_true", help="every dead letter")

    add("rotate-keys", cmd_rotate_keys, "re-encrypt every stored token under the newest key", json_flag=True)

    p = add("health", cmd_health, "check Redis, the database, workers consuming every queue, beat, backlog; "
            "exit 0 healthy, 1 degraded, 2 down", json_flag=True)
    level = p.add_mutually_exclusive_group()
    level.add_argument("--liveness", action="store_true", help="only: Redis and the database answer")
    level.add_argument("--readiness", action="store_true", help="Redis, database at the newest schema, every queue consumed, beat ticking")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the workers' ping answers")
    p.add_argument("--quiet", action="store_true", help="print nothing; only the exit code")

    p = add("metrics", cmd_metrics, "serve Prometheus metrics (PERSONIO_SYNC_METRICS_ADDRESS/PORT/BASIC_AUTH)")
    p.add_argument("--address", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--print", action="store_true", help="print the metrics once and exit")

    p = add("forget", cmd_forget, "erase one person's data everywhere this system holds it (database, queues, dead letters, events)", json_flag=True)
    p.add_argument("email", help="the person's email address")

    p = add("purge", cmd_purge, "run the retention purge now (beat runs it hourly): document bytes, then uploads past PERSONIO_SYNC_RETENTION_DAYS", json_flag=True)
    p.add_argument("--max-batches", type=int, default=1_000_000, help="stop after this many batches of 500")

    p = add("sandbox", cmd_sandbox, "run the Personio stand-in alone")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--config", default=None, help="JSON file with companies, jobs and limits (default: the demo)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="further stand-in options, e.g. --rate-limit 20/2s")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    from worker.embedded_redis import EmbeddedRedisError

    try:
        return int(args.handler(args) or 0)
    except EmbeddedRedisError as error:  # no REDIS_URL and no usable embedded Redis: say how to fix it
        print(f"personio-sync: {error}", file=sys.stderr)
        return 2


def _setup_logging() -> None:
    """The CLI's own log records: redacted, JSON when PERSONIO_SYNC_LOG_FORMAT=json (worker/logs.py)."""
    try:
        settings = load_settings()
    except ConfigError:
        return  # the command reports the configuration problem itself
    from worker.logs import setup_cli_logging

    setup_cli_logging(settings)


if __name__ == "__main__":
    raise SystemExit(main())
