"""Ending every credential of a person whose standing changed in Keycloak.

One call, whatever told the gateway (its own user administration, a back-channel logout that
names only a subject, or an admin event read from Keycloak): ``Revoker.revoke(sub, reason)``

1. refuses the person's access tokens issued until now, on every replica
   (``RevocationStore.revoke_subject``; bearer tokens of every client and session);
2. ends their browser sessions here, so no refresh is tried for them (``SessionManager.end_all``);
3. forgets their standing, so their API keys are checked against Keycloak again on the next
   request (``OwnerStandings.forget``): a disabled or deleted owner's keys stop, a demoted owner's
   keys lose what the owner lost;
4. where asked (a reset credential), ends their sessions at Keycloak too, so refresh tokens held by
   other clients (a CLI, a phone) cannot mint new access tokens;
5. audits ``auth.revoked`` with the reason.

``standing_changed(sub)`` is the lighter step for a change that takes nothing away (a role
granted): only the standing is forgotten.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from gateway.audit.events import AuditEvent, AuditSink
from gateway.auth.revocation import RevocationStore
from gateway.auth.standing import OwnerStandings
from gateway.browser.sessions import SessionManager
from gateway.errors import GatewayError

__all__ = ["REVOKED", "Revoker"]

REVOKED: Final = "auth.revoked"


class Revoker:
    """Revokes a person's tokens, sessions and API-key standing at once (see module doc)."""

    def __init__(
        self,
        revocation: RevocationStore,
        sessions: SessionManager,
        standings: OwnerStandings,
        audit: AuditSink,
        end_keycloak_sessions: Callable[[str], Awaitable[None]],
    ) -> None:
        self._revocation = revocation
        self._sessions = sessions
        self._standings = standings
        self._audit = audit
        self._end_keycloak_sessions = end_keycloak_sessions

    async def revoke(
        self,
        subject: str,
        reason: str,
        *,
        at: float | None = None,
        actor: str | None = None,
        request_id: str | None = None,
        end_keycloak_sessions: bool = False,
    ) -> None:
        """End subject's credentials issued until ``at`` (default now).

        Raises DependencyUnavailable when Redis cannot record it, and the admin client's error
        when Keycloak's sessions were to be ended and could not be (audited as a failure). Every
        step is idempotent: a retry finishes what was left.
        """
        not_before = await self._revocation.revoke_subject(subject, at)
        ended = await self._sessions.end_all(sid=None, sub=subject)
        await self._standings.forget(subject)
        failure: GatewayError | None = None
        if end_keycloak_sessions:
            try:
                await self._end_keycloak_sessions(subject)
            except GatewayError as exc:
                failure = exc
        self._audit.emit(
            AuditEvent(
                action=REVOKED,
                outcome="success" if failure is None else "failure",
                actor=actor,
                target=subject,
                reason=reason,
                request_id=request_id,
                details={
                    "not_before": not_before,
                    "sessions_ended": ended,
                    "keycloak_sessions_ended": end_keycloak_sessions and failure is None,
                },
            )
        )
        if failure is not None:
            # The gateway refuses the person's tokens already; refresh tokens held by other
            # clients live on at Keycloak until this is done again.
            raise failure

    async def standing_changed(self, subject: str) -> None:
        """Forget subject's standing (a change that takes nothing away). Raises as ``revoke``."""
        await self._standings.forget(subject)
