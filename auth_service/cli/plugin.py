"""Our command groups under Litestar's own CLI too (`litestar --app auth_service.app:create_app
users list`), beside its `run`/`routes` and Advanced Alchemy's `database` group. Not our `db`
group: Advanced Alchemy's `database` answers to the alias `db` there; migrations stay
`python -m auth_service db migrate` (or Advanced Alchemy's own `database upgrade`)."""

from __future__ import annotations

from click import Group
from litestar.plugins import CLIPluginProtocol

__all__ = ["AuthServiceCLI"]


class AuthServiceCLI(CLIPluginProtocol):
    def on_cli_init(self, cli: Group) -> None:
        from auth_service.cli.main import clients, keys, users

        for group in (users, keys, clients):
            cli.add_command(group)
