"""Keycloak admin answers as gateway errors; Keycloak's own text never reaches a client.

Every failure is a gateway error, never an httpx one::

    DependencyUnavailable  Keycloak unreachable, slow, 5xx, an unexpected answer, or it refuses
                           the gateway's own credentials (code keycloak_unavailable or
                           keycloak_misconfigured)
    NotFound               no such user (user_not_found) or role (role_not_found)
    Conflict               username or email already taken (user_exists)
    BadRequest             Keycloak's user profile refused a value (keycloak_rejected)
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from gateway.errors import BadRequest, Conflict, DependencyUnavailable, NotFound

__all__ = ["KEYCLOAK_MISCONFIGURED", "KEYCLOAK_UNAVAILABLE", "check", "parse", "unavailable"]

logger = logging.getLogger(__name__)

KEYCLOAK_UNAVAILABLE: Final = "keycloak_unavailable"
KEYCLOAK_MISCONFIGURED: Final = "keycloak_misconfigured"

T = TypeVar("T")


def unavailable(detail: str, code: str = KEYCLOAK_UNAVAILABLE) -> DependencyUnavailable:
    """The error for a Keycloak that cannot serve the gateway (code says whose fault)."""
    return DependencyUnavailable(detail, code=code)


def parse(response: httpx.Response, adapter: TypeAdapter[T]) -> T:
    """The answer's body as adapter's type. Raises DependencyUnavailable when it is not one."""
    try:
        return adapter.validate_json(response.content)
    except ValidationError:
        raise unavailable("The identity provider answered something unexpected.") from None


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def check(response: httpx.Response) -> None:
    """Raise the gateway error for a failed admin call; Keycloak's own text is never shown."""
    status = response.status_code
    if status < 400:
        return
    if status == 404:
        raise NotFound("No such user.", code="user_not_found")
    if status == 409:
        what = "email" if "email" in str(_body(response).get("errorMessage")) else "username"
        raise Conflict(f"A user with this {what} already exists.", code="user_exists")
    if status == 400:
        field = str(_body(response).get("field", ""))
        # Only a profile attribute's name is echoed, never Keycloak's message or the value.
        named = re.fullmatch(r"[A-Za-z_]{1,40}", field)
        detail = f"The identity provider refused the value of {field}." if named else ""
        raise BadRequest(
            detail or "The identity provider refused the change.", code="keycloak_rejected"
        )
    if status in (401, 403):
        logger.warning("keycloak refused the gateway's admin call", extra={"status": status})
        raise unavailable("User administration is not permitted.", KEYCLOAK_MISCONFIGURED)
    logger.warning("keycloak admin call failed", extra={"status": status})
    raise unavailable("The identity provider failed.")
