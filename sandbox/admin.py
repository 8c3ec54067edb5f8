"""Handlers of the admin / inspection API (``/_sandbox/...``, JSON).

Tests, the demo and the benchmarks in other processes use it to read what the
stand-in received, reset it, and change companies, faults and settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.config import CompanyConfig, ConfigError
from sandbox.framing import BadRequest, FramedRequestHandler


class AdminHandlers(FramedRequestHandler):
    """The ``/_sandbox/`` endpoints."""

    def _admin_company_id(self) -> int | None:
        raw = self._query.get("company_id")
        if raw is None:
            return None
        if not raw.isdigit():
            raise BadRequest("company_id must be an integer")
        return int(raw)

    def _admin(self, action: Callable[[], tuple[int, Any]]) -> None:
        try:
            status, payload = action()
        except BadRequest as exc:
            status, payload = 400, {"error": str(exc)}
        except ConfigError as exc:
            status, payload = 400, {"error": str(exc)}
        self._send_json(status, payload)

    def admin_health(self) -> None:
        self._drain_body()
        self._send_json(200, {"status": "ok"})

    def admin_applications(self) -> None:
        self._drain_body()
        self._admin(lambda: (200, self.state.applications(self._admin_company_id())))

    def admin_documents(self) -> None:
        self._drain_body()
        self._admin(lambda: (200, self.state.documents(self._admin_company_id())))

    def admin_stats(self) -> None:
        self._drain_body()
        include = self._query.get("timestamps", "") in ("1", "true", "yes")
        self._send_json(200, self.state.stats(include_timestamps=include))

    def admin_reset(self) -> None:
        def action() -> tuple[int, Any]:
            payload = self._json_body()
            restore = bool(payload.get("restore_config")) if isinstance(payload, dict) else False
            self.state.reset(restore_config=restore)
            return 200, {"status": "reset", "restore_config": restore}

        self._admin(action)

    def admin_companies(self) -> None:
        self._drain_body()
        self._send_json(200, [c.to_dict() for c in self.state.companies()])

    def admin_company(self, company_id: str) -> None:
        cid = int(company_id)
        method = self.command

        def action() -> tuple[int, Any]:
            if method == "GET":
                self._drain_body()
                company = self.state.company(cid)
                return (200, company.to_dict()) if company else (404, {"error": "unknown company"})
            if method == "DELETE":
                self._drain_body()
                removed = self.state.remove_company(cid)
                return (200, {"removed": cid}) if removed else (404, {"error": "unknown company"})
            payload = self._json_body()
            if not isinstance(payload, dict):
                raise BadRequest("body must be a JSON object")
            if method == "PATCH":
                try:
                    return 200, self.state.patch_company(cid, payload).to_dict()
                except KeyError:
                    return 404, {"error": "unknown company"}
            if payload.setdefault("company_id", cid) != cid:
                raise BadRequest("company_id in body does not match the URL")
            company = CompanyConfig.from_dict(payload)
            created = self.state.upsert_company(company)
            return (201 if created else 200), company.to_dict()

        self._admin(action)

    def admin_faults(self) -> None:
        method = self.command

        def action() -> tuple[int, Any]:
            if method == "GET":
                self._drain_body()
                return 200, self.state.faults()
            if method == "DELETE":
                self._drain_body()
                self.state.clear_faults()
                return 200, []
            payload = self._json_body()
            if not isinstance(payload, dict):
                raise BadRequest("body must be a JSON object")
            allowed = {"company_id", "status", "count", "endpoint", "kind", "delay"}
            unknown = set(payload) - allowed
            if unknown:
                raise BadRequest(f"unknown fault key(s): {sorted(unknown)}")
            kind = payload.get("kind", "status")
            fault = self.state.inject_fault(
                company_id=payload.get("company_id"),
                status=payload.get("status", 500 if kind == "status" else None),
                count=payload.get("count", 1),
                endpoint=payload.get("endpoint"),
                kind=kind,
                delay=float(payload.get("delay", 0.0)),
            )
            return 201, fault

        self._admin(action)

    def admin_settings(self) -> None:
        method = self.command

        def action() -> tuple[int, Any]:
            if method == "GET":
                self._drain_body()
            else:
                payload = self._json_body()
                if not isinstance(payload, dict):
                    raise BadRequest("body must be a JSON object")
                self.state.update_settings(**payload)
            settings = self.state.settings.to_dict()
            settings.pop("companies")
            return 200, settings

        self._admin(action)
