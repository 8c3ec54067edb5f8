"""jobs.sections (the feed's section names) and connections.rate_limited_since (429 storms)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('connections') as batch_op:
        batch_op.add_column(sa.Column('rate_limited_since', sa.DateTime(), nullable=True))
    with op.batch_alter_table('jobs') as batch_op:
        batch_op.add_column(sa.Column('sections', sa.JSON(), nullable=True))
    # Jobs cached before this revision have no section names; forget the feed's validators
    # so the next refresh applies the whole feed again instead of stopping at "unchanged".
    op.execute(sa.text('UPDATE connections SET feed_etag = NULL, feed_last_modified = NULL, feed_sha256 = NULL'))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('jobs') as batch_op:
        batch_op.drop_column('sections')
    with op.batch_alter_table('connections') as batch_op:
        batch_op.drop_column('rate_limited_since')
