"""Rate limits on the real Redis: exactness, sliding allowance, headers, per-endpoint rules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.app import create_app
from auth_service.lib.redis.lean import LeanRedis
from auth_service.lib.redis.ratelimit import Check, RateLimiter
from auth_service.settings import RateLimit
from db.models import LoginRecord, User
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, bearer
from tests.integration.auth.test_auth_flow import assert_error


@pytest.fixture(params=["lean", "redis-py"])
async def limiter(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """Both transports the service uses: the lean multiplexed connection, and redis-py (rediss://)."""
    redis = Redis.from_url(redis_url)
    lean = LeanRedis(redis_url) if request.param == "lean" else None
    yield RateLimiter(redis, prefix=f"t{uuid.uuid4().hex[:6]}", lean=lean)
    if lean is not None:
        await lean.aclose()
    await redis.aclose()


async def test_concurrent_checks_let_exactly_the_limit_through(limiter: RateLimiter) -> None:
    rule = RateLimit(7, 60)
    key = limiter.key("exact", "subject")
    decisions = await asyncio.gather(*(limiter.check([Check(key, rule)]) for _ in range(50)))
    assert sum(d[0].allowed for d in decisions) == 7


async def test_checks_of_one_request_each_get_their_own_decision(limiter: RateLimiter) -> None:
    tight, loose = RateLimit(2, 60), RateLimit(100, 60)
    checks = [Check(limiter.key("pair", "tight"), tight), Check(limiter.key("pair", "loose"), loose)]
    rounds = await asyncio.gather(*(limiter.check(checks) for _ in range(5)))
    assert sum(r[0].allowed for r in rounds) == 2
    assert all(r[1].allowed for r in rounds)
    assert sorted(r[1].remaining for r in rounds) == [95, 96, 97, 98, 99]


async def test_allowance_comes_back_as_the_window_slides(limiter: RateLimiter) -> None:
    rule = RateLimit(3, 2)  # 3 per 2 s: one slot frees every 0.67 s
    key = limiter.key("slide", "subject")
    first = [(await limiter.check([Check(key, rule)]))[0] for _ in range(4)]
    assert [d.allowed for d in first] == [True, True, True, False]
    assert [d.remaining for d in first[:3]] == [2, 1, 0]
    refused = first[3]
    assert 0.5 < refused.retry_after <= 0.7
    await asyncio.sleep(refused.retry_after + 0.05)
    again = [(await limiter.check([Check(key, rule)]))[0] for _ in range(2)]
    assert [d.allowed for d in again] == [True, False]  # exactly one slot came back, not a whole window
    await asyncio.sleep(2.05)
    assert (await limiter.check([Check(key, rule, consume=False)]))[0].remaining == 3


async def test_peek_does_not_spend(limiter: RateLimiter) -> None:
    rule = RateLimit(2, 60)
    key = limiter.key("peek", "subject")
    for _ in range(5):
        assert (await limiter.check([Check(key, rule, consume=False)]))[0].allowed
    assert [(await limiter.check([Check(key, rule)]))[0].allowed for _ in range(3)] == [True, True, False]


async def test_keys_carry_a_hash_tag(limiter: RateLimiter) -> None:
    assert "{1.2.3.4}" in limiter.key("login", "1.2.3.4")
    assert "{user-1}" in limiter.key("api", "user-1", tag="user-1")


@pytest.mark.serial  # SCRIPT FLUSH empties the server's cache, every worker's scripts
async def test_script_is_reloaded_after_a_redis_flush(limiter: RateLimiter, redis_url: str) -> None:
    rule = RateLimit(5, 60)
    await limiter.check([Check(limiter.key("reload", "s"), rule)])
    redis = Redis.from_url(redis_url)
    await redis.script_flush()
    await redis.aclose()
    assert (await limiter.check([Check(limiter.key("reload", "s"), rule)]))[0].remaining == 3


@pytest.mark.serial  # SCRIPT FLUSH, as above
async def test_run_sends_checks_and_commands_together(limiter: RateLimiter, redis_url: str) -> None:
    rule = RateLimit(5, 60)
    spend, peek = Check(limiter.key("run", "a"), rule), Check(limiter.key("run", "b"), rule, consume=False)
    marker = limiter.key("run", "marker")
    redis = Redis.from_url(redis_url)
    await redis.script_flush()  # run loads the script again and repeats the round trip
    replies = await limiter.run(
        limiter.command(spend), limiter.command(peek), ("SET", marker, "x", "EX", 60), ("EXISTS", marker)
    )
    assert limiter.read(replies[0], spend).remaining == 4
    assert limiter.read(replies[1], peek).remaining == 5
    assert replies[3] == 1 and 0 < await redis.ttl(marker) <= 60
    with pytest.raises(ResponseError):  # a command's error is raised, after every command ran
        await limiter.run(("INCR", marker), ("SET", limiter.key("run", "after"), 1))
    assert await redis.get(limiter.key("run", "after")) == b"1"
    await redis.aclose()


@pytest.fixture
async def limited(database_url: str, redis_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = make_settings(
        database_url,
        redis_url,
        rate_limit_login="3/minute",
        rate_limit_login_failures="2/15minute",
        rate_limit_refresh="2/hour",
        rate_limit_api="4/minute",
        rate_limit_public="5/minute",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def _login(client: AsyncTestClient[Any], username: str = "alice", password: str = DEFAULT_PASSWORD) -> Any:
    return await client.post("/api/v1/auth/login", json={"username": username, "password": password})


async def test_login_limit_per_ip_with_headers(
    limited: AsyncTestClient[Any], alice: User, db_session: AsyncSession
) -> None:
    responses = [await _login(limited, password=pw) for pw in (DEFAULT_PASSWORD, "wrong one", DEFAULT_PASSWORD)]
    assert [r.status_code for r in responses] == [200, 401, 200]
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit"] == "3" for r in responses)
    assert int(responses[-1].headers["x-ratelimit-reset"]) in range(1, 21)
    refused = await _login(limited)
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # Refused before any work: no login record for the fourth attempt.
    assert (await db_session.execute(select(func.count()).select_from(LoginRecord))).scalar_one() == 3


async def test_refresh_limit_per_family(limited: AsyncTestClient[Any], alice: User) -> None:
    tokens = (await _login(limited)).json()
    first = await limited.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    second = await limited.post("/api/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
    assert [first.status_code, second.status_code] == [200, 200]
    assert second.headers["x-ratelimit-limit"] == "2"
    third = await limited.post("/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert_error(third, 429, "RATE_LIMIT_EXCEEDED")
    # Another session has its own budget.
    other = (await _login(limited)).json()
    assert (
        await limited.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    ).status_code == 200


async def test_malformed_refresh_token_is_refused_without_db_work(limited: AsyncTestClient[Any]) -> None:
    response = await limited.post("/api/v1/auth/refresh", json={"refresh_token": "no-family-here"})
    assert_error(response, 401, "AUTH_TOKEN_INVALID")


async def test_authenticated_endpoints_limit_per_user(limited: AsyncTestClient[Any], alice: User) -> None:
    tokens = (await _login(limited)).json()
    statuses = [
        (await limited.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))).status_code for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]
    response = await limited.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))
    assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["x-ratelimit-limit"] == "4" and "retry-after" in response.headers


async def test_public_endpoints_and_bad_tokens_limit_per_ip(limited: AsyncTestClient[Any]) -> None:
    statuses = [(await limited.get("/api/v1/health")).status_code for _ in range(3)]
    statuses += [(await limited.get("/api/v1/auth/verify", headers=bearer("junk"))).status_code for _ in range(2)]
    assert statuses == [200, 200, 200, 401, 401]
    assert_error(await limited.get("/api/v1/health"), 429, "RATE_LIMIT_EXCEEDED")
    assert_error(await limited.get("/docs/openapi.json"), 429, "RATE_LIMIT_EXCEEDED")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/password-reset/confirm", {"token": "not-a-live-link", "new_password": "a new secret here"}),
        ("/api/v1/auth/verify-email", {"token": "not-a-live-link"}),
        ("/api/v1/auth/register", {"username": "newcomer", "email": "new@example.com", "password": "own secret 42"}),
    ],
)
async def test_endpoints_with_their_own_hooks_still_have_the_public_limit(
    limited: AsyncTestClient[Any], path: str, body: dict[str, str]
) -> None:
    """A handler's own before_request (the JSON-body check) composes with the per-IP limit
    instead of replacing it: RATE_LIMIT_PUBLIC is 5/minute here, the sixth request is refused."""
    answers = [await limited.post(path, json=body) for _ in range(5)]
    assert all(a.status_code in (400, 404) for a in answers), [a.text for a in answers]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
    refused = await limited.post(path, json=body)
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert int(refused.headers["retry-after"]) >= 1


async def test_limits_can_be_turned_off(database_url: str, redis_url: str, alice: User) -> None:
    settings = make_settings(database_url, redis_url, rate_limit_enabled="false", rate_limit_login="1/minute")
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert [(await _login(client)).status_code for _ in range(3)] == [200, 200, 200]


async def test_bogus_tokens_naming_a_session_cannot_block_its_refreshes(
    limited: AsyncTestClient[Any], alice: User
) -> None:
    """The session id is readable in any access token (`sid`); refresh tokens made up around it
    count against their sender's IP, not against the session's own refresh budget."""
    tokens = (await _login(limited)).json()
    family = tokens["refresh_token"].split(".")[0]
    for i in range(4):  # RATE_LIMIT_PUBLIC is 5/minute per IP here: these spend the IP's budget
        bogus = await limited.post("/api/v1/auth/refresh", json={"refresh_token": f"{family}.x{i}"})
        assert_error(bogus, 401, "AUTH_TOKEN_INVALID")
    real = await limited.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert real.status_code == 200, real.text
    assert real.headers["x-ratelimit-limit"] in ("2", "5")
