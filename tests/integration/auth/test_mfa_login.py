"""The login's second step (TOTP and recovery codes) against real PostgreSQL and Redis: the
challenge, the codes each step accepts, replay (across two app instances and after a Redis
FLUSHALL of the test's own db), the mfa_token's rules, the limits, and `amr`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.app import create_app
from auth_service.lib.crypto.totp import current_step
from auth_service.settings import Settings
from db.models import LoginRecord, MfaTotp, Notification, RefreshToken, User
from tests.conftest import make_settings
from tests.factories import bearer
from tests.integration.auth.mfa import PeerFromHeader, challenge, code_at, enrol, finish, password_login
from tests.integration.conftest import login

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def mfa_settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url, rate_limit_mfa="1000/minute", rate_limit_login_failures="1000/minute")


@pytest.fixture
async def client(mfa_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=PeerFromHeader(create_app(mfa_settings))) as test_client:  # type: ignore[arg-type]
        yield test_client


@pytest.fixture
async def enrolled(client: AsyncTestClient[Any], alice: User) -> tuple[str, list[str]]:
    """alice with TOTP (confirmed with the previous step's code) and her ten recovery codes."""
    return await enrol(client, (await login(client))["access_token"])


def assert_mfa_invalid(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "AUTH_MFA_INVALID"


async def _forget_used_steps(db_session: AsyncSession, redis_url: str, user: User) -> None:
    """As if no code had been used yet (the confirm used one): the window's every step is open."""
    await db_session.execute(update(MfaTotp).where(MfaTotp.user_id == user.id).values(last_used_step=None))
    await db_session.commit()
    await aioredis.from_url(redis_url).flushdb()


async def test_a_right_password_with_totp_answers_the_challenge_and_no_session(
    client: AsyncTestClient[Any], enrolled: tuple[str, list[str]], db_session: AsyncSession, alice: User
) -> None:
    records_before = len((await db_session.execute(select(LoginRecord))).scalars().all())
    notes_before = len((await db_session.execute(select(Notification))).scalars().all())
    mfa = await challenge(client)
    assert set(mfa) == {"mfa_token", "methods", "expires_in"}
    assert mfa["methods"] == ["totp", "recovery_code"] and mfa["expires_in"] == 300
    db_session.expire_all()
    assert len((await db_session.execute(select(LoginRecord))).scalars().all()) == records_before
    assert len((await db_session.execute(select(Notification))).scalars().all()) == notes_before


async def test_the_right_code_returns_a_pair_with_amr_and_a_success_record(
    client: AsyncTestClient[Any], enrolled: tuple[str, list[str]], db_session: AsyncSession, alice: User
) -> None:
    secret, _ = enrolled
    mfa = await challenge(client)
    response = await finish(client, mfa["mfa_token"], code=code_at(secret, current_step()))
    assert response.status_code == 200, response.text
    pair = response.json()
    verified = (await client.get("/api/v1/auth/verify", headers=bearer(pair["access_token"]))).json()
    assert verified["amr"] == ["pwd", "otp", "mfa"]
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    again = (await client.get("/api/v1/auth/verify", headers=bearer(refreshed.json()["access_token"]))).json()
    assert again["amr"] == ["pwd", "otp", "mfa"]
    last = (await db_session.execute(select(LoginRecord).order_by(LoginRecord.login_timestamp.desc()))).scalars()
    assert next(iter(last)).success


async def test_a_password_only_login_says_pwd(client: AsyncTestClient[Any], alice: User) -> None:
    pair = await login(client)
    verified = (await client.get("/api/v1/auth/verify", headers=bearer(pair["access_token"]))).json()
    assert verified["amr"] == ["pwd"]


@pytest.mark.parametrize("offset", [-1, 1])
async def test_the_previous_and_the_next_step_are_accepted(
    client: AsyncTestClient[Any],
    enrolled: tuple[str, list[str]],
    db_session: AsyncSession,
    redis_url: str,
    alice: User,
    offset: int,
) -> None:
    await _forget_used_steps(db_session, redis_url, alice)
    mfa = await challenge(client)
    response = await finish(client, mfa["mfa_token"], code=code_at(enrolled[0], current_step() + offset))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("offset", [-2, 2])
async def test_two_steps_off_is_refused(
    client: AsyncTestClient[Any],
    enrolled: tuple[str, list[str]],
    db_session: AsyncSession,
    redis_url: str,
    alice: User,
    offset: int,
) -> None:
    await _forget_used_steps(db_session, redis_url, alice)
    mfa = await challenge(client)
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=code_at(enrolled[0], current_step() + offset)))


