"""unusable passwords: invited users who never set one are marked, so the last-admin guard can
tell who can sign in

Invitations (revision 0006) stored the hash of a random secret, indistinguishable from a real
password. Since then an unusable password starts with `!` (auth_service/lib/crypto/passwords.py),
which no argon2 or bcrypt hash does. This marks the users the audit log shows as invited whose
password was never set since (no `password.reset` from the invitation link, no operator's
`user.update` of the password): their stored value keeps its random hash behind the mark.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE users SET password_hash = '!' || password_hash
        WHERE password_hash NOT LIKE '!%'
          AND id::text IN (
              SELECT target_id FROM audit_events
              WHERE action = 'user.create' AND details->>'invited' = 'true')
          AND id::text NOT IN (
              SELECT target_id FROM audit_events
              WHERE target_id IS NOT NULL
                AND (action IN ('password.reset', 'password.change')
                     OR (action = 'user.update' AND details->'fields' ? 'password')))
        """
    )


def downgrade() -> None:
    # The mark goes; what is left matches no password either way.
    op.execute("UPDATE users SET password_hash = substr(password_hash, 2) WHERE password_hash LIKE '!%'")
