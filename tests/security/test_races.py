"""Races between opening a session and revoking one, against a real uvicorn server (real
concurrency: the in-process test client runs one request at a time). Each race is forced or
looped until it really overlapped, and the overlap is measured and asserted, not hoped for.

- A refresh racing a logout, logout everywhere or theft detection: no live successor.
- A login whose password check overlaps a password change, logout everywhere or deactivation:
  no surviving session.
- Concurrent wrong passwords for one username: exactly the budget's remaining allowance.
- A login whose password check overlaps the deletion of its user: 401, recorded without a user.
- Owner's changes (password, e-mail) proved by a password that another change or a reset
  replaced while they waited: refused, nothing written.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from auth_service.container import Resources
from auth_service.lib.crypto.tokens import hash_refresh_token
from auth_service.settings import Settings
from db.models import User
from tests.e2e.conftest import api_server
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.security.test_revocation import live_in_family, users_of
from tests.security.test_revocation import resources as resources

LOGIN, REFRESH, LOGOUT, VERIFY = (
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/verify",
)
GENEROUS = {
    "RATE_LIMIT_LOGIN": "1000000/minute",
    "RATE_LIMIT_LOGIN_FAILURES": "1000000/minute",
    "RATE_LIMIT_REFRESH": "1000000/minute",
    "RATE_LIMIT_API": "1000000/minute",
    "RATE_LIMIT_PUBLIC": "1000000/minute",
}


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    # One hash thread: a few logins queue behind each other, which opens the window of race 4.
    with api_server(settings, tmp_path, REFRESH_REUSE_GRACE_SECONDS="0", PASSWORD_HASH_WORKERS="1", **GENEROUS) as base:
        yield base


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
async def alice(settings: Settings) -> User:
    return await create_user(settings, username="alice")


async def login(http: httpx.AsyncClient, password: str = DEFAULT_PASSWORD, username: str = "alice") -> dict[str, Any]:
    response = await http.post(LOGIN, json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def assert_dead(http: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    verified = await http.get(VERIFY, headers=bearer(tokens["access_token"]))
    assert verified.status_code == 401, verified.text
    refreshed = await http.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.text


async def opened_after_revocation(resources: Any, attempt: httpx.Response) -> bool:
    """Whether the login's session opened after the user's last "every token dies" instant."""
    import base64
    import json

    from sqlalchemy import text

    payload = attempt.json()["access_token"].split(".")[1]
    sid = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]
    async with resources.session_factory() as session:
        row = (
            await session.execute(
                text(
                    "SELECT min(t.issued_at) AS opened, u.tokens_valid_after AS cut FROM refresh_tokens t "
                    "JOIN users u ON u.id = t.user_id WHERE t.family_id = CAST(:sid AS uuid) GROUP BY u.tokens_valid_after"
                ),
                {"sid": sid},
            )
        ).one()
    return row.cut is not None and row.opened >= row.cut


async def timed(spans: dict[str, tuple[float, float]], name: str, call: Any, wait: float = 0) -> Any:
    await asyncio.sleep(wait)
    started = time.perf_counter()
    result = await call()
    spans[name] = (started, time.perf_counter())
    return result


def overlapped(spans: dict[str, tuple[float, float]], a: str, b: str) -> bool:
    (a0, a1), (b0, b1) = spans[a], spans[b]
    return a0 < b1 and b0 < a1


# ---- refresh racing a revocation (2) --------------------------------------------------------


async def _waiting_on_locks(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(value)


async def _until_waiting(conn: asyncpg.Connection, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await _waiting_on_locks(conn)) < count:
        assert time.monotonic() < deadline, f"only {seen} requests reached their locks"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("everywhere", [False, True], ids=["logout", "everywhere"])
async def test_refresh_and_logout_forced_to_overlap_leave_no_live_successor(
    http: httpx.AsyncClient, alice: User, settings: Settings, everywhere: bool
) -> None:
    """The rotation is held inside its transaction (a test lock on the token row) while the
    logout arrives; both are seen waiting on locks before the hold is released."""
    tokens = await login(http)
    plain = settings.database.url.replace("postgresql+asyncpg://", "postgresql://")
    holder, watcher = await asyncpg.connect(plain), await asyncpg.connect(plain)
    try:
        await holder.execute("BEGIN")
        await holder.execute(
            "SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE", hash_refresh_token(tokens["refresh_token"])
        )
        refresh = asyncio.ensure_future(http.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}))
        await _until_waiting(watcher, 1)
        body = {"everywhere": True} if everywhere else None
        logout = asyncio.ensure_future(http.post(LOGOUT, headers=bearer(tokens["access_token"]), json=body))
        await _until_waiting(watcher, 2)  # the overlap really happened
        await holder.execute("ROLLBACK")
        refreshed, logged_out = await asyncio.gather(refresh, logout)
    finally:
        await holder.close()
        await watcher.close()
    assert logged_out.status_code == 204, logged_out.text
    assert refreshed.status_code == 200, refreshed.text  # the rotation was first in the queue
    await assert_dead(http, refreshed.json())
    assert await live_in_family(settings, tokens["refresh_token"]) == 0


@pytest.mark.parametrize("revoke", ["logout", "everywhere", "theft"])
async def test_refresh_racing_a_revocation_in_a_loop_never_leaves_a_live_successor(
    http: httpx.AsyncClient, alice: User, settings: Settings, revoke: str
) -> None:
    """Fired together, 0-12 ms apart and either first, until they overlapped (both in flight at
    once, the rotation succeeding) at least 10 times. After every trial the session has no
    unrevoked refresh token, and the successor, if one was minted, is refused."""
    rng = random.Random(f"race-{revoke}")
    overlaps = trials = 0
    while overlaps < 10 and trials < 300:
        trials += 1
        tokens = await login(http)
        if revoke == "theft":  # a spent copy of the session's token, replayed while the owner refreshes
            stolen = tokens["refresh_token"]
            tokens = (await http.post(REFRESH, json={"refresh_token": stolen})).json()
            other = {"url": REFRESH, "json": {"refresh_token": stolen}}
        else:
            body = {"everywhere": True} if revoke == "everywhere" else None
            other = {"url": LOGOUT, "json": body, "headers": bearer(tokens["access_token"])}
        delay, refresh_first = rng.uniform(0, 0.012), rng.random() < 0.5
        spans: dict[str, tuple[float, float]] = {}
        refreshed, revoked = await asyncio.gather(
            timed(
                spans,
                "refresh",
                lambda tokens=tokens: http.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}),
                0 if refresh_first else delay,
            ),
            timed(spans, "revoke", lambda other=other: http.post(**other), delay if refresh_first else 0),
        )
        assert revoked.status_code in (204, 401), revoked.text
        assert await live_in_family(settings, tokens["refresh_token"]) == 0
        if refreshed.status_code == 200:
            await assert_dead(http, refreshed.json())
            overlaps += overlapped(spans, "refresh", "revoke")
        else:
            assert refreshed.status_code == 401, refreshed.text
        await assert_dead(http, tokens)
    print(f"\n{revoke}: {overlaps} overlaps in {trials} trials")
    assert overlaps >= 10, f"only {overlaps} overlapping trials with a successful rotation in {trials}"


# ---- a login in flight during a password change (4) -----------------------------------------


@pytest.mark.parametrize("change", ["set-password", "everywhere", "deactivate"])
async def test_logins_racing_a_revocation_never_keep_a_session(
    http: httpx.AsyncClient, alice: User, settings: Settings, resources: Any, change: str
) -> None:
    """The hash pool is kept busy (one thread, failing logins of another user queued ahead),
    so a login with alice's current password waits between reading her row and opening the
    session; the change commits in that window. Looped until the change committed inside the
    login's request at least 5 times: whatever the login answered, its tokens are dead after."""
    await create_user(settings, username="bob")
    rng = random.Random(f"login-{change}")
    password = DEFAULT_PASSWORD
    overlaps = trials = 0
    while overlaps < 5 and trials < 60:
        trials += 1
        anchor = await login(http, password)
        new_password = f"password number {trials:04d}"
        spans: dict[str, tuple[float, float]] = {}

        async def revoke(new_password: str = new_password, anchor: dict[str, Any] = anchor) -> None:
            if change == "everywhere":
                response = await http.post(LOGOUT, headers=bearer(anchor["access_token"]), json={"everywhere": True})
                assert response.status_code == 204
                return
            async with users_of(resources) as users:
                if change == "set-password":
                    await users.set_password("alice", new_password)
                else:
                    await users.set_active("alice", False)

        busy = [http.post(LOGIN, json={"username": "bob", "password": "wrong password!"}) for _ in range(4)]
        results = await asyncio.gather(
            *busy,
            timed(
                spans,
                "login",
                lambda password=password: http.post(LOGIN, json={"username": "alice", "password": password}),
                0.002,
            ),
            timed(spans, "revoke", revoke, rng.uniform(0.01, 0.08)),
        )
        attempt = results[4]
        (l0, l1), (_, r1) = spans["login"], spans["revoke"]
        overlaps += l0 < r1 < l1  # the change committed while the login was in flight
        if attempt.status_code == 200 and change == "everywhere" and await opened_after_revocation(resources, attempt):
            # The login read alice's row after the logout had committed (a busy machine can delay
            # it past the revocation): a new session, which must live. Every earlier one is dead.
            assert (await http.get(VERIFY, headers=bearer(attempt.json()["access_token"]))).status_code == 200
        elif attempt.status_code == 200:
            await assert_dead(http, attempt.json())
        else:
            assert attempt.status_code == 401, attempt.text
        await assert_dead(http, anchor)
        if change == "set-password":
            password = new_password
        elif change == "deactivate":
            async with users_of(resources) as users:
                await users.set_active("alice", True)
    print(f"\n{change}: {overlaps} overlaps in {trials} trials")
    assert overlaps >= 5, f"only {overlaps} overlapping trials in {trials}"


