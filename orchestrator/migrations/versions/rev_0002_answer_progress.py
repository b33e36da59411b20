"""Answers written while they stream, and the classifier's token usage.

``messages.updated_at`` is the time of a row's last write (existing rows take their creation
time); the ``classification_*_tokens`` columns hold the routing call's usage; ``attempt`` counts
the takeovers of an answer (1 for every existing row), and each write of an answer is
conditional on it. ``attempt`` alone is NOT NULL: SQLite adds such a column only with a constant
default, and rebuilding the table instead would cascade deletes through its foreign keys.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_USAGE_COLUMNS = (
    "classification_prompt_tokens",
    "classification_completion_tokens",
    "classification_total_tokens",
)


def upgrade() -> None:
    for name in _USAGE_COLUMNS:
        op.add_column("messages", sa.Column(name, sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE messages SET updated_at = created_at")
    op.add_column(
        "messages",
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )


def downgrade() -> None:
    # An answer still being written has no status the older schema knows: it is cut.
    op.execute(
        "UPDATE messages SET status = CASE WHEN content = '' THEN 'failed' ELSE 'partial' END "
        "WHERE status = 'streaming'"
    )
    with op.batch_alter_table("messages", recreate="never") as batch:
        batch.drop_column("attempt")
        batch.drop_column("updated_at")
        for name in reversed(_USAGE_COLUMNS):
            batch.drop_column(name)
