"""Command line: the primer (`init`) and the groups `users`, `clients`, `db`, `keys`, `run` (also under the
flat names the justfile uses). Each command prints what it did; errors say what to do and exit
non-zero."""

from __future__ import annotations

import copy

import click

from auth_service.cli.clients import clients, clients_create, clients_list
from auth_service.cli.common import err, resolve_servers
from auth_service.cli.db import db, db_downgrade, db_migrate, migrate, write_env_file
from auth_service.cli.keys import ensure_first_key, keys
from auth_service.cli.run import run, run_api_command, run_monitor_command, run_up_command, run_worker_command
from auth_service.cli.users import (
    create_first_admin,
    users,
    users_activate,
    users_audit,
    users_create,
    users_deactivate,
    users_list,
    users_reset_mfa,
    users_set_password,
    users_set_roles,
    users_show,
)

__all__ = ["cli", "clients", "db", "keys", "main", "run", "users"]


@click.group(
    name="auth-service", help="Auth service operations.", context_settings={"help_option_names": ["-h", "--help"]}
)
def cli() -> None:
    """The root group: `python -m auth_service …` and the `just` recipes."""


@cli.command(help="Write .env (if absent), migrate, create the first signing key and admin; safe to re-run.")
@click.option("--force", is_flag=True, help="replace an existing .env with new secrets (every token dies)")
@click.option("--yes", is_flag=True, help="with --force: do not ask")
def init(force: bool, yes: bool) -> None:
    write_env_file(force, yes)
    settings = resolve_servers()
    migrate(settings)
    ensure_first_key(settings)
    create_first_admin(settings)


for _group in (users, clients, db, keys, run):
    cli.add_command(_group)


# The flat names the justfile, the docs and operators' scripts use: the same commands.
_ALIASES = {
    "create-user": users_create,
    "list-users": users_list,
    "show-user": users_show,
    "deactivate-user": users_deactivate,
    "activate-user": users_activate,
    "set-password": users_set_password,
    "set-roles": users_set_roles,
    "reset-mfa": users_reset_mfa,
    "audit": users_audit,
    "create-client": clients_create,
    "list-clients": clients_list,
    "migrate": db_migrate,
    "downgrade": db_downgrade,
    "api": run_api_command,
    "worker": run_worker_command,
    "up": run_up_command,
    "monitor": run_monitor_command,
}


for _name, _command in _ALIASES.items():
    _alias = copy.copy(_command)
    _alias.name = _name
    _alias.hidden = True
    cli.add_command(_alias, _name)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        result = cli.main(args=argv, prog_name="auth-service", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        err("aborted")
        return 1
    return int(result) if isinstance(result, int) else 0
