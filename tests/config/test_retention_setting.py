"""PERSONIO_SYNC_RETENTION_DAYS: days a finished upload keeps its candidate data (default 30)."""

from __future__ import annotations

import pytest

from config import ConfigError, load_settings


def test_the_default_is_30_days_and_0_means_right_after_the_outcome() -> None:
    assert load_settings({}).retention_days == 30
    assert load_settings({"PERSONIO_SYNC_RETENTION_DAYS": "0"}).retention_days == 0
    assert load_settings({"PERSONIO_SYNC_RETENTION_DAYS": "3650"}).retention_days == 3650


@pytest.mark.parametrize(("raw", "expected"), [("-1", "must be at least 0"), ("3651", "must be at most 3650"), ("30d", "is not a whole number")])
def test_a_bad_value_names_the_variable_and_what_is_expected(raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"PERSONIO_SYNC_RETENTION_DAYS": raw})

    assert any(problem.startswith("PERSONIO_SYNC_RETENTION_DAYS=") and expected in problem for problem in error.value.problems)
