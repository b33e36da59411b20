"""What the gateway needs before the benchmark starts it, without Keycloak.

* An RSA signing key, and the OIDC discovery document and JWKS a static file server publishes
  under ``<dir>/realms/<realm>/`` (the gateway only ever reads those two documents).
* Access tokens shaped like Keycloak's (``iss``, ``aud``, ``typ: Bearer``, realm roles).
* A copy of the packaged policy whose rate limits never refuse, with a proxied ``GET /json``
  route (the upstream's route) and optionally many extra routes.
* API keys written straight into the gateway's SQLite database.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.auth import api_key_store as store
from gateway.auth.api_keys import Peppers, generate_key
from gateway.auth.standing import Standing, stored_standing
from gateway.db import create_engine, create_schema, session_factory

REALM = "mro"
AUDIENCE = "mro-gateway"
KID = "bench-rs256"
HUGE_LIMIT = "100000000/minute"
KEY_OWNER = "bench-manager"
KEY_OWNER_ROLES = ("manager", "engineer", "technician")
BENCH_ROUTE = """
[[routes]]
methods = ["GET"]
path = "/json"
permission = "agents:read"
upstream = "orchestrator"
"""
EXTRA_ROUTE = """
[[routes]]
methods = ["GET", "POST"]
path = "/api/bench/r{n}/items/{{id}}"
permission = "conversations:read:own"
upstream = "orchestrator"
"""


def issuer(base_url: str) -> str:
    return f"{base_url}/realms/{REALM}"


def write_oidc(directory: Path, base_url: str) -> RSAKey:
    """A new signing key; its discovery document and JWKS as files under ``directory``."""
    key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"})
    realm = directory / "realms" / REALM
    (realm / ".well-known").mkdir(parents=True, exist_ok=True)
    discovery = {"issuer": issuer(base_url), "jwks_uri": f"{issuer(base_url)}/certs"}
    (realm / ".well-known" / "openid-configuration").write_text(json.dumps(discovery))
    (realm / "certs").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return key


def access_token(key: RSAKey, base_url: str, subject: str, roles: list[str]) -> str:
    """An RS256 access token as Keycloak issues it, valid for a day."""
    now = int(time.time())
    claims = {
        "iss": issuer(base_url),
        "aud": [AUDIENCE, "account"],
        "sub": subject,
        "typ": "Bearer",
        "azp": AUDIENCE,
        "iat": now,
        "exp": now + 86_400,
        "jti": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "preferred_username": subject,
        "realm_access": {"roles": roles},
        "scope": "openid profile email",
    }
    return jwt.encode({"alg": "RS256", "kid": KID, "typ": "JWT"}, claims, key)


def write_policy(packaged: Path, target: Path, extra_routes: int) -> None:
    """The packaged policy with limits that never refuse, the bench route and extra routes."""
    text = re.sub(r'"\d+/(second|minute|hour|day)"', f'"{HUGE_LIMIT}"', packaged.read_text())
    head, limits = text.split("[rate_limits]", 1)
    routes = BENCH_ROUTE + "".join(EXTRA_ROUTE.format(n=n) for n in range(extra_routes))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(head + routes + "\n[rate_limits]" + limits)


async def _seed(database_url: str, pepper: str, count: int) -> str:
    engine = create_engine(database_url)
    try:
        await create_schema(engine)
        peppers = Peppers(pepper)
        now = datetime.now(UTC)
        keys, token = [], ""
        for index in range(count):
            generated = generate_key()
            token = token or generated.token
            keys.append(
                store.ApiKey(
                    id=generated.key_id,
                    name=f"bench key {index}",
                    owner_sub=KEY_OWNER,
                    permissions=["agents:read", "conversations:read:own"],
                    roles=["service"],
                    secret_hash=peppers.hash(generated.secret),
                    pepper_version=peppers.current_version,
                    created_at=now,
                    expires_at=now + timedelta(days=1),
                )
            )
        async with session_factory(engine)() as session:
            await store.save(session, *keys)
        return token
    finally:
        await engine.dispose()


def seed_owner_standing(redis_port: int) -> None:
    """Tell the gateway, through its Redis, what Keycloak would say of the keys' owner (enabled,
    a manager), fresh for a day: the bench has no Keycloak admin API to ask."""
    standing = Standing(exists=True, enabled=True, roles=frozenset(KEY_OWNER_ROLES))
    value = stored_standing(time.time() + 86_400, standing)
    client = redis.Redis(host="127.0.0.1", port=redis_port)
    try:
        client.set(f"mro:standing:{KEY_OWNER}", value)
    finally:
        client.close()


def seed_api_keys(database_url: str, pepper: str, count: int) -> str:
    """Create the schema and ``count`` API keys; the token of the first one."""
    return asyncio.run(_seed(database_url, pepper, count))
