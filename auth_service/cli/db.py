"""`db`: the schema (migrate, downgrade) and the primer's .env."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Iterator

import click

from auth_service.cli.common import ENV_FILE, fail, out, resolve_servers
from auth_service.settings import Settings

__all__ = ["db", "downgrade", "grant_service_role", "migrate", "write_env_file"]


def write_env_file(force: bool, yes: bool = False) -> None:
    if ENV_FILE.exists() and not force:
        out(f"kept {ENV_FILE} (exists; use --force to replace it)")
        return
    if ENV_FILE.exists():
        _confirm(
            f"--force replaces {ENV_FILE}, its JWT_SECRET_KEY and SECRET_KEY: every access and refresh token "
            "and every e-mailed link issued so far stops working, and every user must sign in again",
            yes,
        )
    ENV_FILE.write_text(
        "# Written by `auth-service init`. Secrets: keep this file out of version control.\n"
        f"JWT_SECRET_KEY={secrets.token_hex(32)}\n"
        "# The master secret of every other key (links, refresh successors, …): independent of the JWT key.\n"
        f"SECRET_KEY={secrets.token_hex(32)}\n"
    )
    ENV_FILE.chmod(0o600)
    out(f"wrote {ENV_FILE} with a new JWT_SECRET_KEY and SECRET_KEY")


def _confirm(consequence: str, yes: bool) -> None:
    """Go on only when the operator said so: --yes, or "y" on a terminal."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{consequence}; re-run with --yes to go ahead")
    if not click.confirm(f"{consequence}. Go ahead?", default=False):
        fail("nothing was changed", code=1)


@contextlib.contextmanager
def _alembic_errors(url: str, revision: str) -> Iterator[None]:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from db.config import alembic_config

    try:
        yield
    except CommandError as exc:
        known = sorted(script.revision for script in ScriptDirectory.from_config(alembic_config(url)).walk_revisions())
        fail(f"--revision {revision}: {exc} (expected base, head, -N, +N or one of {', '.join(known)})")


def migrate(settings: Settings, revision: str = "head") -> None:
    from db.config import current_revision, upgrade

    before = current_revision(settings.database.migration_url)
    with _alembic_errors(settings.database.migration_url, revision):
        upgrade(settings.database.migration_url, revision)
    after = current_revision(settings.database.migration_url)
    if before == after:
        out(f"database schema already at {after}; nothing to do")
    else:
        out(f"database schema migrated {before or 'empty'} -> {after}")
    grant_service_role(settings)


def grant_service_role(settings: Settings) -> None:
    """The role the API and the worker connect as: created or updated, given exactly its
    privileges (db/roles.py); one line names the setting when PostgreSQL refuses."""
    import asyncpg

    from db.roles import ServiceRoleError
    from db.roles import grant_service_role as grant

    role = settings.database.service_user
    dsn = settings.database.migration_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    try:
        asyncio.run(grant(dsn, role, settings.database.service_password))
    except ServiceRoleError as exc:
        fail(f"DATABASE_SERVICE_USER: {exc}")
    except asyncpg.PostgresError as exc:
        fail(
            f"DATABASE_URL: its user cannot set up the service role {role!r} ({exc}); give it CREATEROLE, "
            f"or create {role!r} yourself with LOGIN and the password DATABASE_SERVICE_PASSWORD names"
        )
    out(f"database role {role!r}: the API and the worker connect as it (owns nothing; audit log: read, append)")


def downgrade(settings: Settings, revision: str, yes: bool = False) -> None:
    from db.config import current_revision
    from db.config import downgrade as db_downgrade

    before = current_revision(settings.database.migration_url)
    if before is None:
        out("database schema is empty (base); nothing to downgrade")
        return
    consequence = (
        "downgrading to base drops every table: every user, session and login record is lost"
        if revision == "base"
        else f"downgrading from {before} ({revision}) drops what the later migrations added, data included"
    )
    _confirm(consequence, yes)
    with _alembic_errors(settings.database.migration_url, revision):
        db_downgrade(settings.database.migration_url, revision)
    out(f"database schema downgraded {before} -> {current_revision(settings.database.migration_url) or 'empty'}")


@click.group(help="The database schema.")
def db() -> None:
    """Migrations."""


@db.command("migrate", help="Upgrade the schema (default head).")
@click.option("--revision", default="head", show_default=True)
def db_migrate(revision: str) -> None:
    migrate(resolve_servers(), revision)


@db.command("downgrade", help="Downgrade the schema (default one step).")
@click.option("--revision", default="-1", show_default=True)
@click.option("--yes", is_flag=True, help="do not ask (downgrades drop data)")
def db_downgrade(revision: str, yes: bool) -> None:
    downgrade(resolve_servers(), revision, yes)