async def test_the_same_code_twice_is_refused(client: AsyncTestClient[Any], enrolled: tuple[str, list[str]]) -> None:
    code = code_at(enrolled[0], current_step() + 1)
    first = await challenge(client)
    assert (await finish(client, first["mfa_token"], code=code)).status_code == 200
    second = await challenge(client)
    assert_mfa_invalid(await finish(client, second["mfa_token"], code=code))


async def test_the_same_code_on_a_second_instance_and_after_a_redis_flush_is_refused(
    client: AsyncTestClient[Any], enrolled: tuple[str, list[str]], mfa_settings: Settings, redis_url: str
) -> None:
    code = code_at(enrolled[0], current_step() + 1)
    first = await challenge(client)
    assert (await finish(client, first["mfa_token"], code=code)).status_code == 200
    async with AsyncTestClient(app=create_app(mfa_settings)) as other:
        elsewhere = await challenge(other)
        assert_mfa_invalid(await finish(other, elsewhere["mfa_token"], code=code))
        await aioredis.from_url(redis_url).flushall()  # the test's own Redis (its db, its server)
        flushed = await challenge(other)
        assert_mfa_invalid(await finish(other, flushed["mfa_token"], code=code))


async def test_six_wrong_codes_kill_the_token(client: AsyncTestClient[Any], enrolled: tuple[str, list[str]]) -> None:
    mfa = await challenge(client)
    right = code_at(enrolled[0], current_step() + 1)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=wrong))
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=wrong))
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=right))  # dead, even with the right code


async def test_many_tokens_against_one_user_meet_the_per_user_limit(
    database_url: str, redis_url: str, alice: User
) -> None:
    settings = make_settings(database_url, redis_url, rate_limit_mfa="5/15minute")  # the confirm spends one
    async with AsyncTestClient(app=create_app(settings)) as client:
        await enrol(client, (await login(client))["access_token"])
        statuses = []
        for _ in range(6):
            mfa = await challenge(client)
            statuses.append((await finish(client, mfa["mfa_token"], code="000000")).status_code)
    assert statuses[:4] == [401] * 4
    assert statuses[4:] == [429, 429]


async def test_the_failure_budget_bounds_second_steps_too(database_url: str, redis_url: str, alice: User) -> None:
    """From an IP that never finished a login (a known one may go on when the budget is spent)."""
    settings = make_settings(database_url, redis_url, rate_limit_login_failures="3/15minute")
    async with AsyncTestClient(app=PeerFromHeader(create_app(settings))) as client:  # type: ignore[arg-type]
        await enrol(client, (await login(client))["access_token"])
        peer = {"x-test-peer": "192.0.2.44"}
        statuses = []
        for _ in range(5):
            response = await password_login(client, **peer)
            if response.status_code != 401:
                statuses.append(response.status_code)
                continue
            token = response.json()["error"]["mfa"]["mfa_token"]
            statuses.append((await finish(client, token, peer="192.0.2.44", code="000000")).status_code)
    assert statuses[:3] == [401] * 3
    assert statuses[3:] == [429, 429]


