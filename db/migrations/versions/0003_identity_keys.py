"""identity keys: usernames and e-mails unique by NFKC + case folding, not lower()

PostgreSQL's lower() and Python's disagree on some characters (`İ`), so a duplicate check
done on one side let a row past that the unique index on the other refused. The key columns
are computed in Python (db.models.user.identity_key) and carry the uniqueness instead.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:30:00
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _key(value: str) -> str:
    # A copy of db.models.user.identity_key as of this revision: migrations must not change
    # behaviour when the model code does.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def upgrade() -> None:
    op.add_column('users', sa.Column('username_key', sa.String(length=255), nullable=True))
    op.add_column('users', sa.Column('email_key', sa.String(length=255), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, username, email FROM users")).all()
    seen: dict[tuple[str, str], object] = {}
    clashes = []
    for row in rows:
        for kind, value in (("username", row.username), ("email", row.email)):
            key = (kind, _key(value))
            if key in seen:
                clashes.append(f"{kind} of users {seen[key]} and {row.id}")
            seen[key] = row.id
        bind.execute(
            sa.text("UPDATE users SET username_key = :u, email_key = :e WHERE id = :id"),
            {"u": _key(row.username), "e": _key(row.email), "id": row.id},
        )
    if clashes:
        raise RuntimeError(
            "these accounts differ only by case or Unicode form; rename one of each pair, then migrate again: "
            + "; ".join(clashes)
        )
    op.alter_column('users', 'username_key', nullable=False)
    op.alter_column('users', 'email_key', nullable=False)
    op.create_unique_constraint(op.f('uq_users_username_key'), 'users', ['username_key'])
    op.create_unique_constraint(op.f('uq_users_email_key'), 'users', ['email_key'])
    op.drop_index('uq_users_username_lower', table_name='users')
    op.drop_index('uq_users_email_lower', table_name='users')


def downgrade() -> None:
    op.create_index('uq_users_username_lower', 'users', [sa.literal_column('lower(username)')], unique=True)
    op.create_index('uq_users_email_lower', 'users', [sa.literal_column('lower(email)')], unique=True)
    op.drop_constraint(op.f('uq_users_email_key'), 'users', type_='unique')
    op.drop_constraint(op.f('uq_users_username_key'), 'users', type_='unique')
    op.drop_column('users', 'email_key')
    op.drop_column('users', 'username_key')
