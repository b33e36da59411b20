"""``mro-gateway`` / ``python -m gateway``: serve the gateway with uvicorn."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.logging import configure_logging
from gateway.settings import GatewaySettings


def main() -> None:
    """Read the settings from the environment and serve until SIGINT or SIGTERM."""
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # the pipeline writes one access line per request
        server_header=False,
        # The pipeline decides which X-Forwarded-For to believe (settings.trusted_proxies).
        proxy_headers=False,
        lifespan="on",
        ws="none",  # the gateway serves no WebSockets
    )


if __name__ == "__main__":
    main()
