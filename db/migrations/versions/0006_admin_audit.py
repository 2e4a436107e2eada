"""admin API: the append-only audit log, and an index for each filter of the admin listings

`audit_events` refuses UPDATE and DELETE by a trigger (one row per action, written in the
transaction of the change it records; it outlives actors and targets, so no foreign keys).
TRUNCATE stays possible for the table's owner: retention is an operator's decision.

Login records get (column, login_timestamp, id) indexes for the keyset pages of each filter
(user, IP, typed username, failures, time window); they replace the two-column ones, which are
their prefixes. Users get the listing's: newest first, a name/address prefix, a role, inactive.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

APPEND_ONLY = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        'audit_events',
        sa.Column('id', GUID(length=16), nullable=False),
        sa.Column('at', DateTimeUTC(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('actor_id', GUID(length=16), nullable=True),
        sa.Column('actor_ip', sa.String(length=45), nullable=True),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target_type', sa.String(length=32), nullable=True),
        sa.Column('target_id', sa.String(length=64), nullable=True),
        sa.Column('details', postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('request_id', sa.String(length=128), nullable=True),
        sa.Column('sa_orm_sentinel', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    )
    op.create_index('ix_audit_events_at_id', 'audit_events', ['at', 'id'])
    op.create_index('ix_audit_events_actor_id_at_id', 'audit_events', ['actor_id', 'at', 'id'])
    op.create_index('ix_audit_events_action_at_id', 'audit_events', ['action', 'at', 'id'])
    op.create_index('ix_audit_events_target_id_at_id', 'audit_events', ['target_id', 'at', 'id'])
    op.execute(APPEND_ONLY)
    op.execute(
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
    )

    op.create_index('ix_login_records_at_id', 'login_records', ['login_timestamp', 'id'])
    op.create_index('ix_login_records_user_id_at_id', 'login_records', ['user_id', 'login_timestamp', 'id'])
    op.create_index('ix_login_records_ip_address_at_id', 'login_records', ['ip_address', 'login_timestamp', 'id'])
    op.create_index('ix_login_records_username_at_id', 'login_records', ['username', 'login_timestamp', 'id'])
    op.create_index(
        'ix_login_records_failures_at_id',
        'login_records',
        ['login_timestamp', 'id'],
        postgresql_where=sa.text('NOT success'),
    )
    op.drop_index('ix_login_records_user_id_login_timestamp', table_name='login_records')
    op.drop_index('ix_login_records_ip_address_login_timestamp', table_name='login_records')
    op.drop_index('ix_login_records_login_timestamp', table_name='login_records')

    op.create_index('ix_users_created_at_id', 'users', ['created_at', 'id'])
    op.create_index(
        'ix_users_username_key_prefix', 'users', ['username_key'], postgresql_ops={'username_key': 'varchar_pattern_ops'}
    )
    op.create_index('ix_users_email_key_prefix', 'users', ['email_key'], postgresql_ops={'email_key': 'varchar_pattern_ops'})
    op.create_index('ix_users_roles', 'users', ['roles'], postgresql_using='gin')
    op.create_index(
        'ix_users_inactive_created_at_id', 'users', ['created_at', 'id'], postgresql_where=sa.text('NOT is_active')
    )


def downgrade() -> None:
    for name in (
        'ix_users_inactive_created_at_id',
        'ix_users_roles',
        'ix_users_email_key_prefix',
        'ix_users_username_key_prefix',
        'ix_users_created_at_id',
    ):
        op.drop_index(name, table_name='users')
    op.create_index('ix_login_records_login_timestamp', 'login_records', ['login_timestamp'])
    op.create_index('ix_login_records_ip_address_login_timestamp', 'login_records', ['ip_address', 'login_timestamp'])
    op.create_index('ix_login_records_user_id_login_timestamp', 'login_records', ['user_id', 'login_timestamp'])
    for name in (
        'ix_login_records_failures_at_id',
        'ix_login_records_username_at_id',
        'ix_login_records_ip_address_at_id',
        'ix_login_records_user_id_at_id',
        'ix_login_records_at_id',
    ):
        op.drop_index(name, table_name='login_records')
    op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
    op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_table('audit_events')
