"""The back-channel logout body: exactly one logout_token in a URL-encoded form."""

from __future__ import annotations

import pytest

from gateway.browser.oidc import TokenInvalid
from gateway.routes.logout import logout_token

FORM = "application/x-www-form-urlencoded"


def test_the_single_logout_token_is_taken() -> None:
    """A form with one logout_token (and a charset parameter on its type) yields the token."""
    assert logout_token(FORM + "; charset=UTF-8", b"logout_token=eyJ.a.b") == "eyJ.a.b"


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/json", b'{"logout_token": "x"}', "content_type"),
        (FORM, b"logout_token=a&logout_token=b", "form"),
        (FORM, b"other=1", "form"),
        (FORM, b"logout_token=\xff", "form"),
        (FORM, b"&".join(b"f%d=1" % n for n in range(9)), "form"),
        (FORM, b"no-equals-sign", "form"),
    ],
)
def test_other_bodies_are_invalid_tokens(content_type: str, body: bytes, reason: str) -> None:
    """Another type, a repeated or missing token, non-ASCII or too many fields are refused."""
    with pytest.raises(TokenInvalid) as caught:
        logout_token(content_type, body)
    assert caught.value.reason == reason
