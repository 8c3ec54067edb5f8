"""backfill records and the cancelled outcome

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

The ``cancelled`` outcome needs no schema change (states are stored as strings); this adds
the ``backfills`` and ``backfill_chunks`` tables and the index that finds one backfill's due
uploads in order.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('backfills',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=128), nullable=False),
    sa.Column('project_id', sa.String(length=128), nullable=True),
    sa.Column('connection_id', sa.Integer(), nullable=True),
    sa.Column('expected_total', sa.Integer(), nullable=True),
    sa.Column('sealed', sa.Boolean(), nullable=False),
    sa.Column('chunk_count', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('recorded', sa.Integer(), nullable=False),
    sa.Column('refused_chunks', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('paused_at', sa.DateTime(), nullable=True),
    sa.Column('last_dispatched_at', sa.DateTime(), nullable=True),
    sa.Column('progress_published_at', sa.DateTime(), nullable=True),
    sa.Column('progress_published_done', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_backfills_connection_id_connections'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backfills'))
    )
    with op.batch_alter_table('backfills') as batch_op:
        batch_op.create_index(batch_op.f('ix_backfills_account_id'), ['account_id'], unique=False)
    op.create_table('backfill_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('backfill_id', sa.String(length=64), nullable=False),
    sa.Column('chunk_index', sa.Integer(), nullable=False),
    sa.Column('candidates', sa.Integer(), nullable=False),
    sa.Column('recorded', sa.Integer(), nullable=False),
    sa.Column('refused', sa.String(length=255), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['backfill_id'], ['backfills.id'], name=op.f('fk_backfill_chunks_backfill_id_backfills'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backfill_chunks')),
    sa.UniqueConstraint('backfill_id', 'chunk_index', name=op.f('uq_backfill_chunks_backfill_id'))
    )
    with op.batch_alter_table('uploads') as batch_op:
        batch_op.create_index('ix_uploads_backfill_dispatch', ['backfill_id', 'state', 'next_attempt_at'], unique=False)
    # Backfills recorded before this revision (one message each) get their record, sealed:
    # the dispatcher and the status read every backfill from this table.
    op.execute(sa.text(
        "INSERT INTO backfills (id, kind, account_id, project_id, connection_id, sealed, state, recorded, refused_chunks, "
        "skipped, created_at, progress_published_done) "
        "SELECT backfill_id, 'intake', MIN(account_id), MIN(project_id), MIN(connection_id), TRUE, 'running', COUNT(*), 0, 0, "
        "MIN(created_at), 0 FROM uploads WHERE backfill_id IS NOT NULL GROUP BY backfill_id"
    ))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('uploads') as batch_op:
        batch_op.drop_index('ix_uploads_backfill_dispatch')
    op.drop_table('backfill_chunks')
    with op.batch_alter_table('backfills') as batch_op:
        batch_op.drop_index(batch_op.f('ix_backfills_account_id'))
    op.drop_table('backfills')
