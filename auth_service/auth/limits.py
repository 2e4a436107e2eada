"""Which limit applies where, and what happens when Redis is down.

- login: per client IP (RATE_LIMIT_LOGIN, spends a slot on every attempt), plus a
  per-username failure budget (RATE_LIMIT_LOGIN_FAILURES, spent only by failures).
  When a username's budget is exhausted, only IPs that logged in to it successfully
  in the last 30 days may still try: a credential-stuffing run cannot lock the real
  user out from where they usually log in.
- refresh: per refresh-token family (RATE_LIMIT_REFRESH) and per IP (RATE_LIMIT_PUBLIC).
- authenticated endpoints: per user (RATE_LIMIT_API; verify may use RATE_LIMIT_VERIFY).
- everything else (health, docs, bad tokens): per IP (RATE_LIMIT_PUBLIC).

Login and refresh fail closed when Redis is unreachable (503 before any password or
DB work); the others follow RATE_LIMIT_FAIL_OPEN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import structlog
from redis.exceptions import RedisError

from auth_service.config import RateLimits
from auth_service.errors import RateLimited, ServiceUnavailable
from auth_service.security.activity import ActivityTracker
from auth_service.security.ratelimit import Check, Decision, RateLimiter
from auth_service.security.resp import Command
from observability import metrics

__all__ = ["EndpointLimits"]

log = structlog.get_logger()

KNOWN_IP_TTL = 30 * 86400


def _refused(decision: Decision, endpoint: str) -> RateLimited:
    metrics.ratelimit_rejections.add(1, {"endpoint": endpoint})
    return RateLimited(headers={"Retry-After": str(max(1, int(decision.retry_after + 0.999)))})


def _fail_closed(endpoint: str) -> ServiceUnavailable:
    metrics.ratelimit_redis_failures.add(1, {"endpoint": endpoint})
    log.warning("ratelimit.redis_unavailable", endpoint=endpoint, policy="fail_closed")
    return ServiceUnavailable()


def _user_tag(username: str) -> str:
    # Hashed: no usernames in Redis keys, and no `{` `}` to break the hash tag.
    return "u:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]


class EndpointLimits:
    """The rate-limit policy of each endpoint group.

    Args:
        limiter: the GCRA limiter on the shared Redis.
        rules: the parsed limits.
        activity: marks users active after a login (same round trip as the known-IP mark).
        fail_open: what non-login endpoints do when Redis is down.
    """

    def __init__(self, limiter: RateLimiter, rules: RateLimits, activity: ActivityTracker, *, fail_open: bool) -> None:
        self.limiter = limiter
        self.activity = activity
        self.rules = rules
        self.fail_open = fail_open

    @property
    def enabled(self) -> bool:
        return self.limiter.enabled

    async def before_login(self, ip: str, username: str) -> None:
        """Spend the IP's slot and peek at the username's failure budget, in one round trip.

        Raises:
            RateLimited: over a limit.
            ServiceUnavailable: Redis is down (fail closed).
        """
        if not self.enabled:
            return
        limiter, tag = self.limiter, _user_tag(username)
        by_ip = Check(limiter.key("login", ip), self.rules.login)
        failures = Check(limiter.key("login-failures", tag), self.rules.login_failures, consume=False)
        known_key = limiter.key("known-ip", ip, tag=tag)
        try:
            replies = await limiter.run(limiter.command(by_ip), limiter.command(failures), ("EXISTS", known_key))
            ip_decision = limiter.read(replies[0], by_ip)
            failure_decision = limiter.read(replies[1], failures, remember=False)
        except RedisError:
            raise _fail_closed("login") from None
        if not ip_decision.allowed:
            raise _refused(ip_decision, "login")
        if not failure_decision.allowed and not replies[2]:
            log.info("ratelimit.username_budget_exhausted", ip=ip)
            raise _refused(failure_decision, "login")

    async def after_login(self, ip: str, username: str, *, user_id: str | None, also: Sequence[Command] = ()) -> None:
        """Redis bookkeeping of a login (best effort, one round trip): on failure spend a slot of the
        username's budget; on success remember the IP as known for this user, mark the user active,
        and send the caller's `also` commands with them."""
        tag = _user_tag(username)
        try:
            if user_id is not None:
                known_ip = ("SET", self.limiter.key("known-ip", ip, tag=tag), 1, "EX", KNOWN_IP_TTL)
                await self.limiter.run(known_ip, *self.activity.commands(user_id), *also)
            elif self.enabled:
                await self.limiter.check([Check(self.limiter.key("login-failures", tag), self.rules.login_failures)])
        except RedisError:
            log.warning("ratelimit.redis_unavailable", endpoint="login")

    async def before_refresh(self, ip: str, family: str) -> None:
        """Per family and per IP, before any DB work. Fails closed."""
        if not self.enabled:
            return
        checks = [
            Check(self.limiter.key("refresh-ip", ip), self.rules.public),
            Check(self.limiter.key("refresh", family), self.rules.refresh),
        ]
        try:
            decisions = await self.limiter.check(checks)
        except RedisError:
            raise _fail_closed("refresh") from None
        for decision in decisions:
            if not decision.allowed:
                raise _refused(decision, "refresh")

    async def public(self, ip: str, endpoint: str) -> None:
        """The per-IP limit of unauthenticated endpoints."""
        if not self.enabled:
            return
        check = Check(self.limiter.key("public", ip), self.rules.public)
        try:
            (decision,) = await self.limiter.check([check])
        except RedisError:
            self.redis_failed(endpoint)
            return
        if not decision.allowed:
            raise _refused(decision, endpoint)

    def authenticated(self, user_id: str, *, verify: bool) -> Check:
        """The per-user check of an authenticated endpoint (run by the caller's pipeline)."""
        rule = self.rules.verify if verify else self.rules.api
        return Check(self.limiter.key("verify" if verify else "api", user_id, tag=user_id), rule)

    def enforce(self, decision: Decision, endpoint: str) -> None:
        if not decision.allowed:
            raise _refused(decision, endpoint)

    def redis_failed(self, endpoint: str) -> None:
        """Non-login endpoints when Redis is down: on by RATE_LIMIT_FAIL_OPEN, else 503."""
        metrics.ratelimit_redis_failures.add(1, {"endpoint": endpoint})
        if not self.fail_open:
            raise ServiceUnavailable
        self.limiter.note_redis_failure(endpoint)
