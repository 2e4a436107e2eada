from __future__ import annotations

import asyncio
import os
import threading

import bcrypt
import pytest
from argon2 import PasswordHasher as Argon2

from auth_service.lib.crypto.passwords import HASH_THREAD_NICE, HasherBusyError, PasswordHasher


def hasher(**overrides: int) -> PasswordHasher:
    options = {"memory_kib": 19456, "time_cost": 2, "parallelism": 1, "workers": 2, "max_pending": 8}
    options.update(overrides)
    return PasswordHasher(**options)


async def test_argon2id_round_trip_at_owasp_parameters() -> None:
    h = hasher()
    stored = await h.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await h.verify(stored, "correct horse battery staple")).ok
    result = await h.verify(stored, "wrong")
    assert not result.ok and result.new_hash is None


async def test_legacy_bcrypt_verifies_once_and_is_upgraded() -> None:
    legacy = bcrypt.hashpw(b"old password here", bcrypt.gensalt(rounds=4)).decode()
    result = await hasher().verify(legacy, "old password here")
    assert result.ok
    assert result.new_hash is not None and result.new_hash.startswith("$argon2id$")
    assert not (await hasher().verify(legacy, "not it")).ok


async def test_weaker_parameters_are_rehashed() -> None:
    old = Argon2(memory_cost=19456, time_cost=2, parallelism=1).hash("pw-pw-pw-pw-pw")
    result = await hasher(time_cost=3).verify(old, "pw-pw-pw-pw-pw")
    assert result.ok and result.new_hash is not None and ",t=3," in result.new_hash


async def test_unknown_user_fails_against_dummy_hash() -> None:
    assert not (await hasher().verify(None, "anything")).ok


async def test_garbage_hash_is_a_mismatch_not_an_error() -> None:
    assert not (await hasher().verify("not-a-hash", "x")).ok


async def test_saturated_pool_refuses_instead_of_queueing() -> None:
    h = hasher(workers=1, max_pending=1)
    stored = await h.hash("some password 123")
    results = await asyncio.gather(*(h.verify(stored, "x") for _ in range(5)), return_exceptions=True)
    assert any(isinstance(r, HasherBusyError) for r in results)
    assert any(not isinstance(r, Exception) for r in results)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is a Linux feature")
async def test_hashing_threads_run_below_the_event_loop() -> None:
    pool = hasher()
    try:
        loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        hash_nice = await pool._run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert hash_nice == min(19, loop_nice + HASH_THREAD_NICE)
    finally:
        pool.close()
