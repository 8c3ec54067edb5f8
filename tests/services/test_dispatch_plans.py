"""The pump's, dispatch's and the reconciler's queries use indexes: their cost follows due work, not the backlog.

Every statement that ``due_connections``, ``dispatch_connection`` and ``reclaim_expired_leases``
send is captured as it runs and explained on the same database: SQLite (``EXPLAIN QUERY PLAN``)
or PostgreSQL when ``DATABASE_URL`` says so (``EXPLAIN (FORMAT JSON)`` with sequential scans and
sorts priced out, which shows whether an index *can* serve the query in its order; on a small
table the planner would rightly prefer a scan and a sort). A read of ``uploads`` must be an index search, and a search of
the dispatch index (state, connection, priority, due time, id) must name the connection: without
it the search reads every queued upload of every company, which is what the pump did before. A
query with ORDER BY must read in index order, not sort what it read (migration 0008).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session, sessionmaker

from models import Upload, UploadState
from ratelimit import CompanyRateLimiter
from services.context import UploadPolicy
from services.dispatch import dispatch_connection, due_connections, reclaim_expired_leases
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from tests.factories import make_connection, make_upload

if TYPE_CHECKING:
    from tests.conftest import Clock

DISPATCH_INDEX = "ix_uploads_dispatch"  # (state, connection_id, priority, next_attempt_at)


@pytest.fixture
def backlog(session_factory: sessionmaker[Session], cipher: TokenCipher, intake_policy: IntakePolicy, clock: Clock) -> list[int]:
    """Three companies with queued (due and parked), interactive and backfill, in-flight and expired uploads."""
    connection_ids = []
    with session_factory() as session:
        for n in range(3):
            connection = make_connection(session, cipher, account_id=f"acct-{n}", company_id=1000 + n)
            connection_ids.append(connection.id)
            for i in range(40):
                make_upload(
                    session, intake_policy, clock(), f"r{n}-{i}", account_id=f"acct-{n}", email=f"c{n}-{i}@example.org",
                    priority="interactive" if i % 5 == 0 else "backfill",
                )
        session.commit()
        ids = list(session.scalars(Upload.__table__.select().with_only_columns(Upload.id).order_by(Upload.id)))
        session.execute(update(Upload).where(Upload.id.in_(ids[:10])).values(state=UploadState.SENDING, lease_token="t", lease_until=clock() + timedelta(seconds=30)))
        session.execute(update(Upload).where(Upload.id.in_(ids[10:15])).values(state=UploadState.SENDING, lease_token="t", lease_until=clock() - timedelta(seconds=1)))
        session.execute(update(Upload).where(Upload.id.in_(ids[15:40])).values(next_attempt_at=clock() + timedelta(minutes=5)))
        session.commit()
    return connection_ids


@pytest.fixture
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany and re.match(r"\s*(SELECT|UPDATE)\b", statement, re.IGNORECASE) and re.search(r"\buploads\b", statement):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    yield statements
    event.remove(engine, "before_cursor_execute", capture)


def _sqlite_problems(engine: Engine, statement: str, parameters: Any) -> tuple[list[str], list[str]]:
    with engine.connect() as conn:
        plan = [str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    problems = []
    # The plan hides the values; a search by state alone is fine for 'sending' (the uploads in flight).
    reads_queued = "'queued'" in statement or "queued" in [str(value) for value in parameters]
    if "ORDER BY" in statement.upper() and any("TEMP B-TREE FOR ORDER BY" in line for line in plan):
        problems.append("sorts the rows it reads instead of reading them in index order")
    for line in plan:
        if not re.search(r"\buploads\b", line):
            continue
        if not line.startswith("SEARCH uploads"):
            problems.append(f"not an index search: {line}")
        elif DISPATCH_INDEX in line and "connection_id=" not in line and reads_queued:
            problems.append(f"reads every company's queued uploads: {line}")
    return plan, problems


def _pg_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


def _postgres_problems(engine: Engine, statement: str, parameters: Any) -> tuple[list[str], list[str]]:
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE uploads")
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_sort = off")
        [[document]] = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).all()
        conn.exec_driver_sql("RESET enable_seqscan")
        conn.exec_driver_sql("RESET enable_sort")
        conn.rollback()
    plan, problems = [], []
    nodes = list(_pg_nodes(document[0]["Plan"]))
    if "ORDER BY" in statement.upper() and any(node["Node Type"] in ("Sort", "Incremental Sort") for node in nodes):
        problems.append("sorts the rows it reads instead of reading them in index order")
    for node in nodes:
        line = " ".join(str(node.get(key, "")) for key in ("Node Type", "Relation Name", "Index Name", "Index Cond")).strip()
        plan.append(line)
        # A bitmap index scan names only its index; its heap scan names the table.
        if node.get("Relation Name") != "uploads" and not str(node.get("Index Name", "")).startswith(("ix_uploads", "pk_uploads")):
            continue
        condition = str(node.get("Index Cond", ""))
        if node["Node Type"] == "Seq Scan" or ("Index Name" in node and not condition):
            problems.append(f"not an index search: {line}")
        elif "Index Name" in node and not (
            "connection_id" in condition  # one company's uploads
            or "'sending'" in condition  # only the uploads in flight
            or node["Index Name"] == "pk_uploads"
        ):
            problems.append(f"reads every company's queued uploads: {line}")
    return plan, problems


def _explain_all(engine: Engine, statements: list[tuple[str, Any]]) -> list[str]:
    explain = _postgres_problems if engine.dialect.name == "postgresql" else _sqlite_problems
    problems = []
    for statement, parameters in statements:
        plan, found = explain(engine, statement, parameters)
        problems += [f"{problem}\n  in: {' '.join(statement.split())[:300]}\n  plan: {plan}" for problem in found]
    return problems


def test_pump_dispatch_and_reconciler_search_uploads_by_index(
    engine: Engine, session_factory: sessionmaker[Session], backlog: list[int], captured: list[tuple[str, Any]],
    upload_policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock,
) -> None:
    captured.clear()  # only what the three functions send
    with session_factory.begin() as session:
        due = due_connections(session, clock(), concurrency=upload_policy.company_concurrency)
    with session_factory.begin() as session:
        # More than the company's 8 interactive uploads: the backfill uploads' queries run too.
        policy = replace(upload_policy, company_concurrency=12)
        claimed = dispatch_connection(session, backlog[1], policy=policy, limiter=limiter, now=clock()).claimed
    with session_factory.begin() as session:
        reclaimed = reclaim_expired_leases(session, clock())

    assert due and len(claimed) == 12 and reclaimed  # the queries ran with rows to find
    assert len(captured) >= 4
    assert _explain_all(engine, captured) == []


def test_due_connections_probes_each_connection_instead_of_grouping_the_backlog(
    engine: Engine, session_factory: sessionmaker[Session], backlog: list[int], captured: list[tuple[str, Any]], clock: Clock,
) -> None:
    captured.clear()
    with session_factory.begin() as session:
        due = due_connections(session, clock())

    assert due == backlog[1:]  # the first company's uploads are all in flight or parked for later
    [(statement, _)] = captured
    assert "GROUP BY" not in statement.upper() and "LIMIT" in statement.upper()


def test_the_check_catches_a_backlog_wide_query(engine: Engine, backlog: list[int], clock: Clock) -> None:
    """The former pump query (GROUP BY over all due uploads) fails the check above."""
    former = (
        "SELECT uploads.connection_id FROM uploads WHERE uploads.state = 'queued' "
        "AND uploads.connection_id IS NOT NULL GROUP BY uploads.connection_id"
    )

    assert _explain_all(engine, [(former, {} if engine.dialect.name == "postgresql" else ())]) != []
