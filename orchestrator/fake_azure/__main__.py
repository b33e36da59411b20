"""``mro-fake-azure``: run the local Azure OpenAI server (loopback, port 8002 by default)."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Sequence
from typing import Any

import uvicorn

from orchestrator.fake_azure.app import create_app
from orchestrator.fake_azure.settings import FakeAzureSettings


def parse_settings(argv: Sequence[str] | None = None) -> FakeAzureSettings:
    """Settings from the environment (``MRO_FAKE_AZURE_*``) overridden by the command line.

    Exits with a usage error when the control API would be served beyond loopback.
    """
    parser = argparse.ArgumentParser(
        prog="mro-fake-azure",
        description="Local server speaking the Azure OpenAI chat completions API.",
    )
    parser.add_argument("--host", help="bind address (MRO_FAKE_AZURE_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (MRO_FAKE_AZURE_PORT, default 8002)")
    parser.add_argument(
        "--chunk-delay", type=float, help="seconds between streamed chunks (default 0)"
    )
    parser.add_argument("--log-level", help="uvicorn log level (default info)")
    parser.add_argument(
        "--no-control",
        action="store_true",
        help="disable the /_control API (MRO_FAKE_AZURE_CONTROL=false)",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("chunk_delay_seconds", args.chunk_delay),
            ("log_level", args.log_level),
        )
        if value is not None
    }
    if args.no_control:
        overrides["control"] = False
    settings = FakeAzureSettings(**overrides)
    if settings.control and not _is_loopback(settings.host):
        parser.error("the /_control API is served on loopback only: add --no-control")
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted."""
    settings = parse_settings(argv)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws="none",
        lifespan="off",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    main()
