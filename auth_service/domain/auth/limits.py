"""Which limit applies where, and what happens when Redis is down.

- login: per client IP (RATE_LIMIT_LOGIN, spends a slot on every attempt), plus a
  per-username failure budget (RATE_LIMIT_LOGIN_FAILURES). A slot of the budget is
  reserved atomically before the password is hashed and given back when the password was
  right, so a burst of concurrent guesses gets exactly the allowance that is left.
  When a username's budget is exhausted, only IPs that logged in to it successfully
  in the last 30 days may still try: a credential-stuffing run cannot lock the real
  user out from where they usually log in.
- refresh: per IP (RATE_LIMIT_PUBLIC) before any work, and per refresh-token family
  (RATE_LIMIT_REFRESH), charged only when the presented token is one of that family's
  rows: the family id is readable in an access token (`sid`), and bogus tokens naming it
  must not lock the real session out (they count against their IP).
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

from auth_service.lib.errors import RateLimited, ServiceUnavailable
from auth_service.lib.redis.activity import ActivityTracker
from auth_service.lib.redis.lean import Command, Script
from auth_service.lib.redis.ratelimit import GCRA_FUNCTION, Check, Decision, RateLimiter
from auth_service.settings import RateLimits
from db.models import identity_key
from observability import metrics

__all__ = ["EndpointLimits", "LoginGate"]

log = structlog.get_logger()

KNOWN_IP_TTL = 30 * 86400

# The per-username failure budget, reserved before the hash. KEYS: budget, known-IP mark (one
# hash tag). ARGV: period (ms), limit. Returns {allowed, remaining, reset_ms, retry_ms, reserved}:
# a slot is reserved when one is free; else an IP that logged in to this account before may
# still try (nothing reserved); else refused.
USERNAME_GATE = Script(
    GCRA_FUNCTION
    + """
