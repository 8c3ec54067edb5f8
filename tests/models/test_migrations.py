"""Alembic migrations: an empty database reaches the models' schema, and again is a no-op."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from models import Base
from models.db import alembic_config, migrate
from tests.concurrency import run_at_once

TABLES = {"connections", "jobs", "project_links", "uploads", "upload_documents", "upload_events", "application_claims", "event_outbox", "backfills", "backfill_chunks"}


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    return {
        table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted((f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"]) for f in inspector.get_foreign_keys(table)),
        }
        for table in sorted(inspector.get_table_names())
    }


def test_empty_database_upgrades_to_head_and_matches_the_models(fresh_db_url: str, fresh_engine: Engine, tmp_path: Path) -> None:
    # given: nothing at all
    assert inspect(fresh_engine).get_table_names() == []

    # when
    migrate(fresh_db_url, tmp_path)

    # then: every table, at the newest revision
    assert set(inspect(fresh_engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(fresh_engine) == head_revision(fresh_db_url)
    # and: autogenerate finds nothing to do, so models and migrations agree
    with fresh_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrate_twice_is_a_no_op(fresh_db_url: str, fresh_engine: Engine, tmp_path: Path) -> None:
    migrate(fresh_db_url, tmp_path)
    before = schema(fresh_engine)

    migrate(fresh_db_url, tmp_path)

    assert schema(fresh_engine) == before
    assert current_revision(fresh_engine) == head_revision(fresh_db_url)


def test_downgrade_to_base_and_up_again(fresh_db_url: str, fresh_engine: Engine, tmp_path: Path) -> None:
    migrate(fresh_db_url, tmp_path)
    upgraded = schema(fresh_engine)

    command.downgrade(alembic_config(fresh_db_url), "base")
    assert set(inspect(fresh_engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(fresh_engine) is None

    migrate(fresh_db_url, tmp_path)
    assert schema(fresh_engine) == upgraded


def test_processes_starting_together_migrate_once(fresh_db_url: str, fresh_engine: Engine, tmp_path: Path) -> None:
    errors = run_at_once(lambda: migrate(fresh_db_url, tmp_path), 3)

    assert errors == []
    assert current_revision(fresh_engine) == head_revision(fresh_db_url)


def test_0006_makes_the_next_feed_refresh_apply_the_whole_feed(fresh_db_url: str, fresh_engine: Engine) -> None:
    # given: a connection whose feed was applied before jobs kept their section names
    config = alembic_config(fresh_db_url)
    command.upgrade(config, "0005")
    with fresh_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO connections (account_id, company_id, access_token_encrypted, jobs_domain, feed_language, health,"
            " feed_etag, feed_last_modified, feed_sha256, created_at, updated_at)"
            " VALUES ('a', 1, 'x', 'acme.jobs.personio.de', 'de', 'healthy', '\"v1\"', 'Mon, 01 Jan 2024 00:00:00 GMT', 'abc',"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ))

    # when
    command.upgrade(config, "0006")

    # then: the feed's validators are gone (no 304, no "same hash"), the storm state is empty
    with fresh_engine.connect() as conn:
        row = conn.execute(text("SELECT feed_etag, feed_last_modified, feed_sha256, rate_limited_since FROM connections")).one()
    assert tuple(row) == (None, None, None, None)
