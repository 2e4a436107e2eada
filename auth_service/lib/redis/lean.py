"""A lean Redis connection for the hot paths: verify's script, the rate-limit checks, the
login's Redis bookkeeping and the job enqueue.

redis-py's asyncio client spends 150-200 µs of CPU per call (connection-pool checkout,
per-call timeouts, pipeline objects); at thousands of verifies a second that is most of
the request. This is one multiplexed connection speaking RESP2: every caller writes its
command and waits on a future; replies come back in order (Redis answers in order), and
commands from concurrent requests go out together, so Redis pipelines them for free.
A call costs ~15 µs of CPU.

Failure behaviour matches the rest of the service (it raises redis-py's exceptions), and
every call ends within `timeout` whatever the server does:
- the connection drops (also at once after accepting it, as Redis does at `maxclients`)
  -> every waiting call fails with ConnectionError, a call handed a connection that is
  already closed fails at once, and the next call reconnects;
- Redis stops answering (paused, partitioned) -> each connection's own watchdog fails every
  call older than `timeout` with TimeoutError and drops that connection, so nothing piles up
  (a connection that was replaced keeps its watchdog until its last caller is answered);
- more than `max_pending` calls in flight -> the new call fails at once.

Only plain TCP and unix sockets: for `rediss://` the caller keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import hiredis
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Command", "LeanRedis", "Script"]

# One Redis command as its words: ("SET", key, value, "EX", 60).
Command = tuple[bytes | str | int, ...]

_tracer = trace.get_tracer("auth_service.redis")


class Script:
    """A Lua script and its SHA-1, the name Redis caches it under."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


