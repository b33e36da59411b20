"""``mro-orchestrator``: serve the API (default), or ``migrate`` the database schema to head."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn
from pydantic import ValidationError

from orchestrator.api import create_app
from orchestrator.db import create_engine
from orchestrator.logs import configure_logging
from orchestrator.migrate import current_revision, upgrade
from orchestrator.settings import OrchestratorSettings


async def _migrate(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        return await current_revision(engine)
    finally:
        await engine.dispose()


def _serve(settings: OrchestratorSettings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mro-orchestrator", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve: run the API (default); migrate: upgrade the database schema and exit",
    )
    args = parser.parse_args(argv)
    try:
        settings = OrchestratorSettings()
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "migrate":
        revision = asyncio.run(_migrate(settings.database_url))
        print(f"database at revision {revision}")
        return 0
    _serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
