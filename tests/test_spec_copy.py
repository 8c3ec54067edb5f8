"""The vendored copy of Personio's OpenAPI description is the shared file, unchanged."""

from __future__ import annotations

import pytest

from tests.openapi import SHARED_SPEC, VENDORED_SPEC


def test_vendored_spec_matches_the_shared_one() -> None:
    if not SHARED_SPEC.exists():
        pytest.skip("shared/ is not beside this clone; the vendored copy is used")
    assert VENDORED_SPEC.read_bytes() == SHARED_SPEC.read_bytes()
