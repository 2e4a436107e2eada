"""`db`: the schema (migrate, downgrade) and the primer's .env."""

from __future__ import annotations

import secrets

import click

from auth_service.cli.common import ENV_FILE, out, resolve_servers
from auth_service.settings import Settings

__all__ = ["db", "downgrade", "migrate", "write_env_file"]


def write_env_file(force: bool) -> None:
    if ENV_FILE.exists() and not force:
        out(f"kept {ENV_FILE} (exists; use --force to replace it)")
        return
    ENV_FILE.write_text(
        "# Written by `auth-service init`. Secrets: keep this file out of version control.\n"
        f"JWT_SECRET_KEY={secrets.token_hex(32)}\n"
    )
    ENV_FILE.chmod(0o600)
    out(f"wrote {ENV_FILE} with a new JWT_SECRET_KEY")


def migrate(settings: Settings, revision: str = "head") -> None:
    from db.config import current_revision, upgrade

    before = current_revision(settings.async_database_url)
    upgrade(settings.async_database_url, revision)
    after = current_revision(settings.async_database_url)
    if before == after:
        out(f"database schema already at {after}; nothing to do")
    else:
        out(f"database schema migrated {before or 'empty'} -> {after}")


def downgrade(settings: Settings, revision: str) -> None:
    from db.config import current_revision
    from db.config import downgrade as db_downgrade

    before = current_revision(settings.async_database_url)
    db_downgrade(settings.async_database_url, revision)
    out(f"database schema downgraded {before} -> {current_revision(settings.async_database_url) or 'empty'}")


@click.group(help="The database schema.")
def db() -> None:
    """Migrations."""


@db.command("migrate", help="Upgrade the schema (default head).")
@click.option("--revision", default="head", show_default=True)
def db_migrate(revision: str) -> None:
    migrate(resolve_servers(), revision)


@db.command("downgrade", help="Downgrade the schema (default one step).")
@click.option("--revision", default="-1", show_default=True)
def db_downgrade(revision: str) -> None:
    downgrade(resolve_servers(), revision)
