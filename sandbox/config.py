"""Configuration of the Personio stand-in.

The sandbox is configured with three dataclasses that mirror Personio's own
concepts: a :class:`SandboxConfig` holds global behaviour (rate limit, latency,
size limits) and a list of :class:`CompanyConfig`, each of which owns the jobs
(:class:`JobConfig`) that its career-site XML feed publishes.

JSON format (``--config FILE.json`` and the admin API use the same shape; keys
are the dataclass field names, everything except the ids/names is optional)::

    {
      "rate_limit": 20,               # requests per window per company
      "rate_window": 60.0,            # seconds, sliding window
      "lockout": 60.0,                # seconds of 429 after exceeding the limit
      "shared_budget": true,          # one budget for documents + applications
      "send_retry_after": false,      # real Personio sends no Retry-After
      "latency": [0.0, 0.0],          # uniform random delay per response (s)
      "max_document_bytes": 20971520,
      "validate_against_openapi": false,
      "companies": [
        {
          "company_id": 1000,
          "access_token": "demo-token-please-change",
          "domain": "demo.jobs.personio.de",
          "channel_ids": [4242],
          "recruiting_enabled": true,
          "public_api_enabled": true,
          "feed_mode": "xml",         # xml | html | redirect | not_found | truncated | server_error
          "custom_attributes": ["custom_attribute_1"],
          "custom_phases": [7],
          "jobs": [
            {
              "id": 1000001,
              "name": "Backend Engineer (m/w/d)",
              "office": "Berlin",
              "department": "Engineering",
              "published": true,
              "subcompany": "Demo GmbH",
              "additional_offices": ["Remote"],
              "recruiting_category": "Tech",
              "employment_type": "permanent",
              "seniority": "experienced",
              "schedule": "full-time",
              "years_of_experience": "2-5",
              "keywords": "python,backend",
              "occupation": "software_and_web_development",
              "occupation_category": "it_software",
              "created_at": "2024-01-15T09:30:00+00:00",
              "salary": {"min": "60000.00", "max": "", "currencySymbol": "€",
                         "currencyCode": "EUR", "type": "yearly"},
              "descriptions": [["Your tasks", "<ul><li>Build services</li></ul>"]]
            }
          ]
        }
      ]
    }

(The ``#`` comments above are for the reader only; JSON has no comments.)
``descriptions`` items may also be written as ``{"name": ..., "value": ...}``.
Unknown keys are rejected so that a typo in a fixture fails loudly instead of
silently falling back to a default.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ratelimit.limiter import parse_rate

FEED_MODES = ("xml", "html", "redirect", "not_found", "truncated", "server_error")
DEFAULT_MAX_DOCUMENT_BYTES = 20 * 1024 * 1024

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A sandbox configuration (file, CLI flag or admin payload) is invalid."""


@dataclass
class JobConfig:
    """One position in a company's career-site feed."""

    id: int
    name: str
    office: str = "Berlin"
    department: str = "Engineering"
    # Unpublished jobs vanish from the feed and applications to them get
    # errors.job-position.not-published, exactly like Personio.
    published: bool = True
    subcompany: str | None = None
    additional_offices: list[str] = field(default_factory=list)
    recruiting_category: str | None = None
    employment_type: str | None = "permanent"
    seniority: str | None = "experienced"
    schedule: str | None = "full-time"
    years_of_experience: str | None = None
    keywords: str | None = None
    occupation: str | None = None
    occupation_category: str | None = None
    created_at: str = "2024-01-15T09:30:00+00:00"
    salary: dict[str, Any] | None = None
    descriptions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        """Build a job from its JSON form, rejecting unknown keys."""
        _reject_unknown_keys(cls, data, "job")
        values = dict(data)
        values["descriptions"] = [_description(item) for item in values.get("descriptions", [])]
        values["additional_offices"] = [str(o) for o in values.get("additional_offices", [])]
        job = _construct(cls, values, "job")
        if not isinstance(job.id, int) or isinstance(job.id, bool):
            raise ConfigError(f"job id must be an integer, got {job.id!r}")
        if not isinstance(job.name, str) or not job.name:
            raise ConfigError(f"job {job.id}: name must be a non-empty string")
        return job

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["descriptions"] = [list(pair) for pair in self.descriptions]
        return data


