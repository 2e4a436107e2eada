"""session devices: each refresh token carries its session's login IP, user agent and start

A session is a refresh family; its live token's `issued_at` is the time of its last refresh.
The login writes ip_address, user_agent and session_started_at on the family's first token and
every rotation copies them to the successor, so listing sessions reads one row per family.
`users.email_verified` starts true for every existing account (they were made by an operator).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from advanced_alchemy.types import DateTimeUTC

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('refresh_tokens', sa.Column('ip_address', sa.String(length=45), nullable=True))
    op.add_column('refresh_tokens', sa.Column('user_agent', sa.Text(), nullable=True))
    op.add_column('refresh_tokens', sa.Column('session_started_at', DateTimeUTC(timezone=True), nullable=True))
    op.add_column(
        'users', sa.Column('email_verified', sa.Boolean(), nullable=False, server_default=sa.text('true'))
    )
    # The sessions of one user, newest refresh first: the account's session list.
    op.create_index(
        'ix_refresh_tokens_live_by_user',
        'refresh_tokens',
        ['user_id', 'issued_at'],
        postgresql_where=sa.text('spent_at IS NULL AND revoked_at IS NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_refresh_tokens_live_by_user', table_name='refresh_tokens')
    op.drop_column('users', 'email_verified')
    op.drop_column('refresh_tokens', 'session_started_at')
    op.drop_column('refresh_tokens', 'user_agent')
    op.drop_column('refresh_tokens', 'ip_address')
