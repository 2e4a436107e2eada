"""`clients`: OAuth clients from the command line (create, list), the admin API's store and rules
(domain/oauth/clients.py); every change is audited as the CLI's (no actor, via "cli")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import msgspec

from auth_service.cli.common import fail, out, resolve_servers
from auth_service.cli.tables import table, when
from auth_service.cli.users import quiet_logs
from auth_service.domain.oauth.client_schemas import DEFAULT_GRANT_TYPES, DEFAULT_SCOPES
from auth_service.domain.oauth.clients import ClientCreate, ClientRead, ClientStore
from auth_service.lib.audit import CLI
from auth_service.lib.errors import AuthServiceError, InvalidInput
from auth_service.settings import Settings

__all__ = ["clients", "clients_create", "clients_list"]

T = TypeVar("T")
_PAGE = 100
# Which argument a refused field came from, for the error line.
_FLAGS = {
    "name": "NAME",
    "type": "--public",
    "redirect_uris": "--redirect-uri",
    "post_logout_redirect_uris": "--post-logout-redirect-uri",
    "grant_types": "--grant",
    "scopes": "--scope",
}


async def _with_store(settings: Settings, action: Callable[[ClientStore], Awaitable[T]]) -> T:
    """Run `action(ClientStore)` on a session, the revocation store and Redis (nothing else built)."""
    from auth_service.container import Resources

    resources = Resources(settings, pool_size=1)
    try:
        async with resources.session_factory() as session:
            return await action(ClientStore(session, resources.revocation, resources.redis))
    finally:
        await resources.close()


def _refusal(exc: InvalidInput, data: ClientCreate | None = None) -> str:
    """One line naming the option (and, for a list's entry, the value refused)."""
    field, _, index = exc.field.partition("[")
    flag = _FLAGS.get(field, field)
    if index and data is not None:
        values = getattr(data, field, None)
        position = int(index.rstrip("]"))
        if isinstance(values, list) and position < len(values):
            return f"{flag}: {values[position]!r}: {exc}"
    return f"{flag}: {exc}"


def _run(
    settings: Settings, action: Callable[[ClientStore], Awaitable[None]], data: ClientCreate | None = None
) -> None:
    from redis.exceptions import RedisError

    quiet_logs()
    try:
        asyncio.run(_with_store(settings, action))
    except InvalidInput as exc:
        fail(_refusal(exc, data))
    except AuthServiceError as exc:
        fail(str(exc))
    except RedisError:
        fail("Redis is unreachable; nothing was changed. Check REDIS_URL and retry.", code=1)


def _create(settings: Settings, data: ClientCreate) -> None:
    async def run(store: ClientStore) -> None:
        created = await store.create(data, CLI)
        out(msgspec.json.encode(created).decode())  # the POST /admin/clients answer, secret and all

    _run(settings, run, data)


def _list(settings: Settings) -> None:
    async def run(store: ClientStore) -> None:
        rows: list[ClientRead] = []
        cursor: str | None = None
        while True:
            page = await store.list_clients(_PAGE, cursor)
            rows += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        table(
            ["CLIENT ID", "NAME", "TYPE", "GRANTS", "FIRST-PARTY", "ACTIVE", "CREATED", "REDIRECT URIS"],
            [
                [
                    c.client_id,
                    c.name,
                    c.type,
                    ",".join(c.grant_types),
                    "yes" if c.first_party else "no",
                    "yes" if c.is_active else "no",
                    when(c.created_at),
                    " ".join(c.redirect_uris) or "-",
                ]
                for c in rows
            ],
        )
        out(f"{len(rows)} client(s)")

    _run(settings, run)


@click.group(help="OAuth clients: register and list them (the admin API has the rest).")
def clients() -> None:
    """OAuth client administration."""


@clients.command(
    "create",
    help="Register an OAuth client; prints it as JSON, a confidential client's secret included (shown once).",
)
@click.argument("name")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="repeatable; exact, e.g. https://app/cb")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True, help="repeatable")
@click.option("--public", is_flag=True, help="a public client (no secret; PKCE), e.g. a native or browser app")
@click.option("--first-party", is_flag=True, help="our own app: no consent page")
@click.option(
    "--grant",
    "grants",
    multiple=True,
    help="repeatable: authorization_code, refresh_token, client_credentials "
    f"(default: {' '.join(DEFAULT_GRANT_TYPES)})",
)
@click.option("--scope", "scopes", multiple=True, help=f"repeatable (default: {' '.join(DEFAULT_SCOPES)})")
def clients_create(
    name: str,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    public: bool,
    first_party: bool,
    grants: tuple[str, ...],
    scopes: tuple[str, ...],
) -> None:
    # Built in Python, so msgspec's constraints are not applied here: the store checks every
    # rule itself (client_rules.py), and its refusal names the option.
    data = ClientCreate(
        name=name,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris),
        grant_types=list(grants or DEFAULT_GRANT_TYPES),  # type: ignore[arg-type]
        scopes=list(scopes or DEFAULT_SCOPES),
        type="public" if public else "confidential",
        first_party=first_party,
    )
    _create(resolve_servers(as_service=True), data)


@clients.command(
    "list", help="Every OAuth client: id, name, type, grants, first-party, active, created, redirect URIs."
)
def clients_list() -> None:
    _list(resolve_servers(as_service=True))
