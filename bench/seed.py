"""Companies, connections and backlogs for the benchmark scenarios.

personio-sync holds its backlog in the database (``queued`` uploads), so a backlog is
inserted there in bulk, exactly as ``receive_upload`` would have recorded it; the pump then
dispatches it. Connections are inserted directly too (token encrypted with the data dir's
key, jobs cache filled, project linked) — what ``connect`` + ``link`` leave behind. Only the
interactive uploads of the latency scenario go through the real intake
(``tasks.producer.send_upload_request``).

The naive design holds its backlog in the broker: one Celery message per upload.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, insert

from cli.demo import sample_pdf
from models import Base, Connection, Job, ProjectLink, Upload, UploadDocument, UploadEvent, utcnow
from sandbox import CompanyConfig, JobConfig

COMPANY_BASE = 70_000
JOB_BASE = 5_000_000
CV = sample_pdf("Benchmark Candidate - CV")
CV_BASE64 = base64.b64encode(CV).decode()
CV_SHA256 = hashlib.sha256(CV).hexdigest()
_BATCH = 5_000


def _table(model: type[Base]) -> Table:
    """The model's Core table (DeclarativeBase types ``__table__`` as the wider FromClause)."""
    return cast(Table, model.__table__)


def company_configs(count: int) -> list[CompanyConfig]:
    """Companies c1 … c{count}: own domain, token and one published job each."""
    return [
        CompanyConfig(
            company_id=COMPANY_BASE + n,
            access_token=f"bench-token-{n:04d}",
            domain=f"c{n}.jobs.personio.de",
            jobs=[JobConfig(id=JOB_BASE + n, name=f"Backend Engineer {n} (m/w/d)")],
        )
        for n in range(1, count + 1)
    ]


def index_of(company: CompanyConfig) -> int:
    return company.company_id - COMPANY_BASE


def account_id(n: int) -> str:
    return f"acct-{n}"


def project_id(n: int) -> str:
    return f"proj-{n}"


def candidate(n: int, seq: int, tag: str) -> dict[str, Any]:
    return {
        "first_name": "Bench",
        "last_name": f"Candidate {seq}",
        "email": f"{tag}-{n}-{seq}@example.org",
        "message": "Sourced with Talentwunder",
    }


# --------------------------------------------------------------------------- personio-sync


def seed_connections(engine: Engine, cipher: Any, companies: list[CompanyConfig], *, now: datetime | None = None) -> dict[int, int]:
    """Insert one healthy, linked connection per company; return company index -> connection id."""
    now = now or utcnow()
    connections, jobs, links = [], [], []
    for company in companies:
        n = index_of(company)
        job = company.jobs[0]
        connections.append(
            {
                "id": n,
                "account_id": account_id(n),
                "company_id": company.company_id,
                "access_token_encrypted": cipher.encrypt(company.access_token),
                "jobs_domain": company.domain,
                "channel_id": None,
                "feed_language": "de",
                "health": "healthy",
                "health_checked_at": now,
                "health_changed_at": now,
                "credentials_ok_at": now,
                "feed_fetched_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
        jobs.append(
            {
                "connection_id": n,
                "job_position_id": job.id,
                "name": job.name,
                "office": job.office,
                "additional_offices": [],
                "department": job.department,
                "published": True,
                "first_seen_at": now,
                "updated_at": now,
            }
        )
        links.append(
            {
                "connection_id": n,
                "project_id": project_id(n),
                "job_position_id": job.id,
                "created_at": now,
                "updated_at": now,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(_table(Connection)), connections)
        conn.execute(insert(_table(Job)), jobs)
        conn.execute(insert(_table(ProjectLink)), links)
    return {index_of(c): index_of(c) for c in companies}


def seed_backlog(engine: Engine, plan: list[tuple[int, int]], *, priority: str = "backfill", tag: str = "backlog") -> int:
    """Insert ``queued`` uploads with one inline CV each; ``plan`` is [(company index, count)].

    Companies are interleaved (one upload each in turn), as many producers would fill them.
    """
    now = utcnow()
    total = 0
    upload_id = 0
    with engine.begin() as conn:
        for batch in _batches(_interleave(plan), _BATCH):
            uploads, documents, events = [], [], []
            for n, seq in batch:
                upload_id += 1
                uploads.append(
                    {
                        "id": upload_id,
                        "request_id": f"{tag}-{n}-{seq}",
                        "account_id": account_id(n),
                        "project_id": project_id(n),
                        "connection_id": n,
                        "email_normalized": f"{tag}-{n}-{seq}@example.org",
                        "candidate": candidate(n, seq, tag),
                        "priority": priority,
                        "state": "queued",
                        "attempts": 0,
                        "application_attempts": 0,
                        "application_unconfirmed": False,
                        "next_attempt_at": now,
                        "channel_dropped": False,
                        "confirmed_by_duplicate": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                documents.append(
                    {
                        "upload_id": upload_id,
                        "position": 0,
                        "category": "cv",
                        "filename": "cv.pdf",
                        "source": "inline",
                        "content": CV,
                        "size": len(CV),
                        "sha256": CV_SHA256,
                    }
                )
                events.append({"upload_id": upload_id, "state": "queued", "at": now})
            conn.execute(insert(_table(Upload)), uploads)
            conn.execute(insert(_table(UploadDocument)), documents)
            conn.execute(insert(_table(UploadEvent)), events)
            total += len(batch)
    return total


def upload_request(n: int, seq: int, *, tag: str, priority: str = "interactive") -> dict[str, Any]:
    """An upload request as the main app sends it (the README's message contract)."""
    return {
        "request_id": f"{tag}-{n}-{seq}",
        "account_id": account_id(n),
        "project_id": project_id(n),
        "priority": priority,
        "candidate": {
            **candidate(n, seq, tag),
            "documents": [{"category": "cv", "filename": "cv.pdf", "content_base64": CV_BASE64}],
        },
    }


# --------------------------------------------------------------------------- naive design


def naive_request(company: CompanyConfig, seq: int, *, tag: str) -> dict[str, Any]:
    n = index_of(company)
    return {
        "request_id": f"{tag}-{n}-{seq}",
        "company_id": company.company_id,
        "job_position_id": company.jobs[0].id,
        "candidate": {**candidate(n, seq, tag), "cv_base64": CV_BASE64},
    }


def naive_backlog(companies: list[CompanyConfig], per_company: int, *, tag: str = "backlog") -> Iterator[dict[str, Any]]:
    by_index = {index_of(c): c for c in companies}
    for n, seq in _interleave([(index_of(c), per_company) for c in companies]):
        yield naive_request(by_index[n], seq, tag=tag)


# --------------------------------------------------------------------------- helpers


def _interleave(plan: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    longest = max((count for _, count in plan), default=0)
    for seq in range(longest):
        for n, count in plan:
            if seq < count:
                yield n, seq


def _batches(items: Iterator[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    batch: list[tuple[int, int]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
