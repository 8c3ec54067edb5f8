"""``python -m sandbox``: run the Personio stand-in in the foreground."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from typing import Any, NoReturn

from sandbox.config import (
    ConfigError,
    SandboxConfig,
    load_config,
    load_demo_config,
    parse_latency,
    parse_rate_limit,
)
from sandbox.server import SandboxServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run the Personio recruiting API / jobs feed stand-in in the foreground.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--config", help="JSON config file (default: bundled demo fixture)")
    parser.add_argument("--rate-limit", help="requests per window, e.g. 20/60s")
    parser.add_argument("--lockout", type=float, help="seconds of 429 after exceeding the limit")
    parser.add_argument("--latency", help="uniform delay per API answer in seconds, e.g. 0.05-0.2")
    parser.add_argument("--per-endpoint-budget", action="store_true", help="one budget per endpoint")
    parser.add_argument("--retry-after", action="store_true", help="send Retry-After on 429")
    parser.add_argument("--max-document-bytes", type=int)
    parser.add_argument("--validate-openapi", action="store_true", help="self-check answers")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    config = load_config(args.config) if args.config else load_demo_config()
    changes: dict[str, Any] = {}
    if args.rate_limit:
        changes["rate_limit"], changes["rate_window"] = parse_rate_limit(args.rate_limit)
    if args.lockout is not None:
        changes["lockout"] = args.lockout
    if args.latency:
        changes["latency"] = parse_latency(args.latency)
    if args.per_endpoint_budget:
        changes["shared_budget"] = False
    if args.retry_after:
        changes["send_retry_after"] = True
    if args.max_document_bytes is not None:
        changes["max_document_bytes"] = args.max_document_bytes
    if args.validate_openapi:
        changes["validate_against_openapi"] = True
    return config.with_settings(changes)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sandbox`` (also usable from the project CLI)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except (ConfigError, OSError, json.JSONDecodeError) as exc:
        print(f"sandbox: invalid configuration: {exc}", flush=True)
        return 2
    server = SandboxServer(config, args.host, args.port)
    _print_banner(server, config)
    if threading.current_thread() is threading.main_thread():
        # Let `kill`/subprocess.terminate() stop it as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    server.serve_forever()
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _print_banner(server: SandboxServer, config: SandboxConfig) -> None:
    lines = [
        f"Personio sandbox listening on {server.url}",
        f"  API base URL:       {server.url}",
        f"  Feed URL template:  {server.feed_url_template}",
        f"  Admin API:          {server.url}/_sandbox/",
        f"  Rate limit:         {config.rate_limit}/{config.rate_window:g}s per company "
        f"({'shared' if config.shared_budget else 'per endpoint'}), lockout {config.lockout:g}s",
        "  Credentials:",
    ]
    for company in config.companies:
        jobs = ", ".join(str(job.id) for job in company.jobs if job.published)
        lines.append(
            f"    company_id={company.company_id} access_token={company.access_token} "
            f"domain={company.domain} jobs=[{jobs}] channels={company.channel_ids}"
        )
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
