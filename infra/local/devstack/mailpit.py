"""Mailpit: the dev stack's mail catcher, so Keycloak's mails can be read in a browser.

Keycloak sends verification, reset-password and invitation mails to Mailpit's SMTP port; the web
inbox and the HTTP API (``/api/v1/messages``) show them. ``scripts/bootstrap.sh`` builds the
pinned binary into ``.cache/bin``. Nothing leaves the machine: Mailpit delivers nowhere, and its
messages live in a temporary database that goes away when it stops.
"""

from __future__ import annotations

import os

from devstack.paths import CACHE
from devstack.procs import Service, StackError, http_ok, port_open, start, wait_until

HOST = "127.0.0.1"
HTTP_PORT = 8025
SMTP_PORT = 1025
BINARY = CACHE / "bin" / "mailpit"


def smtp_port() -> int:
    """The SMTP port Mailpit listens on and Keycloak sends to (MRO_MAILPIT_SMTP_PORT)."""
    return int(os.environ.get("MRO_MAILPIT_SMTP_PORT", SMTP_PORT))


def http_port() -> int:
    """The port of the web inbox and the HTTP API (MRO_MAILPIT_PORT)."""
    return int(os.environ.get("MRO_MAILPIT_PORT", HTTP_PORT))


def answers(url: str) -> bool:
    """True when a Mailpit serves its HTTP API at url."""
    return http_ok(f"{url}/api/v1/info")


def ensure_mailpit(port: int | None = None, smtp: int | None = None) -> Service:
    """Reuse a Mailpit answering on port, else start .cache/bin/mailpit there and on smtp.

    Raises StackError when the binary is missing (run scripts/bootstrap.sh, which needs Go),
    a port is taken by something else, or Mailpit does not answer within 15 seconds.
    """
    port = http_port() if port is None else port
    smtp = smtp_port() if smtp is None else smtp
    url = f"http://{HOST}:{port}"
    if answers(url):
        return Service(name="mailpit", url=url)
    for taken in (port, smtp):
        if port_open(HOST, taken):
            raise StackError(f"port {taken} for mailpit is taken by something else")
    if not BINARY.is_file():
        raise StackError("mailpit not found in .cache/bin: run scripts/bootstrap.sh (needs Go)")
    argv = [
        str(BINARY),
        "--listen",
        f"{HOST}:{port}",
        "--smtp",
        f"{HOST}:{smtp}",
        "--disable-version-check",
    ]
    service = start("mailpit", argv, url=url)
    wait_until(service, lambda: answers(url), timeout=15)
    return service
