"""`users`: accounts from the command line (create, list, show, activate, deactivate, set-password)."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from auth_service.cli.common import fail, out, resolve_servers
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.domain.users.schemas import UserCreate
from auth_service.domain.users.service import InvalidUserData, UserService
from auth_service.lib.errors import InvalidInput
from auth_service.settings import Settings

__all__ = ["create_first_admin", "users"]

T = TypeVar("T")
_PAGE = 1000
# Which argument a refused field came from, for the error line.
_FLAGS = {"username": "USERNAME", "email": "--email", "roles": "--role", "password": "password"}


_PASSWORD_STDIN = click.option(
    "--password-stdin", is_flag=True, help="read the password from stdin (else asked on a terminal, or generated)"
)


async def _with_users(settings: Settings, action: Callable[[UserService], Awaitable[T]]) -> T:
    """Run `action(UserService)` with a real session, the hasher and the revocation store (all a
    user change needs; not the API's whole composition root)."""
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from auth_service.domain.sessions.revocation import RevocationStore
    from auth_service.wiring import password_hasher_for

    engine = create_async_engine(settings.async_database_url, hide_parameters=True)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    timeout = settings.redis_timeout
    redis = Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    hasher = password_hasher_for(settings)
    revocation = RevocationStore(
        redis, factory, prefix=settings.redis_key_prefix, access_ttl=settings.access_ttl_seconds
    )
    try:
        async with factory() as session:
            policy = PasswordPolicy(settings.passwords.min_length, settings.passwords.min_score)
            return await action(UserService(session, hasher, revocation, policy))
    finally:
        await revocation.close()
        hasher.close()
        await redis.aclose()
        await engine.dispose()


def create_first_admin(settings: Settings) -> None:
    """The first admin (ADMIN_USERNAME, ADMIN_EMAIL, ADMIN_PASSWORD or a generated one), unless an
    admin exists. A generated password is printed last, boxed: the one line not to lose."""
    generated: list[str] = []

    async def run(users: UserService) -> None:
        if await users.count_admins() > 0:
            out("an admin user exists; nothing to do")
            return
        username = os.environ.get("ADMIN_USERNAME", "admin")
        email = os.environ.get("ADMIN_EMAIL", "admin@example.com")
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(18)
        data = UserCreate(username=username, email=email, password=password, roles=["admin"])
        try:
            user = await users.create(data)
        except InvalidInput as exc:  # the variables' values, not flags, were refused: name them
            variable = {"username": "ADMIN_USERNAME", "email": "ADMIN_EMAIL"}.get(exc.field, "ADMIN_PASSWORD")
            fail(f"{variable}: {exc}")
        out(f"created admin user {user.username!r} ({user.email})")
        if not os.environ.get("ADMIN_PASSWORD"):
            generated.append(password)

    _run_user_action(settings, run)
    if generated:
        _boxed(
            f"admin password (shown once, store it now): {generated[0]}",
            "lost it? `just set-password admin`",
        )


def _boxed(*lines: str) -> None:
    width = max(len(line) for line in lines)
    out("+" + "-" * (width + 2) + "+")
    for line in lines:
        out(f"| {line:{width}} |")
    out("+" + "-" * (width + 2) + "+")


def _run_user_action(settings: Settings, action: Callable[[UserService], Awaitable[None]]) -> None:
    from redis.exceptions import RedisError

    from auth_service.lib.errors import AuthServiceError

    try:
        asyncio.run(_with_users(settings, action))
    except InvalidInput as exc:  # a malformed name, e-mail or role; a password the policy refuses
        fail(f"{_FLAGS.get(exc.field, exc.field)}: {exc}")
    except msgspec.ValidationError as exc:
        fail(str(InvalidUserData.from_validation(exc)))
    except AuthServiceError as exc:  # the domain's refusals: policy, taken name, no such user
        fail(str(exc))
    except RedisError:
        fail("Redis is unreachable; nothing was changed. Check REDIS_URL and retry.", code=1)


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The new password: from stdin (--password-stdin), asked twice on a terminal, or generated."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("New password (empty: generate one): ")
        if first:
            if getpass.getpass("Repeat it: ") != first:
                fail("the two passwords differ; nothing was changed")
            return first, False
    return secrets.token_urlsafe(18), True


def _list_users(settings: Settings) -> None:
    async def run(users: UserService) -> None:
        rows: list[Any] = []
        while page := await users.list_users(limit=_PAGE, offset=len(rows)):
            rows += page
            if len(page) < _PAGE:
                break
        out(f"{'username':24} {'e-mail':32} {'roles':16} active  id")
        for user in rows:
            out(
                f"{user.username:24} {user.email:32} {','.join(user.roles) or '-':16} "
                f"{'yes' if user.is_active else 'no':7} {user.id}"
            )
        out(f"{len(rows)} user(s)")

    _run_user_action(settings, run)


def _show_user(settings: Settings, username: str) -> None:
    async def run(users: UserService) -> None:
        user = await users.show(username)
        for label, value in (
            ("username", user.username),
            ("id", user.id),
            ("e-mail", user.email),
            ("roles", ",".join(user.roles) or "-"),
            ("active", "yes" if user.is_active else "no"),
        ):
            out(f"{label + ':':10} {value}")

    _run_user_action(settings, run)


def _create_user(settings: Settings, username: str, email: str, roles: list[str], password_stdin: bool) -> None:
    password, generated = _read_password(password_stdin)

    async def run(users: UserService) -> None:
        user = await users.create(UserCreate(username=username, email=email, password=password, roles=roles))
        out(f"created user {user.username!r} id={user.id} roles={','.join(user.roles) or '-'}")
        if generated:
            out(f"  generated password (shown once): {password}")

    _run_user_action(settings, run)


def _set_active(settings: Settings, username: str, active: bool) -> None:
    async def run(users: UserService) -> None:
        user = await users.set_active(username, active)
        out(f"user {user.username!r} is now {'active' if active else 'deactivated; all its tokens are revoked'}")

    _run_user_action(settings, run)


def _set_password(settings: Settings, username: str, password_stdin: bool) -> None:
    password, generated = _read_password(password_stdin)

    async def run(users: UserService) -> None:
        user = await users.set_password(username, password)
        out(f"password of {user.username!r} changed; all its tokens are revoked")
        if generated:
            out(f"  generated password (shown once): {password}")

    _run_user_action(settings, run)


@click.group(help="Accounts: create, list, show, activate, deactivate, set a password.")
def users() -> None:
    """User administration."""


@users.command("create", help="Add a user; the password from stdin, asked on a terminal, or generated.")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--role", "roles", multiple=True, help="repeatable, e.g. --role admin")
@_PASSWORD_STDIN
def users_create(username: str, email: str, roles: tuple[str, ...], password_stdin: bool) -> None:
    _create_user(resolve_servers(), username, email, list(roles), password_stdin)


@users.command("list", help="Every user: name, e-mail, roles, active, id.")
def users_list() -> None:
    _list_users(resolve_servers())


@users.command("show", help="One user's details.")
@click.argument("username")
def users_show(username: str) -> None:
    _show_user(resolve_servers(), username)


@users.command("deactivate", help="Disable a user; all its tokens stop working at once.")
@click.argument("username")
def users_deactivate(username: str) -> None:
    _set_active(resolve_servers(), username, False)


@users.command("activate", help="Re-enable a user; tokens from before stay dead.")
@click.argument("username")
def users_activate(username: str) -> None:
    _set_active(resolve_servers(), username, True)


@users.command("set-password", help="Change a password; all its tokens stop working.")
@click.argument("username")
@_PASSWORD_STDIN
def users_set_password(username: str, password_stdin: bool) -> None:
    _set_password(resolve_servers(), username, password_stdin)
