"""Our command groups under Litestar's own CLI too (`litestar --app auth_service.app:create_app
users list`), beside its `run`/`routes` and Advanced Alchemy's `database` groups."""

from __future__ import annotations

from click import Group
from litestar.plugins import CLIPluginProtocol

__all__ = ["AuthServiceCLI"]


class AuthServiceCLI(CLIPluginProtocol):
    def on_cli_init(self, cli: Group) -> None:
        from auth_service.cli.main import db, keys, users

        for group in (users, db, keys):
            cli.add_command(group)
