"""docker-compose.yml stays valid and keeps the production guarantees (no Docker needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_has_the_production_services(compose: dict) -> None:
    assert set(compose["services"]) == {"redis", "postgres", "migrate", "worker", "beat", "flower", "metrics"}
    assert set(compose["volumes"]) == {"redis-data", "postgres-data"}


def test_redis_persists_and_never_evicts(compose: dict) -> None:
    command = compose["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2]))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert "redis-data:/data" in compose["services"]["redis"]["volumes"]


def test_app_services_wait_for_migration_and_healthy_backends(compose: dict) -> None:
    for name in ("worker", "beat", "flower"):
        service = compose["services"][name]
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert service["command"][0] == name
    assert compose["services"]["migrate"]["command"] == ["migrate"]
    assert compose["services"]["migrate"]["restart"] == "no"


def test_long_running_services_are_restarted_and_the_migration_is_not(compose: dict) -> None:
    for name in ("worker", "beat", "flower", "redis", "postgres"):
        assert compose["services"][name].get("restart") == "unless-stopped", f"{name} must come back after a crash"
    assert compose["services"]["migrate"]["restart"] == "no"  # a one-shot job: its exit is the result


def test_commands_exist_in_the_cli(compose: dict) -> None:
    from cli.main import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name, service in compose["services"].items():
        if name in ("redis", "postgres"):
            continue
        assert service["command"][0] in commands


def test_environment_names_real_settings_and_no_literal_secrets(compose: dict) -> None:
    settings_source = (ROOT / "config" / "settings.py").read_text()
    for name in ("worker", "beat", "flower", "migrate"):
        environment = compose["services"][name]["environment"]
        for key, value in environment.items():
            assert key in settings_source, f"{key} is not a setting"
            if "KEY" in key or "PASSWORD" in key or "AUTH" in key:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{key} must come from the environment"
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert environment["DATABASE_URL"].startswith("postgresql://")


def test_flower_is_password_protected_and_not_public(compose: dict) -> None:
    flower = compose["services"]["flower"]
    assert "PERSONIO_SYNC_FLOWER_BASIC_AUTH" in flower["environment"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def test_app_services_are_health_checked_with_the_health_command(compose: dict) -> None:
    for name, level in (("worker", "--readiness"), ("beat", "--readiness"), ("flower", "--liveness")):
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL" and test[1].startswith(f"personio-sync health {level}"), name
        # `health` exits 2 when down; Docker reserves 2, so it is mapped to 1.
        assert test[1].endswith("|| exit 1")


def test_metrics_are_served_with_credentials_and_not_public(compose: dict) -> None:
    metrics = compose["services"]["metrics"]
    assert metrics["command"] == ["metrics"]
    assert metrics["environment"]["PERSONIO_SYNC_METRICS_BASIC_AUTH"].startswith("${METRICS_BASIC_AUTH:?")
    assert all(port.startswith("127.0.0.1:") for port in metrics["ports"])
    assert metrics["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[(.*?)\]", pyproject).group(1)  # type: ignore[union-attr]
    for package in re.findall(r'"(\w+)\*"', packages):
        assert f"COPY {package} {package}" in dockerfile, f"Dockerfile misses {package}/"