@dataclass
class CompanyConfig:
    """A Personio account: API credentials, feature flags and its jobs feed."""

    company_id: int
    access_token: str
    domain: str
    jobs: list[JobConfig] = field(default_factory=list)
    channel_ids: list[int] = field(default_factory=list)
    recruiting_enabled: bool = True
    public_api_enabled: bool = True
    feed_mode: str = "xml"
    custom_attributes: list[str] = field(default_factory=list)
    # Ids of the company's custom application phases; an application with another custom
    # phase is filed under "unassigned", as Personio does.
    custom_phases: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompanyConfig:
        """Build a company from its JSON form, rejecting unknown keys."""
        _reject_unknown_keys(cls, data, "company")
        values = dict(data)
        values["jobs"] = _nested(JobConfig, values.get("jobs", []))
        company = _construct(cls, values, "company")
        company.validate()
        return company

    def validate(self) -> None:
        """Raise ConfigError if the company cannot be served consistently."""
        if not isinstance(self.company_id, int) or isinstance(self.company_id, bool):
            raise ConfigError(f"company_id must be an integer, got {self.company_id!r}")
        if not isinstance(self.access_token, str) or not self.access_token:
            raise ConfigError(f"company {self.company_id}: access_token must be non-empty")
        if not isinstance(self.domain, str) or not self.domain:
            raise ConfigError(f"company {self.company_id}: domain must be non-empty")
        if self.feed_mode not in FEED_MODES:
            raise ConfigError(
                f"company {self.company_id}: feed_mode {self.feed_mode!r} not in {FEED_MODES}"
            )
        if any(not isinstance(c, int) or isinstance(c, bool) for c in self.channel_ids):
            raise ConfigError(f"company {self.company_id}: channel_ids must be integers")
        if any(not isinstance(p, int) or isinstance(p, bool) for p in self.custom_phases):
            raise ConfigError(f"company {self.company_id}: custom_phases must be integers")
        job_ids = [job.id for job in self.jobs]
        if len(job_ids) != len(set(job_ids)):
            raise ConfigError(f"company {self.company_id}: duplicate job ids")

    def job(self, job_id: int) -> JobConfig | None:
        return next((job for job in self.jobs if job.id == job_id), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["jobs"] = [job.to_dict() for job in self.jobs]
        return data


@dataclass
class SandboxConfig:
    """Global sandbox behaviour plus the companies it serves."""

    companies: list[CompanyConfig] = field(default_factory=list)
    rate_limit: int = 20
    rate_window: float = 60.0
    lockout: float = 60.0
    shared_budget: bool = True
    # Real Personio sends no Retry-After on 429, so it is off by default; tests
    # switch it on to check that clients honour it when present.
    send_retry_after: bool = False
    latency: tuple[float, float] = (0.0, 0.0)
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    validate_against_openapi: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxConfig:
        """Build a config from its JSON form, rejecting unknown keys."""
        _reject_unknown_keys(cls, data, "sandbox config")
        values = dict(data)
        values["companies"] = _nested(CompanyConfig, values.get("companies", []))
        if "latency" in values:
            values["latency"] = parse_latency(values["latency"])
        config = _construct(cls, values, "sandbox config")
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ConfigError for settings the limiter or server cannot honour."""
        if not isinstance(self.rate_limit, int) or self.rate_limit < 1:
            raise ConfigError(f"rate_limit must be a positive integer, got {self.rate_limit!r}")
        if self.rate_window <= 0:
            raise ConfigError(f"rate_window must be > 0, got {self.rate_window!r}")
        if self.lockout < 0:
            raise ConfigError(f"lockout must be >= 0, got {self.lockout!r}")
        if self.max_document_bytes < 0:
            raise ConfigError("max_document_bytes must be >= 0")
        low, high = self.latency
        if low < 0 or high < low:
            raise ConfigError(f"latency must be (low, high) with 0 <= low <= high, got {self.latency}")
        ids = [c.company_id for c in self.companies]
        if len(ids) != len(set(ids)):
            raise ConfigError("duplicate company_id in companies")
        domains = [c.domain.lower() for c in self.companies]
        if len(domains) != len(set(domains)):
            raise ConfigError("duplicate domain in companies")
        for company in self.companies:
            company.validate()

    def with_settings(self, changes: dict[str, Any]) -> SandboxConfig:
        """Return a copy with global settings changed (not the companies)."""
        allowed = {f.name for f in fields(self)} - {"companies"}
        unknown = set(changes) - allowed
        if unknown:
            raise ConfigError(f"unknown setting(s): {sorted(unknown)}")
        values = dict(changes)
        if "latency" in values:
            values["latency"] = parse_latency(values["latency"])
        updated = replace(self, **values)
        updated.validate()
        return updated

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["companies"] = [c.to_dict() for c in self.companies]
        data["latency"] = list(self.latency)
        return data

    def copy(self) -> SandboxConfig:
        return copy.deepcopy(self)


def parse_latency(value: Any) -> tuple[float, float]:
    """Accept ``[low, high]``, a single number or a ``"0.05-0.2"`` string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value), float(value))
    if isinstance(value, str):
        parts = value.split("-", 1)
        try:
            low = float(parts[0])
            high = float(parts[1]) if len(parts) == 2 else low
        except ValueError as exc:
            raise ConfigError(f"latency must look like 0.05-0.2, got {value!r}") from exc
        return (low, high)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (float(value[0]), float(value[1]))
    raise ConfigError(f"latency must be [low, high], a number or 'low-high', got {value!r}")


