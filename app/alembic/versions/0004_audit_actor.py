"""audit trail: actor and context

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('context', sqlmodel.sql.sqltypes.AutoString(length=199), nullable=False, server_default=''))
        batch_op.create_index(batch_op.f('ix_audit_event_actor'), ['actor'], unique=False)
        batch_op.create_index('ix_audit_entity', ['entity', 'entity_pk'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entity')
        batch_op.drop_index(batch_op.f('ix_audit_event_actor'))
        batch_op.drop_column('context')
        batch_op.drop_column('actor')