def _pack(args: Command) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _failed(span: trace.Span | None, exc: Exception) -> None:
    if span is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def _reply_error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class _Protocol(asyncio.Protocol):
    """One connection and the callers waiting on it, in the order their commands were sent.

    The queue belongs to the connection: a reply can only ever reach a caller whose command
    went out on this same connection. So does the watchdog: it runs while this connection has
    callers waiting, whether or not the client still uses it for new calls.
    """

    def __init__(self, client: LeanRedis, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._reader = hiredis.Reader(replyError=_reply_error)
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.closed = False
        self._error: Exception = RedisConnectionError("connection to Redis lost")
        self._watchdog: asyncio.TimerHandle | None = None
        # Commands of one event-loop turn leave in one write (one syscall, not one per request).
        self._outgoing: list[bytes] = []

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.closed:  # closed while its caller was being resumed: nothing would ever answer
            future.set_exception(self._error)
            return future
        self.pending.append((future, time.monotonic() + self._timeout))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout / 4, self._watch)
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(payload)
        return future

    def _flush(self) -> None:
        if self.usable():
            assert self.transport is not None
            self.transport.write(b"".join(self._outgoing))
            self._outgoing.clear()
        elif not self.closed:  # the transport went away without connection_lost (yet)
            self.fail(RedisConnectionError("connection to Redis lost"))

    def _watch(self) -> None:
        """Runs while callers wait: one past its deadline means Redis stopped answering."""
        self._watchdog = None
        if not self.pending:
            return
        if self.pending[0][1] < time.monotonic():
            self.fail(RedisTimeoutError("Redis did not answer in time"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(self._timeout / 4, self._watch)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError:
                self.fail(RedisConnectionError("Redis sent something that is not RESP"))
                return
            if reply is False:
                return
            if not self.pending:  # a reply nobody asked for (an error on accept, or out of step)
                message = str(reply) if isinstance(reply, Exception) else "unexpected reply from Redis"
                self.fail(RedisConnectionError(message))
                return
            future, _ = self.pending.popleft()
            if not future.done():  # its caller may have given up already
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError("connection to Redis lost"))

    def fail(self, error: Exception) -> None:
        """Close this connection and fail every caller still waiting on it."""
        if not self.closed:
            self.closed = True
            self._error = error
        if self.transport is not None:
            self.transport.abort()
        self._outgoing.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        self._client._forget(self)


class LeanRedis:
    """One multiplexed RESP2 connection (replaced by a new one when it fails).

    Args:
        url: redis:// or unix:// URL (user, password and db honoured).
        timeout: seconds before a call, or the connect, gives up.
        max_pending: calls in flight beyond which new calls fail at once.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, max_pending: int = 10_000) -> None:
        options = parse_url(url)
        if options.get("connection_class") is SSLConnection:
            raise ValueError("LeanRedis speaks plain TCP and unix sockets only")
        self._path: str | None = options.get("path")
        self._host = str(options.get("host", "localhost"))
        self._port = int(options.get("port", 6379))
        self._db = int(options.get("db", 0) or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._timeout = timeout
        self._max_pending = max_pending
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    @staticmethod
    def supports(url: str) -> bool:
        return parse_url(url).get("connection_class") is not SSLConnection

    async def execute(self, *args: bytes | str | int) -> Any:
        """Send one command, return its reply. Raises redis-py's RedisError subclasses."""
        return await self._traced((args,), self._one)

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Several commands in one write, their replies in order. A command's error comes back
        as its reply (ResponseError, NoScriptError), like redis-py's execute(raise_on_error=False);
        a lost or frozen connection raises."""
        replies: list[Any] = await self._traced(commands, self._many)
        return replies

    async def _traced(self, commands: Sequence[Command], call: Any) -> Any:
        span = self._span(commands)
        try:
            return await call(await self._usable(), commands)
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            if span is not None:
                span.end()

    async def _usable(self) -> _Protocol:
        protocol = self._protocol
        if protocol is None or not protocol.usable():
            protocol = await self._connect()
        return protocol

    async def _one(self, protocol: _Protocol, commands: Sequence[Command]) -> Any:
        self._make_room(protocol, 1)
        return await self._send(protocol, _pack(commands[0]))

    async def _many(self, protocol: _Protocol, commands: Sequence[Command]) -> list[Any]:
        # All or none: a cap tripping halfway would leave the first commands running in Redis
        # with nobody to read their replies.
        self._make_room(protocol, len(commands))
        futures = [self._send(protocol, _pack(command)) for command in commands]
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, ResponseError):
                raise reply
        return replies

    def _span(self, commands: Sequence[Command]) -> trace.Span | None:
        """A client span like the redis-py instrumentation's, only under a recorded span: a
        sampled-out verify pays one is_recording() check. Command names only, never keys or
        values (they hold user ids and addresses)."""
        if not trace.get_current_span().is_recording():
            return None
        names = [str(command[0]).upper() for command in commands]
        return _tracer.start_span(
            " ".join(dict.fromkeys(names)),
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "redis",
                "db.statement": " ".join(names),
                "db.redis.database_index": self._db,
                "db.redis.pipeline_length": len(names),
                "net.peer.name": self._path or self._host,
                "net.peer.port": self._port,
            },
        )

    async def evalsha(self, script: Script, keys: tuple[str, ...], args: tuple[bytes | str | int, ...]) -> Any:
        """EVALSHA, falling back to EVAL when Redis has not seen the script (restart, flush)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script.body, len(keys), *keys, *args)

    def _make_room(self, protocol: _Protocol, calls: int) -> None:
        if len(protocol.pending) + calls > self._max_pending:
            raise RedisConnectionError("too many Redis calls in flight")

    @staticmethod
    def _send(protocol: _Protocol, payload: bytes) -> asyncio.Future[Any]:
        """Queue one command; the caller has made room for it (`_make_room`)."""
        return protocol.send(payload)

    def _forget(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    async def _connect(self) -> _Protocol:
        # Concurrent callers share one connection attempt.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        timeout = self._timeout
        if self._protocol is not None:  # a connection that stopped being usable: fail its callers
            self._protocol.fail(RedisConnectionError("connection to Redis lost"))
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(self._timeout):
                if self._path:
                    _, protocol = await loop.create_unix_connection(lambda: _Protocol(self, timeout), self._path)
                else:
                    _, protocol = await loop.create_connection(lambda: _Protocol(self, timeout), self._host, self._port)
                # PING always: a server that accepts and then refuses (maxclients) says so here,
                # and the connection is handed out only once it has answered.
                if self._password:
                    auth = (self._username, self._password) if self._username else (self._password,)
                    await protocol.send(_pack(("AUTH", *auth)))
                if self._db:
                    await protocol.send(_pack(("SELECT", self._db)))
                await protocol.send(_pack(("PING",)))
        except TimeoutError:
            if protocol is not None:
                protocol.fail(RedisTimeoutError("Redis did not answer in time"))
            raise RedisTimeoutError("connecting to Redis timed out") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc.strerror or exc}") from None
        except ResponseError as exc:  # AUTH or SELECT refused (settings), or an error on accept (maxclients)
            if protocol is not None:
                protocol.fail(RedisConnectionError("Redis refused the connection"))
            raise RedisConnectionError(f"Redis refused the connection: {exc}") from None
        if not protocol.usable():
            raise RedisConnectionError("connection to Redis lost")
        self._protocol = protocol
        return protocol

    async def aclose(self) -> None:
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("client closed"))
