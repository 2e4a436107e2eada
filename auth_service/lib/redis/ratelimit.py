"""Distributed rate limits: GCRA in one Lua script, shared by every API instance.

GCRA (the generic cell rate algorithm) keeps one timestamp per subject, the
"theoretical arrival time". A limit of L per P seconds lets L requests through at
once, then one more every P/L seconds: a sliding allowance with no 2x burst at a
window boundary. Each check is one EVALSHA; several checks of one request leave
together, so they cost one round trip (over the lean multiplexed connection of
`resp.py` when the URL allows it, else a redis-py pipeline). The clock is Redis's own (`TIME`), so
instances with skewed clocks still agree.
"""

from __future__ import annotations

import contextvars
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from auth_service.lib.redis.lean import Command, LeanRedis, Script

__all__ = [
    "GCRA_FUNCTION",
    "REFUND_SCRIPT",
    "Check",
    "Decision",
    "DecisionBox",
    "RateLimit",
    "RateLimiter",
    "current_decision",
    "limit_headers",
]

log = structlog.get_logger()

# gcra(key, period_ms, limit, cost): the key holds the TAT in integer microseconds (printed with
# %d: Lua's tostring would round it); cost 1 consumes, 0 peeks.
# Returns {allowed (0/1), remaining, reset_ms, retry_after_ms}. Other scripts embed it (verify).
GCRA_FUNCTION = """
local function gcra(key, period_ms, limit_arg, cost_arg)
  local t = redis.call('TIME')
  local now = t[1] * 1000000 + t[2]
  local period = tonumber(period_ms) * 1000
  local limit = tonumber(limit_arg)
  local cost = tonumber(cost_arg)
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or 0)
  if tat < now then tat = now end
  local new_tat = tat + interval * math.max(cost, 1)
  local allow_at = new_tat - period
  if allow_at > now then
    local wait = math.ceil((allow_at - now) / 1000)
    return {0, 0, wait, wait}
  end
  if cost > 0 then
    tat = math.floor(new_tat)
    redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local spare = now + period - tat
  local remaining = math.floor(spare / interval)
  local reset = 0
  if remaining < limit then reset = math.ceil((interval - (spare - remaining * interval)) / 1000) end
  return {1, remaining, reset, 0}
end
"""
# KEYS[1]: the subject's key. ARGV: period (ms), limit, cost.
GCRA_LUA = GCRA_FUNCTION + "return gcra(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"
_GCRA_SCRIPT = Script(GCRA_LUA)

# A budget reserved before costly work and given back when the work turned out not to be
# what the budget counts (a failed-login slot, refunded when the password was right).
# KEYS[1]: the subject's key. ARGV: period (ms), limit. Moves the TAT back one interval,
# never before now. Returns 1 when something was given back.
REFUND_SCRIPT = Script(
    """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval = tonumber(ARGV[1]) * 1000 / tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat <= now then return 0 end
tat = math.floor(tat - interval)
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return 1
"""
)


_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class RateLimit(msgspec.Struct, frozen=True):
    """A parsed limit in the seed's notation: `5/minute`, `10/hour`, `3/2second`."""

    limit: int
    period_seconds: int

    @classmethod
    def parse(cls, value: str) -> RateLimit:
        match = _RATE_RE.match(value)
        if not match or int(match.group(1)) < 1:
            raise ValueError("expected N/period, e.g. 5/minute, 100/minute, 10/hour, 3/2second")
        multiple = int(match.group(2) or 1)
        if multiple < 1:
            raise ValueError("expected N/period with a period of at least 1 unit, e.g. 10/15minute")
        return cls(int(match.group(1)), multiple * _PERIODS[match.group(3).lower()])


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to apply: the subject's key, the rule, and whether to spend a slot."""

    key: str
    rule: RateLimit
    consume: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until one more slot is free
    retry_after: float  # seconds until an allowed request, when refused


class DecisionBox:
    """Holds the tightest decision of one request, for its response headers.

    A mutable box in a contextvar, set by the request middleware: Litestar may resolve
    dependencies in child tasks, which see the same box and fill it for the parent.
    """

    __slots__ = ("decision",)

    def __init__(self) -> None:
        self.decision: Decision | None = None


current_decision: contextvars.ContextVar[DecisionBox | None] = contextvars.ContextVar("rate_limit", default=None)


def limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-ratelimit-limit", str(decision.limit).encode()),
        (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        (b"x-ratelimit-reset", str(math.ceil(decision.reset)).encode()),
    ]
    if not decision.allowed:
        headers.append((b"retry-after", str(max(1, math.ceil(decision.retry_after))).encode()))
    return headers


