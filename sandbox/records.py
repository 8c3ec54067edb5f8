"""The records and small value types kept by :class:`sandbox.state.SandboxState`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypedDict

from sandbox.config import CompanyConfig

ENDPOINTS = ("applications", "documents")
FAULT_KINDS = ("status", "drop", "drop_after_commit", "delay_after_commit")


class DocumentRecord(TypedDict):
    uuid: str
    company_id: int
    original_filename: str
    extension: str
    mimetype: str
    size: int
    sha256: str
    uploaded_at: str
    uploaded_ts: float


class ApplicationRecord(TypedDict):
    id: int
    company_id: int
    job_position_id: int
    email: str
    email_normalized: str
    first_name: str
    last_name: str
    recruiting_channel_id: int | None
    external_posting_id: str | None
    # The phase as sent, and where Personio filed the application: the same, "unassigned" for
    # an unknown custom phase, None (the category's initial phase) when none was sent.
    phase: dict[str, Any] | None
    filed_phase: dict[str, Any] | None
    file_uuids: list[str]
    payload: dict[str, Any]
    created_at: str
    created_ts: float


@dataclass
class Fault:
    """A scheduled misbehaviour for the next ``remaining`` matching API requests.

    Kinds: ``status`` answers ``status`` with an error body without processing;
    ``drop`` closes the connection without processing; ``drop_after_commit``
    processes the request (the application/document IS recorded) and then
    closes the connection without answering; ``delay_after_commit`` processes
    the request and sleeps ``delay`` seconds before answering (client read
    timeouts after a commit).

    Faults fire after the credential, feature and rate-limit checks: a faulted
    request reached "Personio", so it counts against the company's budget.
    """

    id: int
    kind: str
    remaining: int
    company_id: int | None = None
    endpoint: str | None = None
    status: int | None = None
    delay: float = 0.0

    def matches(self, company_id: int, endpoint: str) -> bool:
        return (self.company_id is None or self.company_id == company_id) and (
            self.endpoint is None or self.endpoint == endpoint
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "remaining": self.remaining,
            "company_id": self.company_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "delay": self.delay,
        }


@dataclass
class FeedSnapshot:
    """A company's rendered feed, cached so feed requests need not re-render."""

    company: CompanyConfig
    body: bytes
    etag: str
    last_modified: int


@dataclass
class CompanyStats:
    accepted: int = 0
    rate_limited: int = 0
    faults_fired: int = 0
    endpoints: dict[str, Counter[str]] = field(
        default_factory=lambda: {name: Counter() for name in ENDPOINTS}
    )
    statuses: Counter[str] = field(default_factory=Counter)
    timestamps: list[tuple[float, str]] = field(default_factory=list)

    def to_dict(self, include_timestamps: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "accepted": self.accepted,
            "rate_limited": self.rate_limited,
            "faults_fired": self.faults_fired,
            "endpoints": {
                name: {
                    "accepted": counts["accepted"],
                    "rate_limited": counts["rate_limited"],
                    "statuses": {k[7:]: v for k, v in counts.items() if k.startswith("status:")},
                }
                for name, counts in self.endpoints.items()
            },
            "statuses": dict(self.statuses),
        }
        if include_timestamps:
            data["timestamps"] = [ts for ts, _ in self.timestamps]
            for name in ENDPOINTS:
                data["endpoints"][name]["timestamps"] = [
                    ts for ts, endpoint in self.timestamps if endpoint == name
                ]
        return data
