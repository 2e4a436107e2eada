"""Password hashing: argon2id for everything new, bcrypt only to verify legacy hashes.

Hashing is CPU- and memory-heavy, so it runs on a bounded thread pool (argon2-cffi
and bcrypt release the GIL) and never on the event loop. The hashing threads run at a
lower OS priority than the event loop's (nice +10 on Linux): when the CPU is short,
logins wait for verify, not the other way round. A semaphore caps the work
in flight; past it, callers get `HasherBusyError` at once instead of queueing
without bound, so a flood of logins cannot exhaust memory.

A failed check must not tell what kind of hash the account has (a legacy bcrypt hash means
"this account exists and has not logged in since the migration"): every failure lasts at
least the *failure floor*, the recent median of a check at the current parameters, scaled up
by the cost of the slowest other kind of hash seen (measured at start-up from the kinds the
users table holds, and on every check). The wait is a sleep on the event loop, not a thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt
import structlog
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["UNUSABLE_PREFIX", "HasherBusyError", "PasswordHasher", "VerifyResult", "hash_kind", "unusable_password"]

log = structlog.get_logger()

T = TypeVar("T")
_LEGACY_PREFIXES = ("$2a$", "$2b$", "$2y$")
# A stored "hash" that no password matches (an invited user who has not set one yet), as Django
# marks its unusable passwords: recognisable, so the last-admin guard can tell who can sign in,
# and checked against the dummy hash, so a login against it costs what any other failure does.
UNUSABLE_PREFIX = "!"


def unusable_password() -> str:
    """The stored value of an account that has no password yet."""
    return UNUSABLE_PREFIX + secrets.token_urlsafe(32)


# CFS weight 110 vs the event loop's 1024: when the loop wants the whole core, hashing still
# gets ~10 % of it (about two logins a second), and it has every moment the loop waits on
# I/O. At +5 (weight 335) verify's p99 with logins at a quarter of capacity was 1.44-1.58x
# its unloaded p99 in three bench runs; at +10, 1.25-1.36x (logins kept their pace in both).
HASH_THREAD_NICE = 10
# bcrypt only ever looked at the first 72 bytes; bcrypt>=5 raises instead of truncating.
_BCRYPT_MAX_BYTES = 72
# Start-up calibration refuses to spend more than this on one legacy kind (bcrypt 2^14).
_BCRYPT_MAX_CALIBRATED_COST = 14
_MAX_KINDS = 32
_ARGON2_KIND = re.compile(r"^(\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+)\$")
_BCRYPT_KIND = re.compile(r"^(\$2[aby]\$\d\d)\$")


def hash_kind(stored_hash: str) -> str:
    """The algorithm and parameters of a stored hash (`$argon2id$v=19$m=19456,t=2,p=1`,
    `$2b$12`), which decide how long a check of it takes; "other" for anything else."""
    match = _ARGON2_KIND.match(stored_hash) or _BCRYPT_KIND.match(stored_hash)
    return match.group(1) if match else "other"


def _below_the_event_loop() -> None:
    """Thread initializer: lower this hashing thread's priority (Linux sets nice per thread)."""
    # Not Linux, or not permitted: hashing still runs off the event loop, at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + HASH_THREAD_NICE))


class HasherBusyError(RuntimeError):
    """Too many password checks are already in flight."""


class VerifyResult:
    """The outcome of a check: whether it matched, a new hash to store if one is due, and how
    long the check itself took (seconds, without the rehash or the wait for a thread)."""

    __slots__ = ("new_hash", "ok", "seconds")

    def __init__(self, ok: bool, new_hash: str | None = None, seconds: float = 0.0) -> None:
        self.ok = ok
        self.new_hash = new_hash
        self.seconds = seconds


