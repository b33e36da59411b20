"""API keys: format, peppered hashing, and the X-API-Key authenticator on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.events import AuditEvent
from gateway.auth import api_key_store as store
from gateway.auth.api_keys import ApiKeyAuthenticator, Peppers, generate_key, parse_key
from gateway.db import create_engine, create_schema, session_factory
from gateway.errors import AuthenticationError, DependencyUnavailable
from gateway.identity import AuthMethod
from gateway.settings import GatewaySettings
from tests.gateway.keys import FakeClock

PEPPER = "pepper-one-for-tests"


@dataclass
class ListSink:
    """An audit sink that keeps what it is given."""

    events: list[AuditEvent] = field(default_factory=list)

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[tuple[str, str | None]]:
        return [(e.action, e.reason) for e in self.events]


@dataclass
class Db:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    statements: list[str]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    await create_schema(engine)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield Db(engine, session_factory(engine), statements)
    await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings(pepper: str = PEPPER, previous: tuple[str, ...] = ()) -> GatewaySettings:
    return GatewaySettings(
        api_key_pepper=SecretStr(pepper),
        api_key_previous_peppers=[SecretStr(p) for p in previous],
        api_key_cache_seconds=30,
    )


async def issue(db: Db, clock: FakeClock, pepper: str = PEPPER, **fields: Any) -> str:
    """Store a new key (valid for 30 days unless fields say otherwise); returns the token."""
    generated = generate_key()
    peppers = Peppers(pepper)
    now = datetime.fromtimestamp(clock(), UTC)
    values: dict[str, Any] = {
        "id": generated.key_id,
        "name": "planning sync",
        "owner_sub": "manager-1",
        "permissions": ["agents:read", "messages:create"],
        "roles": ["service"],
        "secret_hash": peppers.hash(generated.secret),
        "pepper_version": peppers.current_version,
        "created_at": now,
        "expires_at": now + timedelta(days=30),
        **fields,
    }
    async with db.sessions() as session:
        await store.save(session, store.ApiKey(**values))
    return generated.token


def header(token: str) -> dict[str, str]:
    return {"x-api-key": token}


async def refused(auth: ApiKeyAuthenticator, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(header(token))
    return info.value


def test_generated_keys_have_the_documented_shape() -> None:
    """mro_<16 base62>_<43 base62>, parseable back into the same parts, never repeating."""
    generated = generate_key()
    assert generated.token.startswith("mro_")
    assert len(generated.key_id) == 16
    assert len(generated.secret) == 43
    assert parse_key(generated.token) == parse_key(f"  {generated.token} ")
    parsed = parse_key(generated.token)
    assert parsed is not None
    assert (parsed.key_id, parsed.secret) == (generated.key_id, generated.secret)
    assert len({generate_key().token for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "value",
    [
        "",
        "mro_",
        "mro_abc_def",
        "xyz_ABCDEFGHIJKL_" + "a" * 43,
        "mro_ABCDEFGHIJKL_" + "a" * 42,
        "mro_ABCDEFGHIJ-L_" + "a" * 43,
        "mro_ABCDEFGHIJKL_" + "a" * 43 + "_x",
    ],
)
def test_malformed_keys_do_not_parse(value: str) -> None:
    """Wrong prefix, lengths or alphabet are not keys."""
    assert parse_key(value) is None


def test_peppers_hash_and_verify() -> None:
    """The current pepper verifies True, a previous one False, anything else None."""
    old, new = Peppers("old-pepper"), Peppers("new-pepper", ["old-pepper"])
    digest = old.hash("secret")
    assert new.verify("secret", digest) is False
    assert new.verify("secret", new.hash("secret")) is True
    assert new.verify("other", digest) is None
    assert Peppers("third").verify("secret", digest) is None
    assert old.current_version != new.current_version
    assert "old-pepper" not in old.current_version


def test_empty_pepper_is_refused() -> None:
    """A key store without a pepper is a configuration error."""
    with pytest.raises(ValueError, match="pepper"):
        Peppers("")


async def test_valid_key_gives_a_service_identity(db: Db, clock: FakeClock) -> None:
    """A stored key authenticates as apikey:<id> with its roles and permissions as scopes."""
    token = await issue(db, clock)
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    identity = await auth.authenticate(header(token))
    key_id = token.split("_")[1]
    assert identity is not None
    assert identity.subject == f"apikey:{key_id}"
    assert identity.method is AuthMethod.API_KEY
    assert identity.api_key_id == key_id
    assert identity.roles == {"service"}
    assert identity.scopes == frozenset({"agents:read", "messages:create"})
    assert identity.name == "planning sync"
    assert identity.expires_at == pytest.approx(clock() + 30 * 86400)


async def test_no_header_is_no_credential(db: Db, clock: FakeClock) -> None:
    """Without X-API-Key or a bearer key the authenticator steps aside."""
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    assert await auth.authenticate({"authorization": "Bearer x"}) is None
    assert await auth.authenticate({"authorization": "Basic mro_x"}) is None


async def test_a_key_sent_as_a_bearer_token_authenticates(db: Db, clock: FakeClock) -> None:
    """``Authorization: Bearer mro_…``, as OpenAI-style clients send keys, is the same key."""
    token = await issue(db, clock)
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    identity = await auth.authenticate({"authorization": f"Bearer {token}"})
    assert identity is not None
    assert identity.api_key_id == token.split("_")[1]
    with pytest.raises(AuthenticationError) as refused:
        await auth.authenticate({"authorization": f"Bearer {token[:-1]}x"})
    assert refused.value.code == "invalid_api_key"


async def test_every_bad_key_gets_the_same_answer(db: Db, clock: FakeClock) -> None:
    """Unknown, wrong secret, expired, revoked, rotated out and malformed look alike to clients."""
    sink = ListSink()
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock, sink)
    now = datetime.fromtimestamp(clock(), UTC)
    good = await issue(db, clock)
    expired = await issue(db, clock, expires_at=now - timedelta(seconds=1))
    revoked = await issue(db, clock, revoked_at=now)
    rotated = await issue(db, clock, grace_until=now)
    cases = {
        "unknown": generate_key().token,
        "wrong_secret": good[:-3] + ("abc" if not good.endswith("abc") else "abd"),
        "expired": expired,
        "revoked": revoked,
        "rotated": rotated,
        "malformed": "mro_short",
    }
    errors = [await refused(auth, token) for token in cases.values()]
    assert {(e.code, e.detail, e.status) for e in errors} == {
        ("invalid_api_key", "The API key is not valid", 401)
    }
    assert [reason for action, reason in sink.actions()] == list(cases)
    assert all(a == "api_key.rejected" for a, _ in sink.actions())
    assert all(good.split("_")[2] not in str(e.to_json()) for e in sink.events)


class CountingPeppers(Peppers):
    """Peppers that count verifications (the hashing work a lookup costs)."""

    verifications = 0

    def verify(self, secret: str, stored_hash: str) -> bool | None:
        self.verifications += 1
        return super().verify(secret, stored_hash)


async def test_unknown_id_costs_the_same_hashing(db: Db, clock: FakeClock) -> None:
    """An unknown id still computes and compares the HMAC (against a dummy hash)."""
    peppers = CountingPeppers(PEPPER, ["older"])
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock, peppers=peppers)
    await refused(auth, generate_key().token)
    assert peppers.verifications == 1
    await refused(auth, await issue(db, clock, revoked_at=datetime.now(UTC)))
    assert peppers.verifications == 2


async def test_previous_pepper_verifies_and_is_rehashed_on_flush(db: Db, clock: FakeClock) -> None:
    """After a pepper rotation old keys work, and the flush moves them to the new pepper."""
    token = await issue(db, clock, pepper="old-pepper")
    rotated = ApiKeyAuthenticator(db.sessions, settings("new-pepper", ("old-pepper",)), clock)
    assert await rotated.authenticate(header(token)) is not None
    await rotated.flush_last_used()
    async with db.sessions() as session:
        row = await store.get_key(session, token.split("_")[1])
    assert row is not None
    assert row.pepper_version == Peppers("new-pepper").current_version
    only_new = ApiKeyAuthenticator(db.sessions, settings("new-pepper"), clock)
    assert await only_new.authenticate(header(token)) is not None


async def test_dropped_pepper_no_longer_verifies(db: Db, clock: FakeClock) -> None:
    """A key hashed with a pepper that is no longer configured is refused."""
    token = await issue(db, clock, pepper="old-pepper")
    auth = ApiKeyAuthenticator(db.sessions, settings("new-pepper"), clock)
    assert (await refused(auth, token)).code == "invalid_api_key"


async def test_last_use_is_written_in_batches(db: Db, clock: FakeClock) -> None:
    """Many requests cause no UPDATE until the flush, which writes the latest time once."""
    token = await issue(db, clock)
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    db.statements.clear()
    for _ in range(50):
        await auth.authenticate(header(token))
        clock.advance(1)
    assert "UPDATE" not in db.statements
    assert db.statements.count("SELECT") == 2  # first request, then after the 30 s cache
    await auth.flush_last_used()
    assert db.statements.count("UPDATE") == 1
    async with db.sessions() as session:
        row = await store.get_key(session, token.split("_")[1])
    assert row is not None
    assert store.timestamp(row.last_used_at) == clock() - 1
    db.statements.clear()
    await auth.flush_last_used()
    assert db.statements == []


async def test_use_is_audited_once_per_flush_window(db: Db, clock: FakeClock) -> None:
    """api_key.used is emitted on a key's first use after each flush, not per request."""
    sink = ListSink()
    token = await issue(db, clock)
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock, sink)
    for _ in range(10):
        await auth.authenticate(header(token))
    assert sink.actions() == [("api_key.used", None)]
    await auth.flush_last_used()
    await auth.authenticate(header(token))
    assert sink.actions() == [("api_key.used", None)] * 2
    assert sink.events[0].actor == f"apikey:{token.split('_')[1]}"


