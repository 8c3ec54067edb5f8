"""dispatch index carries the id: a company's next due uploads come straight from the index

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Dispatch takes a company's due uploads ``ORDER BY next_attempt_at, id LIMIT n``. With the id
missing from ``ix_uploads_dispatch``, PostgreSQL sorted every due upload of the company that
shares the first one's ``next_attempt_at`` (a bulk-queued backlog: all of them), reading each
row from the table, on every dispatch. With the id as the last column the order is the index's
and the scan stops after ``n`` entries. (SQLite appends the rowid to every index already.)
"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_index('ix_uploads_dispatch', table_name='uploads')
    op.create_index('ix_uploads_dispatch', 'uploads', ['state', 'connection_id', 'priority', 'next_attempt_at', 'id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_uploads_dispatch', table_name='uploads')
    op.create_index('ix_uploads_dispatch', 'uploads', ['state', 'connection_id', 'priority', 'next_attempt_at'], unique=False)
