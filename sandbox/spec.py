"""Personio's OpenAPI description: where it lives, how it is loaded, and the sandbox's self-check.

``load_spec`` is the one loader of the spec in the project: the sandbox's
optional self-check (``SpecGuard``) and the test helpers in ``tests/openapi.py``
both use it. openapi-core and PyYAML are test dependencies, so they are
imported only when the spec is actually loaded.

The spec file ships with the package (``sandbox/data/``, an unchanged copy of
the shared one); ``$PERSONIO_OPENAPI_SPEC`` can point elsewhere. One deliberate
fix is made in memory, the file itself is never edited: the enum of
``uploaded_document.extension`` says ``ptt`` where Personio means ``ppt``, so
``ppt`` is added and a correct ``.ppt`` upload answer is not reported.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openapi_core import OpenAPI

logger = logging.getLogger("sandbox")

SPEC_ENV = "PERSONIO_OPENAPI_SPEC"
VENDORED_SPEC = Path(__file__).resolve().parent / "data" / "personio-recruiting-api.yaml"
# The server the spec declares for the recruiting API.
API_ORIGIN = "https://api.personio.de"


def spec_path() -> Path:
    """Where the spec lives: ``$PERSONIO_OPENAPI_SPEC`` if set, else the copy in the package."""
    env = os.environ.get(SPEC_ENV)
    return Path(env) if env else VENDORED_SPEC


@lru_cache(maxsize=1)
def load_spec() -> OpenAPI:
    """Parse the spec once per process (with the in-memory ``ppt`` fix)."""
    import yaml
    from openapi_core import OpenAPI

    path = spec_path()
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    extension = spec["components"]["schemas"]["uploaded_document"]["properties"]["extension"]
    if "ppt" not in extension["enum"]:
        extension["enum"].append("ppt")
    return OpenAPI.from_dict(spec, base_uri=path.resolve().as_uri())


class SpecGuard:
    """Optional self-check of API answers against Personio's OpenAPI spec.

    Needs openapi-core (a test dependency), imported lazily; when it or the
    spec is missing the guard logs once and lets every answer through.
    """

    def __init__(self) -> None:
        self._openapi: Any = None
        self._lock = threading.Lock()
        self._unavailable = False

    def _load(self) -> Any:
        with self._lock:
            if self._openapi is None and not self._unavailable:
                try:
                    self._openapi = load_spec()
                except Exception:  # noqa: BLE001 - any failure just disables the guard
                    logger.warning("OpenAPI self-validation disabled", exc_info=True)
                    self._unavailable = True
            return self._openapi

    def violations(
        self,
        method: str,
        path: str,
        request_headers: dict[str, str],
        request_body: bytes,
        status: int,
        response_headers: dict[str, str],
        response_body: bytes,
    ) -> list[str]:
        openapi = self._load()
        if openapi is None:
            return []
        import requests
        from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

        prepared = requests.Request(
            method, API_ORIGIN + path, headers=request_headers, data=request_body
        ).prepare()
        response = requests.Response()
        response.status_code = status
        response._content = response_body
        response.headers.update(response_headers)
        errors = openapi.iter_response_errors(
            RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response)
        )
        return [f"{type(e).__name__}: {e}" for e in errors]
