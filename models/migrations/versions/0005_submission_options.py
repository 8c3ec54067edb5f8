"""application phase and external posting id

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

A Personio phase as a connection default, per project link and per upload request; the
request's external posting id.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('connections') as batch_op:
        batch_op.add_column(sa.Column('phase', sa.JSON(), nullable=True))
    with op.batch_alter_table('project_links') as batch_op:
        batch_op.add_column(sa.Column('phase', sa.JSON(), nullable=True))
    with op.batch_alter_table('uploads') as batch_op:
        batch_op.add_column(sa.Column('phase', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('external_posting_id', sa.String(length=255), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('uploads') as batch_op:
        batch_op.drop_column('external_posting_id')
        batch_op.drop_column('phase')
    with op.batch_alter_table('project_links') as batch_op:
        batch_op.drop_column('phase')
    with op.batch_alter_table('connections') as batch_op:
        batch_op.drop_column('phase')
