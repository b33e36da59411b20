"""Domain errors of the orchestrator, each with a stable machine code.

Hierarchy::

    OrchestratorError
    ├── AuthenticationError        401 (missing, malformed or invalid gateway assertion)
    ├── PermissionDenied           403
    ├── NotFound                   404
    ├── Conflict                   409
    │   └── IdempotencyInProgress  409 (the first request with this key is still running)
    ├── AnswerWithdrawn            this request may no longer write its answer (a stream's error)
    │   ├── AnswerSuperseded       409 (a retry of the same request took the answer over)
    │   └── ConversationDeleted    410 (the conversation was deleted while it was answered)
    ├── InvalidRequest             422
    │   └── IdempotencyKeyReused   422 (same key, different request)
    ├── StorageUnavailable         503 (the database failed)
    └── KeysUnavailable            503 (the gateway's JWKS cannot be fetched and none is cached)

Errors of the model side (``orchestrator.llm.LLMError``) are separate; ``orchestrator.problems``
maps both families to RFC 9457 problem+json in one place.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of all orchestrator errors; ``code`` is stable, ``detail`` is safe to show clients."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code


class AuthenticationError(OrchestratorError):
    status = 401
    code = "invalid_assertion"
    title = "Authentication required"


class PermissionDenied(OrchestratorError):
    status = 403
    code = "permission_denied"
    title = "Permission denied"


class NotFound(OrchestratorError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(OrchestratorError):
    status = 409
    code = "conflict"
    title = "Conflict"


class IdempotencyInProgress(Conflict):
    """``retry_after``: seconds until the running attempt counts as abandoned, when known."""

    code = "idempotency_in_progress"
    title = "Request in progress"

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class AnswerWithdrawn(OrchestratorError):
    """The answer's row is no longer this request's to write; it stops and stores nothing."""

    status = 409
    code = "answer_withdrawn"
    title = "Answer withdrawn"


class AnswerSuperseded(AnswerWithdrawn):
    """The answer's row was taken over by a retry: this request must not write it any more."""

    code = "answer_superseded"
    title = "Answer superseded"


class ConversationDeleted(AnswerWithdrawn):
    """The conversation (with the answer's row) was deleted while the answer was written."""

    status = 410
    code = "conversation_deleted"
    title = "Conversation deleted"


class InvalidRequest(OrchestratorError):
    status = 422
    code = "invalid_request"
    title = "Invalid request"


class IdempotencyKeyReused(InvalidRequest):
    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class StorageUnavailable(OrchestratorError):
    status = 503
    code = "storage_unavailable"
    title = "Service unavailable"


class KeysUnavailable(OrchestratorError):
    status = 503
    code = "keys_unavailable"
    title = "Service unavailable"
