"""`users`: accounts from the command line (create, list, show, activate, deactivate, set-password,
set-roles) and the audit log (`audit`). Every change is audited as the CLI's (no actor, via "cli")."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from auth_service.cli.common import fail, out, resolve_servers
from auth_service.cli.tables import events_table, parse_since, table, when
from auth_service.domain.admin.by_name import AdminByName
from auth_service.domain.admin.reads import AuditFilter, LoginRecordFilter
from auth_service.domain.admin.schemas import AdminUserPatch
from auth_service.domain.users.schemas import InvalidUserData, UserCreate
from auth_service.lib.errors import InvalidInput
from auth_service.settings import Settings

__all__ = ["create_first_admin", "parse_since", "quiet_logs", "table", "users"]

T = TypeVar("T")
_PAGE = 100
# Which argument a refused field came from, for the error line.
_FLAGS = {"username": "USERNAME", "email": "--email", "roles": "--role", "password": "password"}


_PASSWORD_STDIN = click.option(
    "--password-stdin", is_flag=True, help="read the password from stdin (else asked on a terminal, or generated)"
)


async def _with_users(settings: Settings, action: Callable[[AdminByName], Awaitable[T]]) -> T:
    """Run `action(AdminByName)` with what a user change needs from the container: a session,
    the hasher and the revocation store (nothing else is built)."""
    from auth_service.container import Resources

    resources = Resources(settings, pool_size=1)
    try:
        async with resources.session_factory() as session:
            return await action(
                AdminByName(
                    session,
                    resources.hasher,
                    resources.revocation,
                    resources.password_policy,
                    require_verified_email=settings.accounts.require_verified_email,
                    lifetimes=settings.links,
                )
            )
    finally:
        await resources.close()


def create_first_admin(settings: Settings) -> None:
    """The first admin (ADMIN_USERNAME, ADMIN_EMAIL, ADMIN_PASSWORD or a generated one), unless an
    admin exists. A generated password is printed last, boxed: the one line not to lose."""
    generated: list[str] = []

    async def run(users: AdminByName) -> None:
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


def quiet_logs() -> None:
    """The domain's log lines are for the service's logs: here only warnings, and on stderr, so
    stdout is the command's own output."""
    import logging

    import structlog

    # Processors too: ones left by an earlier configure_logging (stdlib's add_logger_name) cannot
    # run on a PrintLogger, and the next warning in the process would raise instead of printing.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        # The stderr of the moment, not the one at configure time (a test may have swapped it since).
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )


def _run_user_action(settings: Settings, action: Callable[[AdminByName], Awaitable[None]]) -> None:
    from redis.exceptions import RedisError

    from auth_service.lib.errors import AuthServiceError

    quiet_logs()
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


def _list_users(settings: Settings, role: str | None = None, inactive: bool = False) -> None:
    async def run(users: AdminByName) -> None:
        if role is not None:
            try:
                msgspec.convert({"roles": [role]}, AdminUserPatch)
            except msgspec.ValidationError:
                fail(f"--role: {role!r} is not a role name (a lowercase letter, then letters, digits, _ or -)")
        rows: list[Any] = []
        cursor: str | None = None
        while True:
            page = await users.list_users(limit=_PAGE, cursor=cursor, role=role, active=False if inactive else None)
            rows += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        rows.sort(key=lambda user: user.username.casefold())
        table(
            ["USERNAME", "E-MAIL", "ROLES", "ACTIVE", "VERIFIED", "CREATED", "ID"],
            [
                [
                    u.username,
                    u.email,
                    ",".join(u.roles) or "-",
                    "yes" if u.is_active else "no",
                    "yes" if u.email_verified else "no",
                    when(u.created_at),
                    u.id,
                ]
                for u in rows
            ],
        )
        which = " ".join(
            part for part in ("deactivated" if inactive else "", f"with role {role}" if role else "") if part
        )
        out(f"{len(rows)} user(s){' ' + which if which else ''}")

    _run_user_action(settings, run)


def _show_user(settings: Settings, username: str) -> None:
    async def run(users: AdminByName) -> None:
        user = await users.show(username)
        for label, value in (
            ("username", user.username),
            ("id", user.id),
            ("e-mail", f"{user.email} ({'verified' if user.email_verified else 'not verified'})"),
            ("roles", ",".join(user.roles) or "-"),
            ("active", "yes" if user.is_active else "no"),
            ("created", when(user.created_at)),
            ("updated", when(user.updated_at)),
        ):
            out(f"{label + ':':10} {value}")
        reads = users.reads()
        logins = await reads.login_records(LoginRecordFilter(user_id=uuid.UUID(user.id)), 5, None)
        out("")
        out("last logins:")
        table(
            ["AT", "IP", "RESULT", "USER AGENT"],
            [
                [when(r.at), r.ip_address, "ok" if r.success else r.failure_reason or "failed", r.user_agent or "-"]
                for r in logins.items
            ]
            or [["-", "-", "-", "-"]],
        )
        events = await reads.audit_events(AuditFilter(target_id=user.id), 10, None)
        names = await users.names_of(e.actor_id for e in events.items if e.actor_id)
        out("")
        out("last audit events:")
        events_table(events.items, names)

    _run_user_action(settings, run)


