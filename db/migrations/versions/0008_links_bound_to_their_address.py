"""account links bound to their address: reset and invitation links record it too

Until now only verification links recorded the identity key of the address they were mailed
to; a reset or invitation link is now valid only while the account still has that address.
Live links without one get the account's current key, except those made before a recorded
e-mail change by the owner (`email.change` in the audit log): they were mailed to an address
the account no longer has, and are ended instead (the defect this closes). The schema is
unchanged; a null `email` matches no address.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

END_STALE = """
UPDATE user_tokens t SET used_at = now()
WHERE t.used_at IS NULL AND t.email IS NULL AND EXISTS (
    SELECT 1 FROM audit_events a
    WHERE a.action = 'email.change' AND a.target_id = t.user_id::text AND a.at >= t.created_at
)
"""

BIND_LIVE = """
UPDATE user_tokens t SET email = u.email_key
FROM users u
WHERE u.id = t.user_id AND t.used_at IS NULL AND t.email IS NULL
"""


def upgrade() -> None:
    op.execute(END_STALE)
    op.execute(BIND_LIVE)


def downgrade() -> None:
    # Nothing to undo: the older code ignores the address of a reset link.
    pass