async def test_an_expired_token_is_refused(
    database_url: str, redis_url: str, alice: User, enrolled: tuple[str, list[str]]
) -> None:
    settings = make_settings(database_url, redis_url, mfa_token_ttl_seconds="1")
    async with AsyncTestClient(app=create_app(settings)) as client:
        mfa = await challenge(client)
        assert mfa["expires_in"] == 1
        await asyncio.sleep(1.5)
        assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=code_at(enrolled[0], current_step() + 1)))


async def test_a_token_from_another_ip_is_refused(
    client: AsyncTestClient[Any], enrolled: tuple[str, list[str]]
) -> None:
    mfa = await challenge(client, **{"x-test-peer": "203.0.113.7"})
    code = code_at(enrolled[0], current_step() + 1)
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], peer="198.51.100.9", code=code))
    assert (await finish(client, mfa["mfa_token"], peer="203.0.113.7", code=code)).status_code == 200


async def test_a_token_works_once(client: AsyncTestClient[Any], enrolled: tuple[str, list[str]]) -> None:
    mfa = await challenge(client)
    assert (await finish(client, mfa["mfa_token"], code=code_at(enrolled[0], current_step()))).status_code == 200
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=code_at(enrolled[0], current_step() + 1)))


async def test_recovery_codes_work_once_each(client: AsyncTestClient[Any], enrolled: tuple[str, list[str]]) -> None:
    _, codes = enrolled
    for code in codes[:3]:
        mfa = await challenge(client)
        response = await finish(client, mfa["mfa_token"], recovery_code=code.upper().replace("-", ""))
        assert response.status_code == 200, response.text
        again = await challenge(client)
        assert_mfa_invalid(await finish(client, again["mfa_token"], recovery_code=code))
    me = await client.get("/api/v1/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["mfa"] == {"totp": True, "passkeys": 0, "recovery_codes_left": 7}


async def test_regeneration_kills_the_old_set(client: AsyncTestClient[Any], enrolled: tuple[str, list[str]]) -> None:
    secret, old = enrolled
    mfa = await challenge(client)
    pair = (await finish(client, mfa["mfa_token"], code=code_at(secret, current_step()))).json()
    fresh = await client.post(
        "/api/v1/users/me/mfa/recovery-codes",
        json={"code": code_at(secret, current_step() + 1)},
        headers=bearer(pair["access_token"]),
    )
    assert fresh.status_code == 200, fresh.text
    new = fresh.json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    stale = await challenge(client)
    assert_mfa_invalid(await finish(client, stale["mfa_token"], recovery_code=old[0]))
    current = await challenge(client)
    assert (await finish(client, current["mfa_token"], recovery_code=new[0])).status_code == 200


async def test_a_failed_second_step_records_mfa_failed(
    client: AsyncTestClient[Any], enrolled: tuple[str, list[str]], db_session: AsyncSession, alice: User
) -> None:
    mfa = await challenge(client)
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], code="000000"))
    reasons = (
        await db_session.execute(select(LoginRecord.failure_reason).where(LoginRecord.user_id == alice.id))
    ).all()
    assert ("mfa_failed",) in reasons