def parse_rate_limit(value: str) -> tuple[int, float]:
    """Parse ``"20/60s"`` (also ``20/60``, ``20/1m``, ``20``) into (limit, window seconds).

    The text is read by :func:`ratelimit.parse_rate`, as ``PERSONIO_RATE_LIMIT`` is; a bare
    count means per 60 s, Personio's window.
    """
    text = value.strip()
    try:
        return parse_rate(text if "/" in text else f"{text}/60s")
    except ValueError as exc:
        raise ConfigError(f"rate limit must look like 20/60s, got {value!r}") from exc


def load_config(path: str | Path) -> SandboxConfig:
    """Load a SandboxConfig from a JSON file."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    return SandboxConfig.from_dict(data)


def load_demo_config() -> SandboxConfig:
    """Load the bundled demo fixture (``sandbox/data/demo.json``)."""
    text = resources.files("sandbox").joinpath("data/demo.json").read_text(encoding="utf-8")
    return SandboxConfig.from_dict(json.loads(text))


def _description(item: Any) -> tuple[str, str]:
    if isinstance(item, dict):
        return (str(item["name"]), str(item["value"]))
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return (str(item[0]), str(item[1]))
    raise ConfigError(f"description must be [name, html] or {{name, value}}, got {item!r}")


_Nested = TypeVar("_Nested", "JobConfig", "CompanyConfig")


def _nested(cls: type[_Nested], items: list[Any]) -> list[_Nested]:
    """Nested configs from their JSON form; ones already built are kept as they are."""
    return [item if isinstance(item, cls) else cls.from_dict(item) for item in items]


def _construct(cls: type[_T], values: dict[str, Any], what: str) -> _T:
    # A missing required key surfaces as TypeError from the dataclass __init__;
    # turn it into the ConfigError every caller already handles.
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid {what}: {exc}") from exc


def _reject_unknown_keys(cls: type, data: Any, what: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what} key(s): {sorted(unknown)}")