class RateLimiter:
    """Applies limits through the shared Redis.

    Args:
        redis: the shared client.
        prefix: key prefix (REDIS_KEY_PREFIX).
        enabled: RATE_LIMIT_ENABLED; when off every check allows.
        lean: the multiplexed connection `check` and `run` use when given (a tenth of
            redis-py's CPU per call); without it they use `redis`.
    """

    def __init__(self, redis: Redis, *, prefix: str, enabled: bool = True, lean: LeanRedis | None = None) -> None:
        self._redis = redis
        self._lean = lean
        self._prefix = prefix
        self.enabled = enabled
        self._last_failure_log = 0.0
        self._scripts: dict[str, Script] = {}
        self.register(_GCRA_SCRIPT, REFUND_SCRIPT)

    def key(self, scope: str, subject: str, tag: str | None = None) -> str:
        """`<prefix>:rl:{<tag>}:<scope>`: the hash tag keeps a subject's keys in one Cluster slot."""
        return f"{self._prefix}:rl:{{{tag or subject}}}:{scope}:{subject}"

    def command(self, check: Check) -> Command:
        """One check as a command for `run` (its reply goes to `read`)."""
        return ("EVALSHA", _GCRA_SCRIPT.sha, 1, check.key, *self.args(check))

    @staticmethod
    def script_command(script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Command:
        """Another of our scripts as a command for `run` (loaded by `run` when Redis lost it)."""
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    def refund_command(self, check: Check) -> Command:
        """Give back one slot of `check` (see REFUND_SCRIPT)."""
        return self.script_command(REFUND_SCRIPT, (check.key,), self.args(check)[:2])

    def read(self, raw: Any, check: Check, *, remember: bool = True) -> Decision:
        """Turn a script reply into a Decision (and remember the tightest for the headers)."""
        if isinstance(raw, Exception):
            raise raw
        allowed, remaining, reset_ms, retry_ms = (int(v) for v in raw)
        decision = Decision(bool(allowed), check.rule.limit, remaining, reset_ms / 1000, retry_ms / 1000)
        if remember:
            self._remember(decision)
        return decision

    async def check(self, checks: Sequence[Check]) -> list[Decision]:
        """Run checks in one round trip. Raises RedisError when Redis is unreachable."""
        if not self.enabled or not checks:
            return [Decision(True, c.rule.limit, c.rule.limit, 0, 0) for c in checks]
        if len(checks) == 1:  # a pipeline costs more than the one command it would carry
            return [self.read(await self._eval(checks[0]), checks[0])]
        replies = await self.run(*(self.command(c) for c in checks))
        return [self.read(reply, c) for reply, c in zip(replies, checks, strict=True)]

    @staticmethod
    def args(check: Check) -> tuple[str, str, str]:
        return str(check.rule.period_seconds * 1000), str(check.rule.limit), str(int(check.consume))

    async def _eval(self, check: Check) -> Any:
        args = self.args(check)
        if self._lean is not None:
            return await self._lean.evalsha(_GCRA_SCRIPT, (check.key,), args)
        try:
            return await self._redis.evalsha(_GCRA_SCRIPT.sha, 1, check.key, *args)  # type: ignore[misc]
        except NoScriptError:
            return await self._redis.eval(GCRA_LUA, 1, check.key, *args)  # type: ignore[misc]

    def register(self, *scripts: Script) -> None:
        """Scripts that `run` may be asked to send; it loads them when Redis lost them."""
        for script in scripts:
            self._scripts[script.sha] = script

    async def run(self, *commands: Command) -> list[Any]:
        """Commands (checks from `command`, and any others) in one round trip, replies in order.
        A script Redis lost (restart, flush) is loaded and only the commands it refused are sent
        again (the others ran: a check must not be spent twice). Raises the first RedisError
        among the replies."""
        replies = await self._send(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for sha in {str(commands[i][1]) for i in missing}:
                script = self._scripts.get(sha)
                if script is None:
                    raise replies[missing[0]]
                await self._script_load(script)
            for i, reply in zip(missing, await self._send([commands[i] for i in missing]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return replies

    async def _send(self, commands: Sequence[Command]) -> list[Any]:
        if self._lean is not None:
            return list(await self._lean.pipeline(commands))
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def _script_load(self, script: Script) -> None:
        if self._lean is not None:
            await self._lean.execute("SCRIPT", "LOAD", script.body)
        else:
            await self._redis.script_load(script.body)

    def note_redis_failure(self, endpoint: str) -> None:
        """Fail-open path: log at most once a minute (the metric counts every one)."""
        now = time.monotonic()
        if now - self._last_failure_log >= 60:
            self._last_failure_log = now
            log.warning("ratelimit.redis_unavailable", endpoint=endpoint, policy="fail_open")

    @staticmethod
    def _remember(decision: Decision) -> None:
        box = current_decision.get()
        if box is None:
            return
        current = box.decision
        if current is None or not decision.allowed or (current.allowed and decision.remaining < current.remaining):
            box.decision = decision