async def test_revocation_takes_effect_after_the_cache_time(db: Db, clock: FakeClock) -> None:
    """A key revoked in the database works until its cache entry ages out (30 s)."""
    token = await issue(db, clock)
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    await auth.authenticate(header(token))
    async with db.sessions() as session:
        row = await store.get_key(session, token.split("_")[1])
        assert row is not None
        row.revoked_at = datetime.now(UTC)
        await store.save(session, row)
    clock.advance(29)
    assert await auth.authenticate(header(token)) is not None
    clock.advance(1)
    await refused(auth, token)


async def test_invalidate_drops_the_cached_key_at_once(db: Db, clock: FakeClock) -> None:
    """invalidate(key_id) makes the next request read the database again."""
    token = await issue(db, clock)
    key_id = token.split("_")[1]
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    await auth.authenticate(header(token))
    async with db.sessions() as session:
        row = await store.get_key(session, key_id)
        assert row is not None
        row.revoked_at = datetime.now(UTC)
        await store.save(session, row)
    auth.invalidate(key_id)
    await refused(auth, token)


async def test_cache_never_accepts_a_wrong_secret(db: Db, clock: FakeClock) -> None:
    """A cached key id with another secret is checked against the database and refused."""
    token = await issue(db, clock)
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    await auth.authenticate(header(token))
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    await refused(auth, forged)
    assert await auth.authenticate(header(token)) is not None


