"""The service's own database role: it owns nothing and may only read and append the audit log.

The API and the worker connect as this role; migrations run as the owner (the role of the URL
the operator gives, `DATABASE_URL`). The audit log's trigger refuses UPDATE and DELETE to every
role, but a table's owner can disable a trigger or truncate the table: so the role that serves
requests must not own the tables. `grant_service_role` is idempotent and run after every
migration (`just init`, `just migrate`): new tables get their grants the same way.

Plain arguments, no Settings (db stands alone).
"""

from __future__ import annotations

import asyncio

import asyncpg

__all__ = ["ServiceRoleError", "grant_service_role"]

# Everything the service does to its tables; the audit log and the migration bookkeeping less.
_STATEMENTS = (
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "REVOKE UPDATE, DELETE ON audit_events FROM {role}",
    "REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


class ServiceRoleError(RuntimeError):
    """The role cannot be set up as asked (str() says why)."""


async def grant_service_role(owner_dsn: str, role: str, password: str | None) -> None:
    """Create (or update) `role` with LOGIN and `password` and give it exactly the service's
    privileges on the owner's database, in one transaction.

    Args:
        owner_dsn: a postgresql:// URL of the owner (it must be allowed to create roles).
        role: the service role's name (already checked to be a plain identifier).
        password: its password; None: none (trust or peer authentication only).

    Raises:
        ServiceRoleError: the role is the owner itself, or a member of it.
        asyncpg.PostgresError: the owner may not create roles or grant (the caller names the setting).
    """
    # The role is the cluster's: two set-ups at once (two `init`s, test workers) can collide on its
    # catalogue row ("tuple concurrently updated"); the loser tries again, the work is idempotent.
    for attempt in range(5):
        try:
            await _grant(owner_dsn, role, password)
            return
        except (asyncpg.InternalServerError, asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError) as exc:
            collided = "concurrently" in str(exc) or not isinstance(exc, asyncpg.InternalServerError)
            if not collided or attempt == 4:  # (a CREATE ROLE that lost the race: it exists now)
                raise
            await asyncio.sleep(0.1 * (attempt + 1))


async def _grant(owner_dsn: str, role: str, password: str | None) -> None:
    conn = await asyncpg.connect(owner_dsn)
    try:
        owner = await conn.fetchval("SELECT current_user")
        if role == owner:
            raise ServiceRoleError(f"{role!r} is DATABASE_URL's own user, the tables' owner; name another role")
        async with conn.transaction():
            # Identifiers and the password quoted by the server (format's %I and %L), never by us.
            exists = await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await conn.execute(await conn.fetchval("SELECT format('CREATE ROLE %I', $1::text)", role))
            attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
            alter = await conn.fetchval(
                f"SELECT format('ALTER ROLE %I WITH {attributes} PASSWORD %L', $1::text, $2::text)", role, password
            )
            await conn.execute(alter)  # format('%L', NULL) is NULL unquoted: PASSWORD NULL, no password
            if await conn.fetchval("SELECT pg_has_role($1, current_user, 'MEMBER')", role):
                raise ServiceRoleError(f"{role!r} is a member of {owner!r}, the tables' owner; revoke that membership")
            names = await conn.fetchrow(
                "SELECT format('%I', current_database()) AS database, format('%I', $1::text) AS role", role
            )
            for statement in _STATEMENTS:
                await conn.execute(statement.format(database=names["database"], role=names["role"]))
    finally:
        await conn.close()
