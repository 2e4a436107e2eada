"""user tokens: single-use account links (password reset, e-mail verification, invitations)

Stored only as the SHA-256 of the token; `used_at` is set once, by the one request that spends
the link (an atomic UPDATE ... WHERE used_at IS NULL).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'user_tokens',
        sa.Column('id', GUID(length=16), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', GUID(length=16), nullable=False),
        sa.Column('created_at', DateTimeUTC(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('expires_at', DateTimeUTC(timezone=True), nullable=False),
        sa.Column('used_at', DateTimeUTC(timezone=True), nullable=True),
        # For verification links: the address the link proves (a later change makes it stale).
        sa.Column('email', sa.String(length=255), nullable=True),
        sa.Column('sa_orm_sentinel', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_tokens_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_user_tokens_token_hash')),
    )
    op.create_index('ix_user_tokens_user_id_purpose', 'user_tokens', ['user_id', 'purpose'])
    op.create_index(op.f('ix_user_tokens_expires_at'), 'user_tokens', ['expires_at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_user_tokens_expires_at'), table_name='user_tokens')
    op.drop_index('ix_user_tokens_user_id_purpose', table_name='user_tokens')
    op.drop_table('user_tokens')
