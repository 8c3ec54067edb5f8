"""Personio stand-in: recruiting API, jobs feed and an admin API, in one process.

Like stripe-mock for Stripe: the demo, the integration tests and the
benchmarks point the worker at it instead of ``https://api.personio.de``.

    from sandbox import start_sandbox, load_demo_config

    server = start_sandbox(load_demo_config())
    ...  # PERSONIO_API_URL=server.url, PERSONIO_FEED_URL=server.feed_url_template
    server.stop()
"""

from __future__ import annotations

from sandbox.cli import main
from sandbox.config import (
    CompanyConfig,
    ConfigError,
    JobConfig,
    SandboxConfig,
    load_config,
    load_demo_config,
)
from sandbox.server import SandboxServer, start_sandbox
from sandbox.state import ApplicationRecord, DocumentRecord, SandboxState

__all__ = [
    "ApplicationRecord",
    "CompanyConfig",
    "ConfigError",
    "DocumentRecord",
    "JobConfig",
    "SandboxConfig",
    "SandboxServer",
    "SandboxState",
    "load_config",
    "load_demo_config",
    "main",
    "start_sandbox",
]
