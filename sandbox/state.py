"""Thread-safe state of the Personio stand-in: companies, limiter, ledger, faults.

Every request handler thread goes through one :class:`SandboxState`; all
mutable data sits behind a single lock. The operations are tiny (dict and
deque updates), so one lock keeps the invariants obvious - in particular the
duplicate check and the insert of an application happen in one critical
section, which is what makes concurrent identical POSTs yield one application.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import math
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sandbox.config import CompanyConfig, ConfigError, SandboxConfig
from sandbox.feeds import etag_for, render_feed
from sandbox.records import (
    ENDPOINTS,
    FAULT_KINDS,
    ApplicationRecord,
    CompanyStats,
    DocumentRecord,
    Fault,
    FeedSnapshot,
)

_SHARED_BUDGET = "shared"


class SandboxState:
    """The sandbox's ledger and control surface, safe to use from any thread."""

    def __init__(self, config: SandboxConfig) -> None:
        config.validate()
        self._lock = threading.Lock()
        self._initial = config.copy()
        self._install(config.copy())

    # ------------------------------------------------------------------ setup

    def _install(self, config: SandboxConfig) -> None:
        """(Re)initialise everything; callers hold the lock or own the object."""
        self._settings = config
        self._companies: dict[int, CompanyConfig] = {}
        self._feeds: dict[int, FeedSnapshot] = {}
        for company in config.companies:
            self._store_company(company)
        self._clear_runtime()

    def _clear_runtime(self) -> None:
        self._windows: dict[tuple[int, str], deque[float]] = {}
        self._locked_until: dict[tuple[int, str], float] = {}
        self._documents: dict[str, DocumentRecord] = {}
        self._applications: list[ApplicationRecord] = []
        self._application_keys: set[tuple[int, int, str]] = set()
        self._stats: dict[int, CompanyStats] = {}
        self._unauthorized = 0
        self._faults: list[Fault] = []
        self._fault_seq = 0

    def reset(self, restore_config: bool = False) -> None:
        """Clear ledger, limiter, stats and faults; optionally restore the start config."""
        with self._lock:
            if restore_config:
                self._install(self._initial.copy())
            else:
                self._clear_runtime()

    # -------------------------------------------------------------- companies

    def _store_company(self, company: CompanyConfig) -> None:
        company = copy.deepcopy(company)
        body = render_feed(company)
        etag = etag_for(body)
        previous = self._feeds.get(company.company_id)
        if previous is not None and previous.etag == etag:
            last_modified = previous.last_modified
        else:
            # Last-Modified has one-second resolution; bump it past the previous
            # value so If-Modified-Since clients notice two quick changes too.
            floor = previous.last_modified + 1 if previous else 0
            last_modified = max(int(time.time()), floor)
        self._companies[company.company_id] = company
        self._feeds[company.company_id] = FeedSnapshot(company, body, etag, last_modified)

    def upsert_company(self, company: CompanyConfig) -> bool:
        """Create or replace a company (e.g. rotate its token); True if created."""
        company.validate()
        with self._lock:
            for other in self._companies.values():
                if (
                    other.company_id != company.company_id
                    and other.domain.lower() == company.domain.lower()
                ):
                    raise ConfigError(
                        f"domain {company.domain} already used by company {other.company_id}"
                    )
            created = company.company_id not in self._companies
            self._store_company(company)
            return created

    def patch_company(self, company_id: int, changes: dict[str, Any]) -> CompanyConfig:
        """Change some fields of an existing company (``jobs`` is replaced whole)."""
        with self._lock:
            current = self._companies.get(company_id)
        if current is None:
            raise KeyError(company_id)
        data = current.to_dict()
        data.update(changes)
        data["company_id"] = company_id
        updated = CompanyConfig.from_dict(data)
        self.upsert_company(updated)
        return updated

    def remove_company(self, company_id: int) -> bool:
        with self._lock:
            self._feeds.pop(company_id, None)
            return self._companies.pop(company_id, None) is not None

    def company(self, company_id: int) -> CompanyConfig | None:
        """A deep copy of one company's config (mutating it changes nothing)."""
        with self._lock:
            company = self._companies.get(company_id)
        return copy.deepcopy(company) if company else None

    def companies(self) -> list[CompanyConfig]:
        with self._lock:
            companies = list(self._companies.values())
        return copy.deepcopy(companies)

    def authenticate(self, company_id: int, token: str) -> CompanyConfig | None:
        """Return the company if id and token match, else None.

        The returned object is the stored one and must be treated as read-only;
        companies are replaced, never mutated, so holding it outside the lock
        is safe.
        """
        with self._lock:
            company = self._companies.get(company_id)
        if company is None:
            return None
        expected = company.access_token.encode()
        # Constant-time compare: cheap, and keeps the stand-in honest as an example.
        return company if hmac.compare_digest(expected, token.encode()) else None

    def feed(self, domain: str) -> FeedSnapshot | None:
        """The cached feed of the company that owns ``domain`` (case-insensitive)."""
        domain = domain.lower()
        with self._lock:
            for snapshot in self._feeds.values():
                if snapshot.company.domain.lower() == domain:
                    return snapshot
        return None

    # --------------------------------------------------------------- settings

    @property
    def settings(self) -> SandboxConfig:
        """A copy of the current configuration, companies included."""
        with self._lock:
            config = copy.copy(self._settings)
            config.companies = list(self._companies.values())
            return config.copy()

    def update_settings(self, **changes: Any) -> SandboxConfig:
        """Change global settings at run time (rate limit, latency, ...)."""
        with self._lock:
            self._settings = self._settings.with_settings(changes)
        return self.settings

    def latency(self) -> tuple[float, float]:
        with self._lock:
            return self._settings.latency

    def max_document_bytes(self) -> int:
        with self._lock:
            return self._settings.max_document_bytes

    def send_retry_after(self) -> bool:
        with self._lock:
            return self._settings.send_retry_after

    def validate_against_openapi(self) -> bool:
        with self._lock:
            return self._settings.validate_against_openapi

    # ---------------------------------------------------------------- limiter

    def acquire(self, company_id: int, endpoint: str, now: float | None = None) -> float | None:
        """Count one request against the company's budget.

        Returns None if accepted, else the seconds until the lock-out ends (for
        Retry-After). Exceeding the budget starts a lock-out during which every
        request is refused; refused requests neither count as accepted nor
        extend the lock-out.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            settings = self._settings
            key = (company_id, _SHARED_BUDGET if settings.shared_budget else endpoint)
            stats = self._company_stats(company_id)
            locked_until = self._locked_until.get(key, 0.0)
            if now < locked_until:
                return self._refuse(stats, endpoint, locked_until - now)
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - settings.rate_window:
                window.popleft()
            if len(window) >= settings.rate_limit:
                self._locked_until[key] = now + settings.lockout
                # With lockout 0 the client may retry as soon as the window frees up.
                wait = settings.lockout or (window[0] + settings.rate_window - now)
                return self._refuse(stats, endpoint, wait)
            window.append(now)
            stats.accepted += 1
            stats.endpoints[endpoint]["accepted"] += 1
            stats.timestamps.append((time.time(), endpoint))
            return None

    @staticmethod
    def _refuse(stats: CompanyStats, endpoint: str, wait: float) -> float:
        stats.rate_limited += 1
        stats.endpoints[endpoint]["rate_limited"] += 1
        return max(wait, 0.0)

    @staticmethod
    def retry_after_header(wait: float) -> str:
        return str(max(1, math.ceil(wait)))

    # ----------------------------------------------------------------- ledger

    def record_document(
        self,
        company_id: int,
        original_filename: str,
        extension: str,
        mimetype: str,
        content: bytes,
        document_uuid: str,
    ) -> DocumentRecord:
        now = time.time()
        record: DocumentRecord = {
            "uuid": document_uuid,
            "company_id": company_id,
            "original_filename": original_filename,
            "extension": extension,
            "mimetype": mimetype,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "uploaded_at": _iso(now),
            "uploaded_ts": now,
        }
        with self._lock:
            self._documents[document_uuid] = record
        return record.copy()  # the stored record stays private

    def has_document(self, company_id: int, document_uuid: str) -> bool:
        with self._lock:
            record = self._documents.get(document_uuid)
        return record is not None and record["company_id"] == company_id

    def commit_application(
        self,
        company_id: int,
        job_position_id: int,
        payload: dict[str, Any],
        filed_phase: dict[str, Any] | None = None,
    ) -> ApplicationRecord | None:
        """Insert an application unless (company, job, email) already applied.

        Returns the new record, or None for a duplicate. Check and insert share
        one critical section so concurrent identical POSTs produce exactly one.
        """
        email = str(payload["email"])
        normalized = email.strip().lower()
        key = (company_id, job_position_id, normalized)
        now = time.time()
        with self._lock:
            if key in self._application_keys:
                return None
            self._application_keys.add(key)
            record: ApplicationRecord = {
                "id": len(self._applications) + 1,
                "company_id": company_id,
                "job_position_id": job_position_id,
                "email": email,
                "email_normalized": normalized,
                "first_name": str(payload.get("first_name", "")),
                "last_name": str(payload.get("last_name", "")),
                "recruiting_channel_id": payload.get("recruiting_channel_id"),
                "external_posting_id": payload.get("external_posting_id"),
                "phase": copy.deepcopy(payload.get("phase")),
                "filed_phase": filed_phase,
                "file_uuids": [str(f.get("uuid")) for f in payload.get("files") or []],
                "payload": copy.deepcopy(payload),
                "created_at": _iso(now),
                "created_ts": now,
            }
            self._applications.append(record)
            return copy.deepcopy(record)

    def applications(self, company_id: int | None = None) -> list[ApplicationRecord]:
        """Recorded applications in creation order (copies)."""
        with self._lock:
            found = [a for a in self._applications if company_id in (None, a["company_id"])]
            return copy.deepcopy(found)

    def documents(self, company_id: int | None = None) -> list[DocumentRecord]:
        """Recorded document uploads in upload order (copies, no content)."""
        with self._lock:
            found = [d for d in self._documents.values() if company_id in (None, d["company_id"])]
            return copy.deepcopy(found)

    # ------------------------------------------------------------------ stats

    def _company_stats(self, company_id: int) -> CompanyStats:
        return self._stats.setdefault(company_id, CompanyStats())

    def record_response(self, company_id: int | None, endpoint: str, status: int | str) -> None:
        """Count the answer to an API request (company None = not authenticated).

        ``status`` is the HTTP status, or ``"dropped"`` when a fault closed the
        connection without answering.
        """
        with self._lock:
            if company_id is None:
                self._unauthorized += 1
                return
            stats = self._company_stats(company_id)
            stats.statuses[str(status)] += 1
            stats.endpoints[endpoint][f"status:{status}"] += 1

    def stats(self, include_timestamps: bool = False) -> dict[str, Any]:
        """Per-company counters keyed by ``str(company_id)`` (JSON-friendly).

        Timestamps (opt-in) are wall-clock epoch seconds of accepted requests,
        so processes other than the sandbox can compare them with their own clock.
        """
        with self._lock:
            companies = {
                str(cid): s.to_dict(include_timestamps) for cid, s in sorted(self._stats.items())
            }
            return {
                "companies": companies,
                "unauthorized": self._unauthorized,
                "applications": len(self._applications),
                "documents": len(self._documents),
            }

    # ----------------------------------------------------------------- faults

    def inject_fault(
        self,
        company_id: int | None = None,
        status: int | None = 500,
        count: int = 1,
        endpoint: str | None = None,
        kind: str = "status",
        delay: float = 0.0,
    ) -> dict[str, Any]:
        """Make the next ``count`` matching API requests misbehave (see Fault)."""
        if kind not in FAULT_KINDS:
            raise ConfigError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ConfigError(f"endpoint must be one of {ENDPOINTS} or null, got {endpoint!r}")
        if kind == "status" and (not isinstance(status, int) or not 400 <= status <= 599):
            raise ConfigError(f"status faults need a 4xx/5xx status, got {status!r}")
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"count must be a positive integer, got {count!r}")
        if delay < 0:
            raise ConfigError("delay must be >= 0")
        with self._lock:
            self._fault_seq += 1
            fault = Fault(
                id=self._fault_seq,
                kind=kind,
                remaining=count,
                company_id=company_id,
                endpoint=endpoint,
                status=status if kind == "status" else None,
                delay=delay,
            )
            self._faults.append(fault)
            return fault.to_dict()

    def take_fault(self, company_id: int, endpoint: str) -> Fault | None:
        """Consume one use of the oldest fault matching this request, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(company_id, endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    self._company_stats(company_id).faults_fired += 1
                    return copy.copy(fault)
        return None

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.to_dict() for fault in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()
