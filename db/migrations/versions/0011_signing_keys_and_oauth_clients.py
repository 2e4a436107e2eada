"""signing keys and OAuth clients

`signing_keys` holds the managed keys that sign ID tokens (and access tokens when JWT_ALGORITHM
asks): the public JWK in the clear, the private key only encrypted under the `signing-key-wrap`
purpose key, and the timestamps of its life (next -> active -> retiring -> removed).
`oauth_clients` are the registered OAuth / OpenID Connect clients (a confidential one's secret
only hashed; exact redirect URIs); `oauth_consents` remembers what a user granted a third-party
client. A refresh family opened through OAuth remembers its client and scope
(`refresh_tokens.client_id`, `.scope`), copied to every successor like `amr`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("client_type", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=True),
        sa.Column("redirect_uris", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column(
            "post_logout_redirect_uris", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "grant_types", postgresql.ARRAY(sa.String(length=32)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=64)), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("first_party", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_oauth_clients")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("activates_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("retired_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("removes_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("removed_at", DateTimeUTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_index(op.f("ix_signing_keys_state"), "signing_keys", ["state"], unique=False)
    op.create_table(
        "oauth_consents",
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("granted_at", DateTimeUTC(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.client_id"],
            name=op.f("fk_oauth_consents_client_id_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_oauth_consents_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "client_id", name=op.f("pk_oauth_consents")),
    )
    op.add_column("refresh_tokens", sa.Column("client_id", sa.String(length=64), nullable=True))
    op.add_column("refresh_tokens", sa.Column("scope", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    op.drop_column("refresh_tokens", "scope")
    op.drop_column("refresh_tokens", "client_id")
    op.drop_table("oauth_consents")
    op.drop_index(op.f("ix_signing_keys_state"), table_name="signing_keys")
    op.drop_table("signing_keys")
    op.drop_table("oauth_clients")