async def test_cached_key_stops_at_its_expiry(db: Db, clock: FakeClock) -> None:
    """The cache never outlives the key's own expiry."""
    now = datetime.fromtimestamp(clock(), UTC)
    token = await issue(db, clock, expires_at=now + timedelta(seconds=10))
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    await auth.authenticate(header(token))
    clock.advance(10)
    await refused(auth, token)


async def test_rotated_key_works_until_its_grace_ends(db: Db, clock: FakeClock) -> None:
    """A key with grace_until set keeps working until then and stops from that moment."""
    now = datetime.fromtimestamp(clock(), UTC)
    token = await issue(db, clock, grace_until=now + timedelta(hours=24), replaced_by="x" * 16)
    auth = ApiKeyAuthenticator(db.sessions, settings(), clock)
    clock.advance(24 * 3600 - 1)
    assert await auth.authenticate(header(token)) is not None
    clock.advance(1)
    await refused(auth, token)


async def test_database_down_is_a_dependency_error(tmp_path: Path, clock: FakeClock) -> None:
    """When the key store cannot be read, the answer is 503, not 401."""
    (tmp_path / "gateway.db").mkdir()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    auth = ApiKeyAuthenticator(session_factory(engine), settings(), clock)
    with pytest.raises(DependencyUnavailable):
        await auth.authenticate(header(generate_key().token))
    await engine.dispose()
