"""The verify hot path's own Redis connection (lib/redis/lean.py) against real redis-servers:
replies reach the right callers under concurrency, scripts survive a flush, and a dead,
killed or frozen server fails calls quickly with redis-py's exceptions, then recovers."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auth_service.domain.auth.verify import VERIFY_SCRIPT
from auth_service.lib.redis.lean import LeanRedis, Script
from tests.conftest import free_port
from tests.e2e.conftest import own_redis  # noqa: F401 - a fixture


async def test_concurrent_callers_each_get_their_own_reply(redis_url: str) -> None:
    lean = LeanRedis(redis_url)
    try:
        replies = await asyncio.gather(*(lean.execute("ECHO", f"caller-{i}") for i in range(500)))
        assert replies == [f"caller-{i}".encode() for i in range(500)]
    finally:
        await lean.aclose()


async def test_selects_the_database_of_the_url(redis_url: str) -> None:
    lean = LeanRedis(redis_url)
    try:
        await lean.execute("SET", "lean:db-check", "here")
        assert redis.Redis.from_url(redis_url).get("lean:db-check") == b"here"
    finally:
        await lean.aclose()


@pytest.mark.serial  # SCRIPT FLUSH empties the server's cache, every worker's scripts
async def test_script_is_reloaded_after_a_script_flush(redis_url: str) -> None:
    lean = LeanRedis(redis_url)
    script = Script("return ARGV[1] .. '!'")
    try:
        assert await lean.evalsha(script, (), ("hi",)) == b"hi!"
        redis.Redis.from_url(redis_url).script_flush()
        assert await lean.evalsha(script, (), ("again",)) == b"again!"
    finally:
        await lean.aclose()


async def test_error_replies_raise_and_leave_the_connection_usable(redis_url: str) -> None:
    lean = LeanRedis(redis_url)
    try:
        await lean.execute("SET", "lean:str", "x")
        with pytest.raises(ResponseError):
            await lean.execute("INCR", "lean:str")
        assert await lean.execute("PING") == b"PONG"
    finally:
        await lean.aclose()


async def test_verify_script_reads_revocation_marks_and_counts_the_limit(redis_url: str) -> None:
    lean = LeanRedis(redis_url)
    keys = ("t:{u}:rv", "t:active:{hll}:1", "t:rl:{u}:verify:u")
    args = ("u", 60, "j:1", "f:2", 60_000, 2)
    try:
        missing = await lean.evalsha(VERIFY_SCRIPT, keys[:2], args[:4])
        assert missing[1] == [None, None, None] and abs(missing[2] / 1000 - time.time()) < 5  # Redis's clock
        redis.Redis.from_url(redis_url).hset("t:{u}:rv", mapping={"s": "1:0", "f:2": "1"})
        first = await lean.evalsha(VERIFY_SCRIPT, keys, args)
        assert first[0][0] == 1 and first[1] == [b"1:0", None, b"1"] and len(first) == 2
        second = await lean.evalsha(VERIFY_SCRIPT, keys, args)
        assert second[0][:2] == [1, 0]
        refused = await lean.evalsha(VERIFY_SCRIPT, keys, args)
        assert refused[0][0] == 0 and len(refused) == 1  # refused before any other work
        assert redis.Redis.from_url(redis_url).pfcount("t:active:{hll}:1") == 1
    finally:
        await lean.aclose()


async def test_nothing_listening_fails_fast_with_connection_error() -> None:
    lean = LeanRedis(f"redis://127.0.0.1:{free_port()}/0", timeout=2)
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await lean.execute("PING")
    assert time.monotonic() - started < 1


@pytest.mark.serial  # kills every client of the server, other workers' too
async def test_killed_connection_fails_in_flight_calls_then_reconnects(redis_url: str) -> None:
    lean = LeanRedis(redis_url)
    try:
        await lean.execute("CLIENT", "SETNAME", "lean-kill-me")
        blocked = asyncio.ensure_future(lean.execute("BLPOP", "lean:never", 5))
        await asyncio.sleep(0.1)
        redis.Redis.from_url(redis_url).client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(RedisConnectionError):
            await blocked
        assert await lean.execute("PING") == b"PONG"
    finally:
        await lean.aclose()


async def test_frozen_server_times_out_every_call_then_recovers(own_redis: Any) -> None:  # noqa: F811
    lean = LeanRedis(own_redis.url, timeout=0.5)
    try:
        assert await lean.execute("PING") == b"PONG"
        own_redis.signal(signal.SIGSTOP)
        started = time.monotonic()
        results = await asyncio.gather(*(lean.execute("PING") for _ in range(50)), return_exceptions=True)
        waited = time.monotonic() - started
        assert all(isinstance(r, RedisTimeoutError) for r in results), results[:3]
        assert waited < 1.5, f"calls waited {waited:.2f}s with a 0.5s timeout"
        own_redis.signal(signal.SIGCONT)
        assert await lean.execute("PING") == b"PONG"
    finally:
        own_redis.signal(signal.SIGCONT)
        await lean.aclose()


async def test_stopped_then_restarted_server(own_redis: Any) -> None:  # noqa: F811
    lean = LeanRedis(own_redis.url, timeout=0.5)
    try:
        assert await lean.execute("PING") == b"PONG"
        own_redis.stop()
        with pytest.raises(RedisConnectionError):
            await lean.execute("PING")
        own_redis.start()
        assert await lean.execute("PING") == b"PONG"
    finally:
        await lean.aclose()


def test_tls_urls_are_left_to_redis_py() -> None:
    assert not LeanRedis.supports("rediss://127.0.0.1:6380/0")
    assert LeanRedis.supports("unix:///tmp/redis.sock?db=2")
    with pytest.raises(ValueError, match="plain TCP"):
        LeanRedis("rediss://127.0.0.1:6380/0")


@pytest.mark.serial  # kills every client of the server, other workers' too
async def test_a_reply_never_reaches_another_caller_across_a_reconnect(redis_url: str) -> None:
    """Connections killed while hundreds of calls are in flight: every call either fails or
    gets its own reply, never one meant for another caller (a revocation answer must not
    travel to the wrong token)."""
    lean = LeanRedis(redis_url)
    admin = redis.Redis.from_url(redis_url)

    async def echo(i: int) -> tuple[int, Any]:
        try:
            return i, await lean.execute("ECHO", f"caller-{i}")
        except RedisConnectionError:
            return i, None

    try:
        results: list[tuple[int, Any]] = []
        for wave in range(5):
            calls = [asyncio.ensure_future(echo(wave * 1000 + i)) for i in range(300)]
            await asyncio.sleep(0)
            admin.client_kill_filter(_type="normal", skipme=True)
            results += await asyncio.gather(*calls)
        answered = [(i, reply) for i, reply in results if reply is not None]
        assert answered, "every call failed: the test proves nothing"
        assert all(reply == f"caller-{i}".encode() for i, reply in answered)
    finally:
        await lean.aclose()


async def test_pipeline_answers_in_order_with_errors_as_replies(redis_url: str) -> None:
    lean = LeanRedis(redis_url)
    try:
        replies = await lean.pipeline(
            [("SET", "lean:p", "x"), ("INCR", "lean:p"), ("GET", "lean:p"), ("EVALSHA", "0" * 40, 0)]
        )
        assert replies[0] == b"OK" and replies[2] == b"x"
        assert isinstance(replies[1], ResponseError) and isinstance(replies[3], NoScriptError)
        assert await lean.execute("PING") == b"PONG"
    finally:
        await lean.aclose()


async def test_pipeline_to_nothing_listening_raises() -> None:
    lean = LeanRedis(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    with pytest.raises(RedisConnectionError):
        await lean.pipeline([("PING",), ("PING",)])
    await lean.aclose()


async def test_a_pipeline_over_the_in_flight_cap_sends_none_of_its_commands(redis_url: str) -> None:
    lean = LeanRedis(redis_url, max_pending=3)
    counter = redis.Redis.from_url(redis_url)
    counter.delete("lean:cap")
    try:
        blocked = asyncio.ensure_future(lean.execute("BLPOP", "lean:cap-wait", 1))  # one call in flight
        await asyncio.sleep(0.05)
        with pytest.raises(RedisConnectionError, match="too many"):
            await lean.pipeline([("INCR", "lean:cap")] * 3)  # 1 + 3 > 3: all refused, none sent
        assert await lean.pipeline([("INCR", "lean:cap")] * 2) == [1, 2]  # 1 + 2 fits
        assert await blocked is None
        assert counter.get("lean:cap") == b"2"
    finally:
        await lean.aclose()


async def test_calls_get_a_client_span_only_under_a_recorded_span(redis_url: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from observability.setup import init_telemetry

    telemetry = init_telemetry(service_name="auth-service-api", version="test", environment="test")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.tracer_provider.add_span_processor(processor)
    lean = LeanRedis(redis_url)
    try:
        await lean.execute("PING")  # no request span: no span at all
        assert exporter.get_finished_spans() == ()
        with trace.get_tracer("test").start_as_current_span("request") as parent:
            await lean.execute("SET", "lean:span", "secret-value")
            await lean.pipeline([("GET", "lean:span"), ("INCR", "lean:span"), ("GET", "lean:span")])
        one, many = (s for s in exporter.get_finished_spans() if s.name != "request")
        assert one.name == "SET" and many.name == "GET INCR"
        for span in (one, many):
            assert span.kind == trace.SpanKind.CLIENT and span.attributes is not None
            assert span.attributes["db.system"] == "redis"
            assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
            assert "secret-value" not in str(span.attributes) and "lean:span" not in str(span.attributes)
        assert many.attributes is not None and many.attributes["db.statement"] == "GET INCR GET"
    finally:
        await lean.aclose()
        processor.shutdown()


async def _calls_end_in_time(lean: LeanRedis, timeout: float, calls: int = 60) -> list[Any]:
    """Every call ends (with a reply or redis-py's error) within `timeout` plus a little."""
    results = []
    for _ in range(calls):
        started = time.monotonic()
        try:
            results.append(await asyncio.wait_for(lean.execute("PING"), timeout * 3))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            results.append(exc)
        waited = time.monotonic() - started
        assert waited < timeout + 0.5, f"a call took {waited:.2f}s with timeout {timeout}s"
    return results


async def test_a_server_that_sends_an_error_on_accept_fails_every_call_in_time() -> None:
    """What Redis does at maxclients: accept, send `-ERR max number of clients reached`, close.
    The fake server does it at once, after a pause, or in pieces, on every connection."""
    behaviours = [b"", b"", b"pause", b"split"]
    seen = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        how = behaviours[seen % len(behaviours)]
        seen += 1
        if how == b"pause":
            await asyncio.sleep(0.05)
        message = b"-ERR max number of clients reached\r\n"
        if how == b"split":
            writer.write(message[:7])
            await writer.drain()
            await asyncio.sleep(0.01)
            message = message[7:]
        writer.write(message)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lean = LeanRedis(f"redis://127.0.0.1:{port}/0", timeout=2)
    try:
        results = await _calls_end_in_time(lean, 2)
        assert all(isinstance(r, RedisConnectionError) for r in results), results[:3]
        assert any("max number of clients" in str(r) for r in results)
    finally:
        await lean.aclose()
        server.close()
        await server.wait_closed()


async def test_a_server_that_accepts_and_never_answers_times_every_call_out() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lean = LeanRedis(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    try:
        results = await asyncio.gather(*(_calls_end_in_time(lean, 0.3, calls=5) for _ in range(10)))
        assert all(isinstance(r, RedisTimeoutError) for batch in results for r in batch)
    finally:
        await lean.aclose()
        server.close()


async def test_a_real_redis_at_maxclients_fails_calls_in_time_then_recovers(own_redis: Any) -> None:  # noqa: F811
    admin = redis.Redis(port=own_redis.port, single_connection_client=True)
    lean = LeanRedis(own_redis.url, timeout=1)
    try:
        assert await lean.execute("PING") == b"PONG"
        admin.config_set("maxclients", 1)
        admin.client_kill_filter(_type="normal", skipme=True)  # ours holds the only slot
        results = await _calls_end_in_time(lean, 1)
        assert all(isinstance(r, RedisConnectionError) for r in results), results[:3]
        admin.config_set("maxclients", 100)
        assert await lean.execute("PING") == b"PONG"
    finally:
        admin.close()
        await lean.aclose()
