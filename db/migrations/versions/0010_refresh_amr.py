"""refresh_tokens.amr: how the session's login was proven, kept for its whole life

The access tokens of a session carry `amr` (RFC 8176: `pwd`, `otp`, `hwk`, `mfa`); a refresh
must mint the same, so the refresh family remembers it. Every successor copies it (like the
device columns). Sessions opened before this column were password logins: the default says so.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'refresh_tokens',
        sa.Column('amr', postgresql.ARRAY(sa.String(length=8)), server_default=sa.text("'{pwd}'"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column('refresh_tokens', 'amr')
