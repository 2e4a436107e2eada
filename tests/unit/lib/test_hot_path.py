"""Pure pieces of the verify hot path: the verified-claims cache and the trace sampler."""

from __future__ import annotations

import random
import time

import pytest
from opentelemetry.sdk.trace.sampling import Decision

from auth_service.domain.auth.verify import ClaimsCache
from auth_service.lib.crypto.tokens import AccessClaims, TokenExpiredError
from observability.setup import HotPathSampler


def _claims(exp: float) -> AccessClaims:
    return AccessClaims(sub="u", username="alice", roles=[], iat=0, exp=int(exp), jti="j", sid="s", iss="i", aud="a")


def test_cache_returns_what_was_put_for_the_exact_token_only() -> None:
    cache = ClaimsCache(size=8)
    claims = _claims(time.time() + 60)
    cache.put("a.b.c", claims)
    assert cache.get("a.b.c") is claims
    assert cache.get("a.b.d") is None


def test_cache_hit_past_expiry_raises_expired_and_forgets_the_token() -> None:
    cache = ClaimsCache(size=8)
    cache.put("a.b.c", _claims(time.time() - 1))
    with pytest.raises(TokenExpiredError):
        cache.get("a.b.c")
    assert cache.get("a.b.c") is None


def test_cache_is_bounded_oldest_out_first() -> None:
    cache = ClaimsCache(size=3)
    for i in range(5):
        cache.put(f"t{i}", _claims(time.time() + 60))
    assert [cache.get(f"t{i}") is not None for i in range(5)] == [False, False, True, True, True]


def test_cache_skips_long_tokens_and_can_be_off() -> None:
    cache = ClaimsCache(size=8)
    cache.put("x" * (ClaimsCache.MAX_TOKEN_LENGTH + 1), _claims(time.time() + 60))
    assert cache.get("x" * (ClaimsCache.MAX_TOKEN_LENGTH + 1)) is None
    off = ClaimsCache(size=0)
    off.put("a.b.c", _claims(time.time() + 60))
    assert off.get("a.b.c") is None


def test_sampler_keeps_every_trace_but_the_hot_paths_ratio() -> None:
    sampler = HotPathSampler({"GET /api/v1/auth/verify": 0.0, "GET /hot": 1.0})
    assert sampler.should_sample(None, 12345, "POST /api/v1/auth/login").decision == Decision.RECORD_AND_SAMPLE
    assert sampler.should_sample(None, 12345, "GET /hot").decision == Decision.RECORD_AND_SAMPLE
    assert sampler.should_sample(None, 12345, "GET /api/v1/auth/verify").decision == Decision.DROP
    half = HotPathSampler({"GET /x": 0.5})
    ids = random.Random(7)
    kept = sum(
        half.should_sample(None, ids.getrandbits(128), "GET /x").decision == Decision.RECORD_AND_SAMPLE
        for _ in range(2000)
    )
    assert 800 < kept < 1200


def test_login_and_refresh_statements_are_compiled_once() -> None:
    """SQLAlchemy caches a compiled statement only when it has a cache key; without one, every
    login and refresh compiles its CTEs again (a quarter of refresh's CPU when it happened)."""
    from auth_service.domain.auth import repository as logins
    from auth_service.domain.notifications import repository as outbox
    from auth_service.domain.sessions import repository as sessions

    statements = {
        "login user": logins._LOGIN_USER,
        "failed login": logins._INSERT_RECORD,
        "open session": logins._OPEN_SESSION[False],
        "open session, any agent": logins._OPEN_SESSION[True],
        "suspicious alert": outbox._INSERT_OUTBOX,
        "rotate": sessions._ROTATE,
        "not live": sessions._NOT_LIVE,
        "rehash": logins._REHASH,
        "lock owner": sessions._LOCK_OWNER,
    }
    uncached = [name for name, stmt in statements.items() if stmt._generate_cache_key() is None]
    assert uncached == []


def test_sessions_drop_the_cache_listener_and_keep_updated_at() -> None:
    """Advanced Alchemy's cache listener copied the engine twice per commit (we use no AA cache);
    its updated_at listener must stay."""
    from advanced_alchemy._listeners import AsyncCacheListener, touch_updated_timestamp
    from sqlalchemy import event

    from auth_service.app import sqlalchemy_config
    from auth_service.settings import load_settings

    env = {
        "DATABASE_URL": "postgresql://u@localhost/db",
        "REDIS_URL": "redis://localhost/0",
        "JWT_SECRET_KEY": "x" * 32,
    }
    maker = sqlalchemy_config(load_settings(env=env, env_file=None)).create_session_maker()
    sync_maker = maker.kw["sync_session_class"]  # type: ignore[attr-defined]
    assert not event.contains(sync_maker, "after_commit", AsyncCacheListener.after_commit)
    assert not event.contains(sync_maker, "after_rollback", AsyncCacheListener.after_rollback)
    assert event.contains(sync_maker, "before_flush", touch_updated_timestamp)
