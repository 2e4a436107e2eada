"""Long-lived objects of one API process, built at start-up and closed at shutdown."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.deps import Authenticator, AuthPolicy
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.suspicious import SuspicionRules
from auth_service.domain.auth.verify import TokenVerifier, script_runner
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.crypto.tokens import TokenService
from auth_service.lib.queue import JobQueue
from auth_service.lib.redis.activity import ActivityTracker
from auth_service.lib.redis.lean import LeanRedis
from auth_service.lib.redis.ratelimit import RateLimiter
from auth_service.settings import Settings
from auth_service.wiring import (
    account_links_for,
    job_queue_for,
    link_signer_for,
    password_hasher_for,
    token_service_for,
)

__all__ = ["Resources", "build_resources", "password_policy"]


@dataclass(slots=True)
class Resources:
    settings: Settings
    redis: Redis
    hasher: PasswordHasher
    tokens: TokenService
    revocation: RevocationStore
    limits: EndpointLimits
    verifier: TokenVerifier
    activity: ActivityTracker
    queue: JobQueue
    links: LinkSigner
    session_factory: Callable[[], AsyncSession]
    authenticator: Authenticator
    auth_policy: AuthPolicy

    # Parsed once: the client-IP rule runs on every limited request.
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    # The verify hot path's own connection (None when it shares redis-py's, for rediss://).
    lean_redis: LeanRedis | None = None
    account_links: AccountLinks | None = None
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)

    async def close(self) -> None:
        await self.revocation.close()
        self.hasher.close()
        await self.queue.close()
        await self.redis.aclose()
        if self.lean_redis is not None:
            await self.lean_redis.aclose()


def password_policy(settings: Settings) -> PasswordPolicy:
    """The configured password policy (the one the endpoints apply and the document describes)."""
    return PasswordPolicy(settings.passwords.min_length, settings.passwords.min_score)


def build_resources(settings: Settings, session_factory: Callable[[], AsyncSession]) -> Resources:
    # A blocking pool: redis-py's default pool opens new connections while holding its lock, so
    # with Redis frozen every caller queued behind one 2 s connect after another (the 10th login
    # waited 20 s). This one connects outside the lock and bounds the wait for a free connection.
    r = settings.redis
    timeout = r.timeout
    pool = BlockingConnectionPool.from_url(
        r.url,
        max_connections=256,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    redis = Redis.from_pool(pool)
    hasher = password_hasher_for(settings)
    tokens = token_service_for(settings)
    revocation = RevocationStore(redis, session_factory, prefix=r.key_prefix, access_ttl=tokens.access_ttl)
    scripts, lean_redis = script_runner(r.url, redis, timeout=timeout)
    limiter = RateLimiter(redis, prefix=r.key_prefix, enabled=settings.limits.enabled, lean=lean_redis)
    activity = ActivityTracker(r.key_prefix)
    limits = EndpointLimits(limiter, settings.limits.parsed, activity, fail_open=settings.limits.fail_open)
    verifier = TokenVerifier(tokens, revocation, limits, activity, scripts)
    queue = job_queue_for(settings)
    links = link_signer_for(settings)
    trusted = settings.app.trusted_proxy_networks
    policy = AuthPolicy(
        refresh_ttl=settings.tokens.refresh_ttl,
        reuse_grace=settings.tokens.reuse_grace,
        suspicion=SuspicionRules(
            new_device_days=settings.accounts.suspicious_new_device_days,
            failures=settings.accounts.suspicious_failures,
            failure_window_minutes=settings.accounts.suspicious_failure_window_minutes,
        ),
        require_verified_email=settings.accounts.require_verified_email,
    )
    return Resources(
        settings,
        redis,
        hasher,
        tokens,
        revocation,
        limits,
        verifier,
        activity,
        queue,
        links,
        session_factory,
        Authenticator(verifier, limits, trusted),
        policy,
        trusted,
        lean_redis,
        account_links_for(settings),
        password_policy(settings),
    )
