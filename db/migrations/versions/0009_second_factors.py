"""second factors: TOTP authenticators, recovery codes and passkeys

`mfa_totp` holds at most one authenticator per user (the user's id is the key): its secret only
encrypted (nonce || AES-GCM ciphertext), pending until `confirmed_at`, and the step of the last
accepted code (`last_used_step`), so a code stays single-use when Redis loses its replay marks.
`mfa_recovery_codes` keeps each code only as an HMAC; the unique (user_id, code_hash) index is
also the lookup of a user's codes. `webauthn_credentials` keeps each passkey's public key, sign
counter and backup flags; `credential_id` is unique across users (a passwordless login finds its
user by it). Every row goes with its user (ON DELETE CASCADE); the service role's grants cover
new tables (db/roles.py grants on all tables after each migration).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'mfa_totp',
        sa.Column('user_id', GUID(length=16), nullable=False),
        sa.Column('secret_ciphertext', sa.LargeBinary(), nullable=False),
        sa.Column('confirmed_at', DateTimeUTC(timezone=True), nullable=True),
        sa.Column('last_used_step', sa.BigInteger(), nullable=True),
        sa.Column('created_at', DateTimeUTC(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_mfa_totp_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_mfa_totp')),
    )
    op.create_table(
        'mfa_recovery_codes',
        sa.Column('id', GUID(length=16), nullable=False),
        sa.Column('user_id', GUID(length=16), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('used_at', DateTimeUTC(timezone=True), nullable=True),
        sa.Column('created_at', DateTimeUTC(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('sa_orm_sentinel', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name=op.f('fk_mfa_recovery_codes_user_id_users'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_recovery_codes')),
        sa.UniqueConstraint('user_id', 'code_hash', name='uq_mfa_recovery_codes_user_id_code_hash'),
    )
    op.create_table(
        'webauthn_credentials',
        sa.Column('id', GUID(length=16), nullable=False),
        sa.Column('user_id', GUID(length=16), nullable=False),
        sa.Column('credential_id', sa.LargeBinary(), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('sign_count', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        sa.Column('aaguid', sa.String(length=36), nullable=False),
        sa.Column('transports', postgresql.ARRAY(sa.String(length=16)), server_default=sa.text("'{}'"), nullable=False),
        sa.Column('backup_eligible', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.Column('backed_up', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('created_at', DateTimeUTC(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('last_used_at', DateTimeUTC(timezone=True), nullable=True),
        sa.Column('sa_orm_sentinel', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name=op.f('fk_webauthn_credentials_user_id_users'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webauthn_credentials')),
        sa.UniqueConstraint('credential_id', name=op.f('uq_webauthn_credentials_credential_id')),
    )
    op.create_index(op.f('ix_webauthn_credentials_user_id'), 'webauthn_credentials', ['user_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_webauthn_credentials_user_id'), table_name='webauthn_credentials')
    op.drop_table('webauthn_credentials')
    op.drop_table('mfa_recovery_codes')
    op.drop_table('mfa_totp')
