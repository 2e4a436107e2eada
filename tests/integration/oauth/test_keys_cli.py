"""`just init` makes the first signing key; `just keys list | rotate [--now] | retire KID` print
what they did, write the audit events, and refuse what they must, in one line."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from auth_service.cli.main import main
from auth_service.settings import Settings
from db.models import AuditEvent, SigningKey
from tests.conftest import run_engine

KID = r"[A-Za-z0-9_-]{43}"


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> Any:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("DATABASE_URL", settings.database.owner_url)
    monkeypatch.setenv("REDIS_URL", settings.redis.url)
    monkeypatch.setenv("JWT_SECRET_KEY", settings.tokens.secret)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _read(settings: Settings) -> tuple[list[SigningKey], list[tuple[str, str | None]]]:
    async def read() -> tuple[list[SigningKey], list[tuple[str, str | None]]]:
        async with async_sessionmaker(run_engine(settings.database.url))() as session:
            keys = list((await session.execute(select(SigningKey))).scalars())
            events = [
                (row[0], row[1]) for row in await session.execute(select(AuditEvent.action, AuditEvent.target_id))
            ]
            return keys, events

    return asyncio.run(read())


def test_the_key_commands_say_what_they_did(cli: Any, settings: Settings) -> None:
    code, out, _ = cli("keys", "list")
    assert code == 0 and "0 key(s); published: 0" in out

    code, out, _ = cli("keys", "rotate")  # nothing signs yet: the first key signs at once
    assert code == 0 and re.search(rf"created signing key ({KID}) \(ES256\): signing now", out), out
    first = re.search(KID, out).group(0)  # type: ignore[union-attr]

    code, out, _ = cli("keys", "rotate")
    assert code == 0 and "published now, signs from" in out and "KEY_ROTATION_DELAY=15m" in out
    second = re.search(KID, out).group(0)  # type: ignore[union-attr]

    code, out, err = cli("keys", "rotate")
    assert code == 2 and f"error: key {second} already waits to sign" in err and err.count("\n") == 1

    code, out, _ = cli("keys", "list")
    assert code == 0 and "2 key(s); published: 2" in out
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:-1]}
    assert rows == {first: "active", second: "next"}

    code, out, _ = cli("keys", "retire", first)
    assert code == 0 and f"retired signing key {first}" in out and f"signing key {second} (ES256) signs now" in out
    code, out, err = cli("keys", "retire", first)
    assert code == 2 and "no published key" in err

    keys, events = _read(settings)
    states = {k.kid: (k.state, k.private_key is None) for k in keys}
    assert states == {first: ("removed", True), second: ("active", False)}
    assert ("key.rotate", first) in events and ("key.rotate", second) in events and ("key.retire", first) in events


def test_init_makes_the_first_key_once(cli: Any, settings: Settings) -> None:
    code, out, _ = cli("init")
    assert code == 0 and re.search(rf"created signing key {KID} \(ES256\), active", out), out
    code, out, _ = cli("init")
    assert code == 0 and "a signing key exists; nothing to do" in out
    keys, events = _read(settings)
    assert len(keys) == 1 and ("key.create", keys[0].kid) in events
