"""Alembic migrations of the orchestrator's schema (run with ``mro-orchestrator migrate``)."""
