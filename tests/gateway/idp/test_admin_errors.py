"""Keycloak admin answers mapped to gateway errors without Keycloak's own text."""

from __future__ import annotations

import httpx
import pytest
from pydantic import TypeAdapter

from gateway.errors import BadRequest, Conflict, DependencyUnavailable, GatewayError, NotFound
from gateway.idp.admin_errors import (
    KEYCLOAK_MISCONFIGURED,
    KEYCLOAK_UNAVAILABLE,
    check,
    parse,
)


@pytest.mark.parametrize("status", [200, 201, 204, 302])
def test_answers_below_400_pass(status: int) -> None:
    """Success and redirects raise nothing."""
    check(httpx.Response(status))


@pytest.mark.parametrize(
    ("answer", "error", "code", "detail"),
    [
        (httpx.Response(404), NotFound, "user_not_found", "No such user."),
        (
            httpx.Response(409, json={"errorMessage": "User exists with same email"}),
            Conflict,
            "user_exists",
            "A user with this email already exists.",
        ),
        (
            httpx.Response(409, text="<html>"),
            Conflict,
            "user_exists",
            "A user with this username already exists.",
        ),
        (
            httpx.Response(400, json={"field": "x' OR 1=1"}),
            BadRequest,
            "keycloak_rejected",
            "The identity provider refused the change.",
        ),
        (
            httpx.Response(403, text="java.lang.SecurityException"),
            DependencyUnavailable,
            KEYCLOAK_MISCONFIGURED,
            "User administration is not permitted.",
        ),
        (
            httpx.Response(502, text="Bad Gateway"),
            DependencyUnavailable,
            KEYCLOAK_UNAVAILABLE,
            "The identity provider failed.",
        ),
    ],
)
def test_failed_answers_become_gateway_errors(
    answer: httpx.Response, error: type[GatewayError], code: str, detail: str
) -> None:
    """Each status maps to one error and code; a field name that is not a plain name is not
    echoed."""
    with pytest.raises(error) as caught:
        check(answer)
    assert (caught.value.code, caught.value.detail) == (code, detail)


def test_an_unexpected_body_is_keycloak_unavailable() -> None:
    """A body that does not fit the expected type is a dependency failure, not a 500."""
    with pytest.raises(DependencyUnavailable) as caught:
        parse(httpx.Response(200, json={"count": "many"}), TypeAdapter(int))
    assert caught.value.code == KEYCLOAK_UNAVAILABLE
    assert parse(httpx.Response(200, json=3), TypeAdapter(int)) == 3
