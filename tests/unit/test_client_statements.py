"""The read of one OAuth client is built once per variant on the table's columns, and each
variant still selects what the ORM select did: the attributes by name, the secret's hash only
when asked, the lock asked for (a client's authentication runs on every token request)."""

from __future__ import annotations

import itertools

from sqlalchemy.dialects import postgresql

from auth_service.domain.oauth.client_repository import COLUMNS, _one_statement


def test_each_variant_is_built_once_and_selects_what_it_says() -> None:
    for active_only, lock, with_secret in itertools.product((False, True), (None, "share", "update"), (False, True)):
        stmt = _one_statement(active_only, lock, with_secret)
        assert _one_statement(active_only, lock, with_secret) is stmt
        names = [c.key for c in COLUMNS] + (["secret_hash"] if with_secret else [])
        assert list(stmt.selected_columns.keys()) == names
        sql = str(stmt.compile(dialect=postgresql.dialect()))
        assert "oauth_clients.client_id = %(client_id)s" in sql
        assert ("is_active IS true" in sql) == active_only
        assert ("FOR " in sql) == (lock is not None)
        if lock is not None:
            assert sql.endswith(f"FOR {lock.upper()}")
