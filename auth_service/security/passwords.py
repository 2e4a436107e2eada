"""Password hashing: argon2id for everything new, bcrypt only to verify legacy hashes.

Hashing is CPU- and memory-heavy, so it runs on a bounded thread pool (argon2-cffi
and bcrypt release the GIL) and never on the event loop. The hashing threads run at a
lower OS priority than the event loop's (nice +10 on Linux): when the CPU is short,
logins wait for verify, not the other way round. A semaphore caps the work
in flight; past it, callers get `HasherBusyError` at once instead of queueing
without bound, so a flood of logins cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["HasherBusyError", "PasswordHasher", "VerifyResult"]

T = TypeVar("T")
_LEGACY_PREFIXES = ("$2a$", "$2b$", "$2y$")
# CFS weight 110 vs the event loop's 1024: when the loop wants the whole core, hashing still
# gets ~10 % of it (about two logins a second), and it has every moment the loop waits on
# I/O. At +5 (weight 335) verify's p99 with logins at a quarter of capacity was 1.44-1.58x
# its unloaded p99 in three bench runs; at +10, 1.25-1.36x (logins kept their pace in both).
HASH_THREAD_NICE = 10
# bcrypt only ever looked at the first 72 bytes; bcrypt>=5 raises instead of truncating.
_BCRYPT_MAX_BYTES = 72


def _below_the_event_loop() -> None:
    """Thread initializer: lower this hashing thread's priority (Linux sets nice per thread)."""
    # Not Linux, or not permitted: hashing still runs off the event loop, at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + HASH_THREAD_NICE))


class HasherBusyError(RuntimeError):
    """Too many password checks are already in flight."""


class VerifyResult:
    """The outcome of a check: whether it matched, and a new hash to store if one is due."""

    __slots__ = ("new_hash", "ok")

    def __init__(self, ok: bool, new_hash: str | None = None) -> None:
        self.ok = ok
        self.new_hash = new_hash


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
        if stored_hash is None:
            self._check_argon2(self._dummy_hash, password)
            return VerifyResult(False)
        if stored_hash.startswith(_LEGACY_PREFIXES):
            candidate = password.encode()[:_BCRYPT_MAX_BYTES]
            try:
                ok = bcrypt.checkpw(candidate, stored_hash.encode())
            except ValueError:
                ok = False
            return VerifyResult(ok, self._argon2.hash(password) if ok else None)
        if not self._check_argon2(stored_hash, password):
            return VerifyResult(False)
        needs_rehash = self._argon2.check_needs_rehash(stored_hash)
        return VerifyResult(True, self._argon2.hash(password) if needs_rehash else None)

    def _check_argon2(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
