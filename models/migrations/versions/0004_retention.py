"""personal data retention (purge of terminal uploads)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('uploads') as batch_op:
        batch_op.add_column(sa.Column('purged_at', sa.DateTime(), nullable=True))
        batch_op.create_index('ix_uploads_retention', ['purged_at', 'finished_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('uploads') as batch_op:
        batch_op.drop_index('ix_uploads_retention')
        batch_op.drop_column('purged_at')
