"""`keys`: the managed signing keys (list, rotate, retire) and the access-token key in use
(never a secret). Each command prints what it did and writes the audit event."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from auth_service.cli.common import out, resolve_servers
from auth_service.cli.output import fail
from auth_service.cli.tables import table, when
from auth_service.settings import Settings

__all__ = ["ensure_first_key", "keys"]

T = TypeVar("T")


def _show_keys(settings: Settings) -> None:
    from auth_service.container import Resources

    resources = Resources(settings)
    tokens = resources.tokens
    out(f"algorithm: {tokens.algorithm}")
    if settings.tokens.managed:

        async def signing() -> str:
            try:
                await resources.keyring.load()
                return tokens.key_id or "(none may sign: just keys rotate --now)"
            finally:
                await resources.close()

        out(f"key id:    {asyncio.run(signing())}")
        out("key:       the managed signing key (just keys list)")
        return
    out(f"key id:    {tokens.key_id}")
    source = settings.tokens.private_key_file or "JWT_SECRET_KEY (never printed)"
    out(f"key:       {source}")


def _with_ring(settings: Settings, action: Callable[..., Awaitable[T]]) -> T:
    from auth_service.cli.users import quiet_logs
    from auth_service.container import Resources
    from auth_service.lib.keyring import RotationRefused

    quiet_logs()

    async def run() -> T:
        resources = Resources(settings, pool_size=1)
        try:
            return await action(resources.keyring)
        finally:
            await resources.close()

    try:
        return asyncio.run(run())
    except RotationRefused as exc:
        fail(str(exc))
        raise  # unreachable: fail exits


def ensure_first_key(settings: Settings) -> None:
    """`just init`: the first signing key (SIGNING_KEY_ALGORITHM), unless one may sign."""
    from auth_service.lib.audit import CLI

    made = _with_ring(settings, lambda ring: ring.ensure(CLI))
    if made is None:
        out("a signing key exists; nothing to do")
    else:
        out(f"created signing key {made.kid} ({made.algorithm}), active")


@click.group(help="Signing keys: list, rotate, retire; show the access-token key.")
def keys() -> None:
    """Token keys."""


@keys.command("show", help="The access-token algorithm and key id (never the secret).")
def keys_show() -> None:
    _show_keys(resolve_servers(reach=False))


@keys.command("list", help="Every managed signing key: kid, algorithm, state and its dates.")
def keys_list() -> None:
    settings = resolve_servers()
    listed = _with_ring(settings, lambda ring: ring.listing())
    now = dt.datetime.now(dt.UTC)
    rows = [
        [
            k.kid,
            k.algorithm,
            k.state(now),
            when(k.created_at),
            when(k.activates_at),
            when(k.retired_at),
            when(k.removes_at or k.removed_at),
        ]
        for k in listed
    ]
    table(["kid", "algorithm", "state", "created", "signs from", "retired", "removed"], rows)
    out(f"{len(rows)} key(s); published: {sum(1 for k in listed if k.state(now) != 'removed')}")


@keys.command("rotate", help="Add a next key: published now, signing after KEY_ROTATION_DELAY.")
@click.option(
    "--now",
    "now_too",
    is_flag=True,
    help="sign with it at once (a compromised key: caches may refuse tokens for up to 5 min)",
)
def keys_rotate(now_too: bool) -> None:
    from auth_service.lib.audit import CLI

    settings = resolve_servers()
    made = _with_ring(settings, lambda ring: ring.rotate(CLI, now_too=now_too))
    if now_too or made.created_at is None or made.activates_at <= made.created_at:
        out(f"created signing key {made.kid} ({made.algorithm}): signing now")
    else:
        out(
            f"created signing key {made.kid} ({made.algorithm}): published now, signs from "
            f"{made.activates_at:%Y-%m-%d %H:%M:%S} UTC (KEY_ROTATION_DELAY={settings.keys.rotation_delay})"
        )


@keys.command("retire", help="Remove a key now: unpublished, its tokens refused within KEY_REFRESH_SECONDS.")
@click.argument("kid")
def keys_retire(kid: str) -> None:
    from auth_service.lib.audit import CLI

    settings = resolve_servers()
    retired, successor = _with_ring(settings, lambda ring: ring.retire(kid, CLI))
    out(f"retired signing key {retired.kid}: unpublished; tokens it signed are refused")
    if successor is not None:
        out(f"signing key {successor.kid} ({successor.algorithm}) signs now")