class PasswordHasher:
    """argon2id hashing off the event loop, with legacy bcrypt upgrade.

    Args:
        memory_kib: argon2 memory cost (OWASP minimum 19456).
        time_cost: argon2 iterations (OWASP minimum 2).
        parallelism: argon2 lanes.
        workers: threads that hash at once.
        max_pending: checks allowed in flight (running + waiting) before refusing.
    """

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int, workers: int, max_pending: int) -> None:
        self._argon2 = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="password-hash", initializer=_below_the_event_loop
        )
        self._slots = asyncio.Semaphore(max(max_pending, workers))
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(16))
        self._current_kind = hash_kind(self._dummy_hash)
        self._recent: collections.deque[float] = collections.deque(maxlen=31)
        # Cost of each other kind of hash, relative to a current check measured at the same time.
        self._ratios: dict[str, float] = {}
        started = time.perf_counter()
        self._check_argon2(self._dummy_hash, secrets.token_urlsafe(16))
        self._recent.append(time.perf_counter() - started)

    async def _run(self, func: Callable[[], T]) -> T:
        if self._slots.locked():
            raise HasherBusyError
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._pool, func)

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._argon2.hash(password))

    async def verify(self, stored_hash: str | None, password: str) -> VerifyResult:
        """Check a password; with no stored hash, burn the same time on a dummy and fail.

        Returns a new argon2id hash when the stored one is bcrypt or uses old parameters.
        """
        return await self._run(lambda: self._verify_sync(stored_hash, password))

    def _verify_sync(self, stored_hash: str | None, password: str) -> VerifyResult:
        started = time.perf_counter()
        if stored_hash is None or stored_hash.startswith(UNUSABLE_PREFIX):
            self._check_argon2(self._dummy_hash, password)
            self._observe(self._current_kind, time.perf_counter() - started)
            return VerifyResult(False, seconds=time.perf_counter() - started)
        if stored_hash.startswith(_LEGACY_PREFIXES):
            candidate = password.encode()[:_BCRYPT_MAX_BYTES]
            try:
                ok = bcrypt.checkpw(candidate, stored_hash.encode())
            except ValueError:
                ok = False
            seconds = time.perf_counter() - started
            self._observe(hash_kind(stored_hash), seconds)
            return VerifyResult(ok, self._argon2.hash(password) if ok else None, seconds)
        ok = self._check_argon2(stored_hash, password)
        seconds = time.perf_counter() - started
        self._observe(hash_kind(stored_hash), seconds)
        if not ok:
            return VerifyResult(False, seconds=seconds)
        needs_rehash = self._argon2.check_needs_rehash(stored_hash)
        return VerifyResult(True, self._argon2.hash(password) if needs_rehash else None, seconds)

    def _observe(self, kind: str, seconds: float) -> None:
        if kind == self._current_kind:
            self._recent.append(seconds)
        elif kind in self._ratios or len(self._ratios) < _MAX_KINDS:
            ratio = seconds / max(statistics.median(self._recent), 1e-6)
            previous = self._ratios.get(kind)
            self._ratios[kind] = ratio if previous is None else (previous + ratio) / 2

    def failure_floor(self) -> float:
        """Seconds every failed check should take, whatever the stored hash (module docstring)."""
        current = statistics.median(self._recent)
        return current * max(1.0, max(self._ratios.values(), default=1.0))

    async def pad_failure(self, result: VerifyResult) -> None:
        """Wait out the rest of the failure floor after a failed check (or a right password that
        still fails the login: a disabled account), so the answer's timing says nothing."""
        wait = self.failure_floor() - result.seconds
        if wait > 0:
            await asyncio.sleep(wait)

    async def calibrate(self, kinds: Iterable[str]) -> None:
        """Measure the cost of each kind of stored hash once (start-up: the kinds the users
        table holds), so the failure floor covers them before the first login meets one."""
        for kind in kinds:
            if kind == self._current_kind or kind in self._ratios:
                continue
            await self._run(lambda kind=kind: self._calibrate_one(kind))  # type: ignore[misc]
        if self._ratios:
            log.info("passwords.failure_floor", seconds=round(self.failure_floor(), 4), kinds=len(self._ratios) + 1)

    def _calibrate_one(self, kind: str) -> None:
        sample = self._sample_hash(kind)
        if sample is not None:
            self._verify_sync(sample, secrets.token_urlsafe(16))

    @staticmethod
    def _sample_hash(kind: str) -> str | None:
        """A throwaway hash of that kind (same algorithm and parameters)."""
        if match := re.fullmatch(r"\$2[aby]\$(\d\d)", kind):
            rounds = int(match.group(1))
            if not 4 <= rounds <= _BCRYPT_MAX_CALIBRATED_COST:
                log.warning("passwords.bcrypt_cost_not_calibrated", rounds=rounds)
                return None
            return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=rounds)).decode()
        if match := re.fullmatch(r"\$argon2(id|i|d)\$v=\d+\$m=(\d+),t=(\d+),p=(\d+)", kind):
            variant = match.group(1)
            memory, passes, lanes = (int(value) for value in match.groups()[1:])
            if memory > 262144 or passes > 16 or lanes > 16:
                log.warning("passwords.argon2_kind_not_calibrated", kind=kind)
                return None
            kinds = {"id": Type.ID, "i": Type.I, "d": Type.D}
            other = Argon2Hasher(time_cost=passes, memory_cost=memory, parallelism=lanes, type=kinds[variant])
            return other.hash(secrets.token_urlsafe(16))
        return None

    def _check_argon2(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
