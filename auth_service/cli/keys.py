"""`keys`: the signing key in use (never the secret)."""

from __future__ import annotations

import click

from auth_service.cli.common import out, resolve_servers
from auth_service.settings import Settings

__all__ = ["keys"]


def _show_keys(settings: Settings) -> None:
    from auth_service.container import Resources

    tokens = Resources(settings).tokens
    out(f"algorithm: {tokens.algorithm}")
    out(f"key id:    {tokens.key_id}")
    source = settings.tokens.private_key_file or "JWT_SECRET_KEY (never printed)"
    out(f"key:       {source}")


@click.group(help="Signing keys.")
def keys() -> None:
    """Token keys."""


@keys.command("show", help="The signing algorithm and key id (never the secret).")
def keys_show() -> None:
    _show_keys(resolve_servers(reach=False))