local d = gcra(KEYS[1], ARGV[1], ARGV[2], 1)
if d[1] == 1 then return {1, d[2], d[3], d[4], 1} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, 0, d[3], 0, 0} end
return {0, d[2], d[3], d[4], 0}
"""
)


class LoginGate:
    """What before_login decided: whether a failure-budget slot is held for this attempt."""

    __slots__ = ("budget", "reserved")

    def __init__(self, budget: Check | None, reserved: bool) -> None:
        self.budget = budget
        self.reserved = reserved


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
        limiter.register(USERNAME_GATE)
        self.activity = activity
        self.rules = rules
        self.fail_open = fail_open

    @property
    def enabled(self) -> bool:
        return self.limiter.enabled

    async def before_login(self, ip: str, username: str) -> LoginGate:
        """Spend the IP's slot and reserve one of the username's failure budget, in one round trip.

        Raises:
            RateLimited: over a limit (nothing stays reserved).
            ServiceUnavailable: Redis is down (fail closed).
        """
        if not self.enabled:
            return LoginGate(None, False)
        limiter, tag = self.limiter, _user_tag(username)
        by_ip = Check(limiter.key("login", ip), self.rules.login)
        budget = Check(limiter.key("login-failures", tag), self.rules.login_failures)
        known_key = limiter.key("known-ip", ip, tag=tag)
        gate = limiter.script_command(USERNAME_GATE, (budget.key, known_key), limiter.args(budget)[:2])
        try:
            replies = await limiter.run(limiter.command(by_ip), gate)
            ip_decision = limiter.read(replies[0], by_ip)
            allowed, remaining, reset_ms, retry_ms, reserved = (int(v) for v in replies[1])
        except RedisError:
            raise _fail_closed("login") from None
        if not ip_decision.allowed:
            if reserved:
                await self._refund(budget)
            raise _refused(ip_decision, "login")
        if not allowed:
            log.info("ratelimit.username_budget_exhausted", ip=ip)
            decision = Decision(False, budget.rule.limit, remaining, reset_ms / 1000, retry_ms / 1000)
            raise _refused(decision, "login")
        return LoginGate(budget, bool(reserved))

    async def before_second_step(self, ip: str, username: str, user_id: str) -> LoginGate:
        """A second-step proof: one slot of the user's RATE_LIMIT_MFA (across all its mfa_tokens)
        spent, and one of the username's failure budget reserved as for a password, in one round
        trip: whoever holds the password still gets no more guesses at the code than both allow.
        A right proof gives the budget slot back (`after_login`), a wrong one keeps it.

        Raises:
            RateLimited: over either limit (nothing stays reserved).
            ServiceUnavailable: Redis is down (fail closed, as for a login).
        """
        if not self.enabled:
            return LoginGate(None, False)
        limiter, tag = self.limiter, _user_tag(username)
        per_user = Check(limiter.key("mfa", user_id, tag=user_id), self.rules.mfa)
        budget = Check(limiter.key("login-failures", tag), self.rules.login_failures)
        known_key = limiter.key("known-ip", ip, tag=tag)
        gate = limiter.script_command(USERNAME_GATE, (budget.key, known_key), limiter.args(budget)[:2])
        try:
            replies = await limiter.run(limiter.command(per_user), gate)
            user_decision = limiter.read(replies[0], per_user)
            allowed, remaining, reset_ms, retry_ms, reserved = (int(v) for v in replies[1])
        except RedisError:
            raise _fail_closed("mfa") from None
        if not user_decision.allowed:
            if reserved:
                await self._refund(budget)
            raise _refused(user_decision, "mfa")
        if not allowed:
            log.info("ratelimit.username_budget_exhausted", ip=ip)
            raise _refused(Decision(False, budget.rule.limit, remaining, reset_ms / 1000, retry_ms / 1000), "mfa")
        return LoginGate(budget, bool(reserved))

    async def code_check(self, user_id: str) -> None:
        """A TOTP or recovery code checked by an enrolment endpoint (confirm, disable,
        regenerate): the user's RATE_LIMIT_MFA, so a stolen access token cannot search codes."""
        if not self.enabled:
            return
        check = Check(self.limiter.key("mfa", user_id, tag=user_id), self.rules.mfa)
        try:
            (decision,) = await self.limiter.check([check])
        except RedisError:
            raise _fail_closed("mfa") from None
        if not decision.allowed:
            raise _refused(decision, "mfa")

    async def refund(self, gate: LoginGate) -> None:
        """Give back a reserved budget slot without the success bookkeeping of `after_login` (no
        known-IP mark): a right password whose login waits for its second factor."""
        if gate.reserved and gate.budget is not None:
            await self._refund(gate.budget)

    async def _refund(self, budget: Check) -> None:
        try:
            await self.limiter.run(self.limiter.refund_command(budget))
        except RedisError:
            log.warning("ratelimit.redis_unavailable", endpoint="login")

    async def after_login(
        self, ip: str, username: str, gate: LoginGate, *, user_id: str | None, also: Sequence[Command] = ()
    ) -> None:
        """Redis bookkeeping of a login (best effort, one round trip). A failure keeps its
        reserved budget slot; a success gives it back, remembers the IP as known for this
        user, marks the user active, and sends the caller's `also` commands with them."""
        if user_id is None:
            return
        tag = _user_tag(username)
        commands: list[Command] = [
            ("SET", self.limiter.key("known-ip", ip, tag=tag), 1, "EX", KNOWN_IP_TTL),
            *self.activity.commands(user_id),
            *also,
        ]
        if gate.reserved and gate.budget is not None:
            commands.append(self.limiter.refund_command(gate.budget))
        try:
            await self.limiter.run(*commands)
        except RedisError:
            log.warning("ratelimit.redis_unavailable", endpoint="login")

    async def passkey_login(self, ip: str) -> None:
        """A passwordless login spends a slot of the IP's login limit (RATE_LIMIT_LOGIN), as a
        password login does: one budget per IP, whatever the way in. Fails closed, as logins do.
        No per-username budget: there is no password to guess, and no username before the check."""
        if not self.enabled:
            return
        try:
            (decision,) = await self.limiter.check([Check(self.limiter.key("login", ip), self.rules.login)])
        except RedisError:
            raise _fail_closed("login") from None
        if not decision.allowed:
            raise _refused(decision, "login")

    async def before_refresh(self, ip: str, family: str) -> None:
        """Per IP (spent) and per family (only looked at), before any DB work. Fails closed."""
        if not self.enabled:
            return
        checks = [
            Check(self.limiter.key("refresh-ip", ip), self.rules.public),
            Check(self.limiter.key("refresh", family), self.rules.refresh, consume=False),
        ]
        try:
            decisions = await self.limiter.check(checks)
        except RedisError:
            raise _fail_closed("refresh") from None
        for decision in decisions:
            if not decision.allowed:
                raise _refused(decision, "refresh")

    async def charge_refresh(self, family: str) -> None:
        """Spend the family's slot, once the presented token turned out to be one of its rows."""
        if not self.enabled:
            return
        try:
            (decision,) = await self.limiter.check([Check(self.limiter.key("refresh", family), self.rules.refresh)])
        except RedisError:
            raise _fail_closed("refresh") from None
        if not decision.allowed:
            raise _refused(decision, "refresh")

    async def email(self, ip: str, address: str) -> None:
        """Mails sent on an unauthenticated request (reset links): per address (RATE_LIMIT_EMAIL)
        and per IP (RATE_LIMIT_EMAIL_IP), charged whether or not the address has an account, so
        a 429 says nothing about it. Fails closed: no Redis, no mail."""
        if not self.enabled:
            return
        subject = hashlib.sha256(identity_key(address).encode()).hexdigest()[:32]  # no addresses in keys
        checks = [
            Check(self.limiter.key("email-ip", ip), self.rules.email_ip),
            Check(self.limiter.key("email", subject), self.rules.email),
        ]
        try:
            decisions = await self.limiter.check(checks)
        except RedisError:
            raise _fail_closed("email") from None
        for decision in decisions:
            if not decision.allowed:
                raise _refused(decision, "email")

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
