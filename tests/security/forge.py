"""Forged and tampered tokens: what an attacker can build from public material and own keys.

The realm's public signing key is public (Keycloak publishes it), so every encoding of it an
HMAC key-confusion attack might try is built here. Nothing here holds a realm private key: a
token with a valid realm signature always comes from Keycloak itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import RSAKey

from tests.gateway.keys import b64, rs256_token

_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass(frozen=True)
class RealmKey:
    """The realm's RS256 signing key as Keycloak publishes it, in every common encoding."""

    kid: str
    jwk: Mapping[str, Any]
    pem: bytes
    der: bytes
    realm_public_key: str  # base64 DER, as ``GET /realms/mro`` shows it
    encryption_kid: str | None  # a published key that is not for signatures

    def encodings(self) -> dict[str, bytes]:
        """HMAC secrets a key-confusion attack would try."""
        return {
            "pem": self.pem,
            "pem-without-newline": self.pem.rstrip(b"\n"),
            "der": self.der,
            "der-base64": self.realm_public_key.encode(),
            "jwk-n": str(self.jwk["n"]).encode(),
            "jwk-n-bytes": unb64(str(self.jwk["n"])),
            "jwk-n.e": f"{self.jwk['n']}.{self.jwk['e']}".encode(),
            "jwk-json": json.dumps(
                {"kty": "RSA", "n": self.jwk["n"], "e": self.jwk["e"]}, separators=(",", ":")
            ).encode(),
        }


def realm_key(keycloak_url: str, realm: str = "mro") -> RealmKey:
    """Fetch the realm's published RS256 key (JWKS and realm info)."""
    base = f"{keycloak_url.rstrip('/')}/realms/{realm}"
    with httpx.Client(timeout=10) as http:
        keys = http.get(f"{base}/protocol/openid-connect/certs").json()["keys"]
        info = http.get(base).json()
    signing = next(k for k in keys if k.get("use") == "sig" and k.get("alg") == "RS256")
    encryption = next((k["kid"] for k in keys if k.get("use") == "enc"), None)
    public = RSAKey.import_key({"kty": "RSA", "n": signing["n"], "e": signing["e"]})
    pem = public.as_pem(private=False)
    der = public.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RealmKey(signing["kid"], signing, pem, der, info["public_key"], encryption)


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Header, claims and signature of a compact JWS."""
    head, body, signature = token.split(".")
    header: dict[str, Any] = json.loads(unb64(head))
    claims: dict[str, Any] = json.loads(unb64(body))
    return header, claims, unb64(signature)


def encode(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def hmac_token(
    alg: str, header: Mapping[str, Any], claims: Mapping[str, Any], secret: bytes
) -> str:
    """A token MACed with secret under alg (HS256/384/512), whatever the key is."""
    full = {**header, "alg": alg}
    head = b64(json.dumps(full).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), _HASHES[alg]).digest()
    return f"{head}.{body}.{b64(mac)}"


def flip_signature_byte(token: str) -> str:
    """token with one byte of its signature changed (the middle one, so padding bits do not
    hide the change)."""
    head, body, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{body}.{b64(bytes(raw))}"


def with_claims(token: str, **changes: Any) -> str:
    """token with claims changed and the original signature kept."""
    head, _, signature = token.split(".")
    _, claims, _ = split(token)
    claims.update(changes)
    return f"{head}.{b64(json.dumps(claims).encode())}.{signature}"


def own_signed(key: RSAKey, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """A token RS256-signed with an attacker's own key, with exactly header."""
    return rs256_token({"alg": "RS256", **header}, claims, key)
