"""A thin client for Personio's recruiting API (documents, applications).

Everything it needs is passed in: the ``requests.Session``, the base URL, the
credentials and the (connect, read) timeouts. Nothing is read from the environment here.
All traffic goes through :meth:`PersonioClient._request`, the one choke point that adds
the headers, applies the timeouts and turns every failure into the typed error tree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from personio.errors import (
    PersonioAPIError,
    PersonioApplicantExists,
    PersonioError,
    PersonioTimeout,
    PersonioTransportError,
    PersonioValidationError,
)

log = logging.getLogger(__name__)

DOCUMENTS_PATH = "/v1/recruiting/applications/documents"
APPLICATIONS_PATH = "/v1/recruiting/applications"


@dataclass(frozen=True)
class PersonioCredentials:
    """A company's Recruiting API key. The token is kept out of ``repr``."""

    company_id: int
    access_token: str = field(repr=False)


@dataclass(frozen=True)
class UploadedDocument:
    uuid: str
    size: int | None
    mimetype: str | None
    original_filename: str
    extension: str | None


class PersonioClient:
    def __init__(
        self,
        session: requests.Session,
        *,
        base_url: str,
        credentials: PersonioCredentials,
        app_id: str,
        partner_id: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._app_id = app_id
        self._partner_id = partner_id
        self._timeout = timeout

    @property
    def company_id(self) -> int:
        return self._credentials.company_id

    def upload_document(self, *, filename: str, content: bytes, mimetype: str = "application/octet-stream") -> UploadedDocument:
        """Upload one file (multipart field ``file``); Personio returns its uuid."""
        response = self._request(DOCUMENTS_PATH, files={"file": (filename, content, mimetype)})
        try:
            body = response.json()
            return UploadedDocument(
                uuid=str(body["uuid"]),
                size=body.get("size"),
                mimetype=body.get("mimetype"),
                original_filename=str(body.get("original_filename") or filename),
                extension=body.get("extension"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PersonioError(f"Personio answered {response.status_code} to POST {DOCUMENTS_PATH} without a document uuid") from exc

    def create_application(self, application: dict[str, Any]) -> None:
        """Create one application (JSON). Personio answers 201 with no documented body."""
        self._request(APPLICATIONS_PATH, json=application)

    def probe_credentials(self) -> None:
        """Check the company ID and token without creating anything.

        Personio has no credentials endpoint: an empty application is refused with a
        validation answer (400) only after authentication and the plan check passed, so
        400 means "credentials work". 401/403 and transport errors are raised as usual.
        """
        try:
            self._request(APPLICATIONS_PATH, json={})
        except PersonioApplicantExists:
            return
        except PersonioValidationError:
            return

    def _request(self, path: str, **kwargs: Any) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._credentials.access_token}",
            "X-Company-ID": str(self._credentials.company_id),
            "X-Personio-App-ID": self._app_id,
            "Accept": "application/json",
        }
        if self._partner_id:
            headers["X-Personio-Partner-ID"] = self._partner_id
        url = self._base_url + path
        try:
            response = self._session.post(url, headers=headers, timeout=self._timeout, allow_redirects=False, **kwargs)
        except requests.ConnectTimeout as exc:
            raise PersonioTimeout(f"connecting to Personio timed out (POST {path})", maybe_delivered=False) from exc
        except requests.Timeout as exc:
            # A read timeout: the request was sent and may have been processed.
            raise PersonioTimeout(f"Personio did not answer in time (POST {path})", maybe_delivered=True) from exc
        except requests.ConnectionError as exc:
            raise PersonioTransportError(
                f"could not reach Personio (POST {path}): {type(exc).__name__}",
                maybe_delivered=_maybe_delivered(exc),
            ) from exc
        except requests.RequestException as exc:
            raise PersonioTransportError(f"request to Personio failed (POST {path}): {type(exc).__name__}", maybe_delivered=True) from exc
        log.debug("personio POST %s -> %s", path, response.status_code)
        if response.status_code >= 400 or response.status_code < 200 or 300 <= response.status_code < 400:
            raise PersonioAPIError.from_response(response, path)
        return response


def _maybe_delivered(exc: requests.ConnectionError) -> bool:
    """Whether a connection error could have happened after Personio got the request.

    Refused connections and failed name resolution happen before anything is sent; a
    reset or a dropped connection afterwards may hide a processed request.
    """
    text = repr(exc.args[0]) if exc.args else repr(exc)
    before_send = ("NewConnectionError", "NameResolutionError", "Connection refused", "Failed to establish")
    return not any(marker in text for marker in before_send)