@pytest.mark.parametrize(
    "body",
    [
        {"mfa_token": "mfa_x"},
        {"mfa_token": "mfa_x", "code": "123456", "recovery_code": "abcd-efgh-jk"},
        {"mfa_token": "mfa_x", "code": 123456},
        {"mfa_token": "mfa_x", "code": None},
        {"mfa_token": "mfa_x", "code": "123456", "extra": True},
    ],
)
async def test_a_body_without_exactly_one_proof_is_a_validation_error(
    client: AsyncTestClient[Any], body: dict[str, Any]
) -> None:
    response = await client.post("/api/v1/auth/mfa", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_an_unknown_token_is_mfa_invalid(client: AsyncTestClient[Any]) -> None:
    assert_mfa_invalid(await finish(client, "mfa_" + "a" * 43, code="123456"))
    started = time.monotonic()
    assert_mfa_invalid(await finish(client, "not-an-mfa-token", recovery_code="abcd-efgh-jk"))
    assert time.monotonic() - started < 5


async def test_two_right_proofs_at_once_open_one_session(
    client: AsyncTestClient[Any], enrolled: tuple[str, list[str]], db_session: AsyncSession, alice: User
) -> None:
    """Both proofs are right and in flight together: the token's single use (one DEL) lets one win."""
    mfa = await challenge(client)
    answers = await asyncio.gather(
        finish(client, mfa["mfa_token"], code=code_at(enrolled[0], current_step())),
        finish(client, mfa["mfa_token"], recovery_code=enrolled[1][0]),
    )
    assert sorted(a.status_code for a in answers) == [200, 401]
    successes = (
        (await db_session.execute(select(LoginRecord).where(LoginRecord.user_id == alice.id, LoginRecord.success)))
        .scalars()
        .all()
    )
    assert len(successes) == 2  # the enrolment's password login, and one of the two


@pytest.mark.parametrize("change", ["revoked", "deactivated"])
async def test_a_revocation_between_the_password_and_the_proof_ends_the_login(
    client: AsyncTestClient[Any], enrolled: tuple[str, list[str]], db_session: AsyncSession, alice: User, change: str
) -> None:
    """A password change or "log out everywhere" (tokens_valid_after moves) or a deactivation
    after the challenge: the right code opens no session, and the token is dead after."""
    secret, _ = enrolled
    mfa = await challenge(client)
    values: dict[str, Any] = {"tokens_valid_after": func.now()} if change == "revoked" else {"is_active": False}
    await db_session.execute(update(User).where(User.id == alice.id).values(**values))
    await db_session.commit()
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=code_at(secret, current_step())))
    if change == "deactivated":
        await db_session.execute(update(User).where(User.id == alice.id).values(is_active=True))
        await db_session.commit()
    assert_mfa_invalid(await finish(client, mfa["mfa_token"], code=code_at(secret, current_step() + 1)))
    sessions = await db_session.execute(select(func.count()).select_from(RefreshToken))
    assert sessions.scalar_one() == 1  # the enrolment's own login only


async def test_a_revocation_committed_while_the_session_opens_leaves_no_session(
    client: AsyncTestClient[Any],
    enrolled: tuple[str, list[str]],
    db_session: AsyncSession,
    alice: User,
    database_url: str,
) -> None:
    """The revocation holds alice's row (as a password change does) when the right code comes: the
    second step reads her unchanged, spends the code, then waits at the opening statement's share
    lock until the revocation commits (a thread of its own commits it once pg_stat_activity
    shows the wait), and opens nothing."""
    secret, _ = enrolled
    mfa = await challenge(client)
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    held, seen = threading.Event(), threading.Event()

    async def revoke() -> None:
        revoker, watcher = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            async with revoker.transaction():
                await revoker.execute("UPDATE users SET tokens_valid_after = now() WHERE id = $1", alice.id)
                held.set()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    if await watcher.fetchval(waiting):
                        seen.set()
                        break
                    await asyncio.sleep(0.005)
        finally:
            await revoker.close()
            await watcher.close()

    revoking = threading.Thread(target=lambda: asyncio.run(revoke()))
    revoking.start()
    try:
        assert await asyncio.to_thread(held.wait, 10)
        answer = await finish(client, mfa["mfa_token"], code=code_at(secret, current_step()))
    finally:
        await asyncio.to_thread(revoking.join, 15)
    assert seen.is_set(), "the second step never waited for the revocation's lock"
    assert_mfa_invalid(answer)
    db_session.expire_all()
    assert (await db_session.execute(select(func.count()).select_from(RefreshToken))).scalar_one() == 1
    reasons = (
        await db_session.execute(select(LoginRecord.failure_reason).where(LoginRecord.user_id == alice.id))
    ).all()
    assert ("credentials_changed",) in reasons