# ---- a login in flight while its user is deleted -------------------------------------------


async def _login_records_of(settings: Settings, username: str) -> list[tuple[Any, bool]]:
    conn = await asyncpg.connect(settings.database.url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT user_id, success FROM login_records WHERE username = $1", username)
        return [(row["user_id"], row["success"]) for row in rows]
    finally:
        await conn.close()


@pytest.mark.parametrize("password", ["wrong password!", DEFAULT_PASSWORD], ids=["wrong", "right"])
async def test_a_login_racing_the_deletion_of_its_user_is_refused_and_recorded_without_a_user(
    http: httpx.AsyncClient, settings: Settings, password: str
) -> None:
    """The hash pool is kept busy (one thread, failing logins of another user queued ahead), so
    a login reads its user's row, then waits for the hash while an admin deletes the user.
    Looped until the deletion committed inside the login's request at least 5 times: the login
    answers 401 as for an unknown user (never 500), and its failure is recorded with no user."""
    await create_user(settings, username="bob")
    await create_user(settings, username="root", roles=["admin"])
    admin = bearer((await login(http, username="root"))["access_token"])
    rng = random.Random(f"delete-{password}")
    overlaps = trials = 0
    while overlaps < 5 and trials < 40:
        trials += 1
        victim = await create_user(settings, username=f"victim{trials}")
        spans: dict[str, tuple[float, float]] = {}
        busy = [http.post(LOGIN, json={"username": "bob", "password": "wrong password!"}) for _ in range(4)]
        results = await asyncio.gather(
            *busy,
            timed(
                spans,
                "login",
                lambda name=victim.username: http.post(LOGIN, json={"username": name, "password": password}),
                0.002,
            ),
            timed(
                spans,
                "delete",
                lambda user_id=victim.id: http.delete(f"/api/v1/admin/users/{user_id}", headers=admin),
                rng.uniform(0.01, 0.08),
            ),
        )
        attempt, deleted = results[4], results[5]
        assert deleted.status_code == 204, deleted.text
        (l0, l1), (_, d1) = spans["login"], spans["delete"]
        overlaps += l0 < d1 < l1  # the deletion committed while the login was in flight
        if attempt.status_code == 200:  # the session opened before the deletion (which ended it)
            await assert_dead(http, attempt.json())
            continue
        assert attempt.status_code == 401, attempt.text
        assert attempt.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"
        assert await _login_records_of(settings, victim.username) == [(None, False)]
    print(
        f"\ndelete, {'right' if password == DEFAULT_PASSWORD else 'wrong'} password: {overlaps} overlaps in {trials} trials"
    )
    assert overlaps >= 5, f"only {overlaps} overlapping trials in {trials}"


# ---- the per-username failure budget under concurrency (5) ----------------------------------


async def test_concurrent_wrong_passwords_get_exactly_the_remaining_budget(settings: Settings, tmp_path: Path) -> None:
    """40 wrong passwords for one account from 40 addresses, all in flight at once: exactly the
    budget's 10 reach the password check, the other 30 are refused before it. Three rounds, on
    three accounts; in each, every request started before any ended (measured)."""
    env = {**GENEROUS, "RATE_LIMIT_LOGIN_FAILURES": "10/15minute", "TRUSTED_PROXIES": "127.0.0.1"}
    with api_server(settings, tmp_path, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for round_ in range(3):
                username = f"target{round_}"
                await create_user(settings, username=username)
                spans: dict[str, tuple[float, float]] = {}
                responses = await asyncio.gather(
                    *(
                        timed(
                            spans,
                            str(i),
                            lambda i=i, username=username: client.post(
                                LOGIN,
                                json={"username": username, "password": f"guess {i}"},
                                headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
                            ),
                        )
                        for i in range(40)
                    )
                )
                statuses = sorted(r.status_code for r in responses)
                assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values()), "not all in flight"
                assert statuses.count(401) == 10 and statuses.count(429) == 30, statuses
                # The right password from a new address: the budget is spent, so it waits too.
                late = await client.post(
                    LOGIN,
                    json={"username": username, "password": DEFAULT_PASSWORD},
                    headers={"X-Forwarded-For": "203.0.113.99"},
                )
                assert late.status_code == 429


async def test_a_right_password_gives_its_reserved_slot_back(settings: Settings, tmp_path: Path) -> None:
    env = {**GENEROUS, "RATE_LIMIT_LOGIN_FAILURES": "3/15minute", "TRUSTED_PROXIES": "127.0.0.1"}
    await create_user(settings, username="carol")
    with api_server(settings, tmp_path, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for i in range(5):  # successes from new addresses spend nothing
                address = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
                ok = await client.post(LOGIN, json={"username": "carol", "password": DEFAULT_PASSWORD}, headers=address)
                assert ok.status_code == 200
            statuses = [
                (
                    await client.post(
                        LOGIN,
                        json={"username": "carol", "password": "wrong"},
                        headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
                    )
                ).status_code
                for i in range(4)
            ]
    assert statuses == [401, 401, 401, 429]


# ---- owner's changes checked against a password that was replaced meanwhile (6) -------------

CHANGE, ME, CONFIRM = "/api/v1/users/me/password", "/api/v1/users/me", "/api/v1/auth/password-reset/confirm"


async def _reset_link(http: httpx.AsyncClient, conn: asyncpg.Connection, settings: Settings) -> str:
    assert (await http.post("/api/v1/auth/password-reset", json={"email": "alice@example.com"})).status_code == 202
    deadline = time.monotonic() + 10
    while (
        token_id := await conn.fetchval(
            "SELECT payload->>'token_id' FROM notifications WHERE kind = $1", "password_reset"
        )
    ) is None:
        assert time.monotonic() < deadline, "no reset mail was queued"
        await asyncio.sleep(0.05)
    return Resources(settings).account_links.token(uuid.UUID(token_id), "reset")


def _owners_change(http: httpx.AsyncClient, kind: str, access: str, new_password: str) -> Any:
    if kind == "password":
        body = {"current_password": DEFAULT_PASSWORD, "new_password": new_password}
        return http.post(CHANGE, json=body, headers=bearer(access))
    body = {"current_password": DEFAULT_PASSWORD, "email": "thief@example.com"}
    return http.patch(ME, json=body, headers=bearer(access))


@pytest.mark.parametrize("winner", ["change", "reset"])
@pytest.mark.parametrize("loser", ["password", "email"])
async def test_a_change_proved_by_a_password_replaced_while_it_waited_is_refused_and_writes_nothing(
    http: httpx.AsyncClient, alice: User, settings: Settings, winner: str, loser: str
) -> None:
    """Both requests are held at alice's row lock (a test transaction holds it) after their
    password checks, the winner first in the queue; both are seen waiting before the hold is
    released. The winner (a change with the same old password, or the owner's reset) lands; the
    loser answers what a login that raced a password change answers, 401 AUTH_INVALID_CREDENTIALS,
    and changes nothing: the winner's password works, the loser's does not, no session of the
    loser lives, the address stays."""
    first, second = await login(http), await login(http)
    plain = settings.database.url.replace("postgresql+asyncpg://", "postgresql://")
    holder, watcher = await asyncpg.connect(plain), await asyncpg.connect(plain)
    try:
        link = await _reset_link(http, watcher, settings) if winner == "reset" else None
        for tokens in (first, second):  # their revocation state cached: auth reads no row
            assert (await http.get(VERIFY, headers=bearer(tokens["access_token"]))).status_code == 200
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", alice.id)
        if link is not None:
            winning = asyncio.ensure_future(
                http.post(CONFIRM, json={"token": link, "new_password": "the winner's secret"})
            )
        else:
            winning = asyncio.ensure_future(
                _owners_change(http, "password", first["access_token"], "the winner's secret")
            )
        await _until_waiting(watcher, 1)
        losing = asyncio.ensure_future(_owners_change(http, loser, second["access_token"], "the loser's secret"))
        await _until_waiting(watcher, 2)  # the overlap really happened
        await holder.execute("ROLLBACK")
        won, lost = await asyncio.gather(winning, losing)
        assert won.status_code == (204 if link is not None else 200), won.text
        assert lost.status_code == 401 and lost.json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS", lost.text
        live = await watcher.fetchval(
            "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND spent_at IS NULL",
            alice.id,
        )
        assert live == (0 if link is not None else 1)  # the winning change's own session, or none
        email = await watcher.fetchval("SELECT email FROM users WHERE id = $1", alice.id)
        assert email == "alice@example.com"
        reasons = await watcher.fetch("SELECT failure_reason FROM login_records WHERE NOT success")
        assert [r["failure_reason"] for r in reasons] == ["credentials_changed"]
    finally:
        await holder.close()
        await watcher.close()
    for tokens in (first, second):
        await assert_dead(http, tokens)
    refused = await http.post(LOGIN, json={"username": "alice", "password": "the loser's secret"})
    assert refused.status_code == 401
    await login(http, "the winner's secret")