def _audit(settings: Settings, since: str | None, actor: str | None, action: str | None, limit: int) -> None:
    start = parse_since(since, dt.datetime.now(dt.UTC)) if since else None

    async def run(users: AdminByName) -> None:
        actor_id = None
        if actor is not None:
            actor_id = await users.admin().id_of(actor)
        where = AuditFilter(actor_id=actor_id, action=action, since=start)
        reads = users.reads()
        events: list[Any] = []
        cursor: str | None = None
        while len(events) < limit:
            page = await reads.audit_events(where, min(100, limit - len(events)), cursor)
            events += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        names = await users.names_of(e.actor_id for e in events if e.actor_id)
        events_table(events, names)
        more = " (newest first; --limit for more)" if len(events) == limit else ""
        out(f"{len(events)} event(s){more}")

    _run_user_action(settings, run)


def _set_roles(settings: Settings, username: str, roles: str) -> None:
    wanted = [role.strip() for role in roles.split(",") if role.strip()]

    async def run(users: AdminByName) -> None:
        before = await users.show(username)
        user = await users.set_roles(username, wanted)
        if sorted(before.roles) == sorted(user.roles):
            out(f"roles of {user.username!r} unchanged: {','.join(user.roles) or '-'}")
            return
        out(f"roles of {user.username!r} are now {','.join(user.roles) or '-'}; all its tokens are revoked")

    _run_user_action(settings, run)


def _create_user(settings: Settings, username: str, email: str, roles: list[str], password_stdin: bool) -> None:
    password, generated = _read_password(password_stdin)

    async def run(users: AdminByName) -> None:
        user = await users.create(UserCreate(username=username, email=email, password=password, roles=roles))
        out(f"created user {user.username!r} id={user.id} roles={','.join(user.roles) or '-'}")
        if generated:
            out(f"  generated password (shown once): {password}")

    _run_user_action(settings, run)


def _set_active(settings: Settings, username: str, active: bool) -> None:
    async def run(users: AdminByName) -> None:
        user = await users.set_active(username, active)
        out(f"user {user.username!r} is now {'active' if active else 'deactivated; all its tokens are revoked'}")

    _run_user_action(settings, run)


def _set_password(settings: Settings, username: str, password_stdin: bool) -> None:
    password, generated = _read_password(password_stdin)

    async def run(users: AdminByName) -> None:
        user = await users.set_password(username, password)
        out(f"password of {user.username!r} changed; all its tokens are revoked")
        if generated:
            out(f"  generated password (shown once): {password}")

    _run_user_action(settings, run)


def _reset_mfa(settings: Settings, username: str) -> None:
    async def run(users: AdminByName) -> None:
        removed = await users.reset_mfa(username)
        out(f"second factors of {username!r} removed ({removed}); all its sessions are ended")

    _run_user_action(settings, run)


@click.group(help="Accounts: create, list, show, activate, deactivate, set a password or roles; the audit log.")
def users() -> None:
    """User administration."""


@users.command("create", help="Add a user; the password from stdin, asked on a terminal, or generated.")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--role", "roles", multiple=True, help="repeatable, e.g. --role admin")
@_PASSWORD_STDIN
def users_create(username: str, email: str, roles: tuple[str, ...], password_stdin: bool) -> None:
    _create_user(resolve_servers(as_service=True), username, email, list(roles), password_stdin)


@users.command("list", help="Every user: name, e-mail, roles, active, verified, created, id.")
@click.option("--role", default=None, help="only users with this role")
@click.option("--inactive", is_flag=True, help="only deactivated users")
def users_list(role: str | None, inactive: bool) -> None:
    _list_users(resolve_servers(as_service=True), role, inactive)


@users.command("show", help="One user's details, last logins and last audit events.")
@click.argument("username")
def users_show(username: str) -> None:
    _show_user(resolve_servers(as_service=True), username)


@users.command("deactivate", help="Disable a user; all its tokens stop working at once.")
@click.argument("username")
def users_deactivate(username: str) -> None:
    _set_active(resolve_servers(as_service=True), username, False)


@users.command("activate", help="Re-enable a user; tokens from before stay dead.")
@click.argument("username")
def users_activate(username: str) -> None:
    _set_active(resolve_servers(as_service=True), username, True)


@users.command("set-password", help="Change a password; all its tokens stop working.")
@click.argument("username")
@_PASSWORD_STDIN
def users_set_password(username: str, password_stdin: bool) -> None:
    _set_password(resolve_servers(as_service=True), username, password_stdin)


@users.command("set-roles", help="Replace a user's roles (comma-separated, '' for none); its tokens stop working.")
@click.argument("username")
@click.argument("roles")
def users_set_roles(username: str, roles: str) -> None:
    _set_roles(resolve_servers(as_service=True), username, roles)


@users.command("reset-mfa", help="Remove a user's TOTP, passkeys and recovery codes; its sessions end.")
@click.argument("username")
def users_reset_mfa(username: str) -> None:
    _reset_mfa(resolve_servers(as_service=True), username)


@users.command("audit", help="The audit log, newest first: who did what to whom.")
@click.option("--since", default=None, help="a duration back from now (30m, 1h, 7d) or an ISO 8601 time")
@click.option("--actor", default=None, help="only what this user did (a username)")
@click.option("--action", default=None, help="only this action, e.g. user.roles")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000), help="at most this many")
def users_audit(since: str | None, actor: str | None, action: str | None, limit: int) -> None:
    _audit(resolve_servers(as_service=True), since, actor, action, limit)
