"""The CLI's admin recipes in process (the same click commands `just` runs): aligned tables,
filters, refusals naming the flag, and the events they write (actor null, via "cli")."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from sqlalchemy import text

from auth_service.cli.main import main
from auth_service.cli.users import parse_since
from auth_service.settings import Settings
from tests.conftest import run_engine
from tests.factories import create_user


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> Any:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("DATABASE_URL", settings.database.owner_url)
    monkeypatch.setenv("REDIS_URL", settings.redis.url)
    monkeypatch.setenv("JWT_SECRET_KEY", "x" * 40)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _users(settings: Settings) -> None:
    async def make() -> None:
        await create_user(settings, username="root", roles=["admin"])
        await create_user(settings, username="dora", roles=["user", "support"])
        await create_user(settings, username="a-much-longer-username", roles=["support"])
        await create_user(settings, username="old", is_active=False)

    asyncio.run(make())


def _events(settings: Settings) -> list[Any]:
    async def read() -> list[Any]:
        async with run_engine(settings.database.url).connect() as conn:
            return list((await conn.execute(text("SELECT * FROM audit_events ORDER BY at, id"))).mappings())

    return asyncio.run(read())


def test_list_users_filters_by_role_and_inactive_in_an_aligned_table(cli: Any, settings: Settings) -> None:
    _users(settings)
    code, out, _ = cli("list-users", "--role", "support")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["USERNAME", "E-MAIL", "ROLES", "ACTIVE", "VERIFIED", "CREATED", "ID"]
    assert [line.split()[0] for line in lines[1:-1]] == ["a-much-longer-username", "dora"]
    assert lines[-1] == "2 user(s) with role support"
    for header in ("E-MAIL", "ROLES", "ACTIVE", "ID"):
        column = lines[0].index(header)
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:-1]), header
    code, out, _ = cli("list-users", "--inactive")
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["old"]
    assert out.splitlines()[-1] == "1 user(s) deactivated"
    code, _, err = cli("list-users", "--role", "Not A Role")
    assert code == 2 and err.startswith("error: --role: ")


def test_set_roles_show_user_and_audit(cli: Any, settings: Settings) -> None:
    _users(settings)
    code, out, _ = cli("set-roles", "dora", "user")
    assert code == 0 and out.strip() == "roles of 'dora' are now user; all its tokens are revoked"
    code, out, _ = cli("set-roles", "dora", "")
    assert code == 0 and out.strip() == "roles of 'dora' are now -; all its tokens are revoked"
    code, _, err = cli("set-roles", "dora", "Bad Role")
    assert code == 2 and err.startswith("error: --role: "), err
    code, _, err = cli("set-roles", "nobody", "user")
    assert code == 2 and err.strip() == "error: no user named 'nobody'"
    for refused in (("set-roles", "root", "user"), ("deactivate-user", "root")):
        code, _, err = cli(*refused)
        assert (
            code == 2 and err.strip() == "error: this is the last admin who can sign in: make another user admin first"
        )
    code, out, _ = cli("deactivate-user", "dora")
    assert code == 0
    events = _events(settings)
    # The two refusals are recorded too, between the changes, as the CLI's.
    assert [e["action"] for e in events] == [
        "user.roles",
        "user.roles",
        "admin.denied",
        "admin.denied",
        "user.deactivate",
    ]
    assert [e["details"].get("reason") for e in events if e["action"] == "admin.denied"] == ["last_admin"] * 2
    assert all(e["actor_id"] is None and e["details"]["via"] == "cli" for e in events)

    code, out, _ = cli("show-user", "DORA")
    assert code == 0
    assert "roles:     -" in out and "active:    no" in out and "e-mail:    dora@example.com (verified)" in out
    assert out.count("user.roles") == 2 and "user.deactivate" in out

    code, out, _ = cli("audit", "--since", "1h", "--action", "user.roles")
    rows = out.splitlines()
    assert code == 0 and rows[-1] == "2 event(s)"
    assert [row.split()[2:4] for row in rows[1:-1]] == [["cli", "user.roles"]] * 2
    code, out, _ = cli("audit", "--limit", "1")
    assert out.splitlines()[-1] == "1 event(s) (newest first; --limit for more)" and "user.deactivate" in out
    code, out, _ = cli("audit", "--actor", "root")
    assert code == 0 and out.splitlines()[-1] == "0 event(s)"
    code, _, err = cli("audit", "--since", "yesterday")
    assert code == 2 and err.startswith("error: --since: ")


def test_create_user_from_the_cli_is_audited_without_the_password(
    cli: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "a password only the operator knows"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    code, _, err = cli("create-user", "eve", "--email", "eve@example.com", "--role", "ops", "--password-stdin")
    assert code == 0, err
    [event] = _events(settings)
    assert event["action"] == "user.create" and event["actor_id"] is None and event["actor_ip"] is None
    assert event["details"] == {"username": "eve", "roles": ["ops"], "invited": False, "via": "cli"}
    assert secret not in str(dict(event))


def test_parse_since_reads_durations_and_instants() -> None:
    import datetime as dt

    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    assert parse_since("30m", now) == now - dt.timedelta(minutes=30)
    assert parse_since("2d", now) == now - dt.timedelta(days=2)
    assert parse_since("2026-12-01T08:00", now) == dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def test_reset_mfa_removes_the_factors_and_is_audited_as_the_clis(cli: Any, settings: Settings) -> None:
    _users(settings)

    async def enrol_dora() -> None:
        async with run_engine(settings.database.url).begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO mfa_totp (user_id, secret_ciphertext, confirmed_at) "
                    "SELECT id, '\\x00'::bytea, now() FROM users WHERE username = 'dora'"
                )
            )

    asyncio.run(enrol_dora())
    code, out, _ = cli("reset-mfa", "dora")
    assert code == 0 and out.strip() == "second factors of 'dora' removed (1); all its sessions are ended"
    code, _, err = cli("reset-mfa", "nobody")
    assert code == 2 and err.strip() == "error: no user named 'nobody'"
    (event,) = [e for e in _events(settings) if e["action"] == "user.mfa_reset"]
    assert event["actor_id"] is None and event["details"]["via"] == "cli"
    assert event["details"]["factors_removed"] == 1
