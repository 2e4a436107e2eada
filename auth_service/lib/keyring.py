"""The managed signing keys of one process: read from `signing_keys`, kept in memory, refreshed.

Signing and verifying never wait on the database: they read the last `KeySet` loaded. A
background task (`run`) reloads it every KEY_REFRESH_SECONDS (≤ 60), so every instance sees a
rotation or a retirement within that time without a restart; which key signs at a given moment
follows from the timestamps alone (lib/crypto/keys.py), so instances switch together.

Each load first moves the stored states forward (next -> active -> retiring -> removed), in one
transaction under an advisory lock: the statements are idempotent, the lock only keeps two
instances from doing the same work at once. Commands (`rotate`, `retire`, `ensure`) are for the
CLI and start-up; they take the same lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.lib.audit import Actor, AuditEntry, record
from auth_service.lib.crypto.keys import KeySet, ManagedKey, generate, import_public, unwrap_private
from db.models import SigningKey

__all__ = ["KeyRing", "RotationRefused"]

log = structlog.get_logger()

_T = SigningKey.__table__.c
# pg_advisory_xact_lock's key for key-state changes ("signkeys" in ASCII, as a bigint).
_LOCK = 0x7369676E6B657973


class RotationRefused(Exception):
    """A rotation or retirement that would leave the keys in a state we do not allow."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KeyRing:
    """The signing keys of this process.

    Args:
        session_factory: sessions on the database that holds `signing_keys`.
        wrap_key: the `signing-key-wrap` purpose key.
        algorithm: SIGNING_KEY_ALGORITHM, for keys this ring makes.
        rotation_delay: seconds from `rotate` until the new key signs (KEY_ROTATION_DELAY).
        retire_after: seconds a retired key stays published: the longest lifetime of a token it signed.
        refresh_seconds: how often `run` reloads (KEY_REFRESH_SECONDS).
        clock: the current time (tests move it).
    """

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        wrap_key: bytes,
        *,
        algorithm: str,
        rotation_delay: float,
        retire_after: float,
        refresh_seconds: float = 30.0,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._sessions = session_factory
        self._wrap_key = wrap_key
        self.algorithm = algorithm
        self.rotation_delay = dt.timedelta(seconds=rotation_delay)
        self.retire_after = dt.timedelta(seconds=retire_after)
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._set = KeySet()
        self._jwks: tuple[int, dt.datetime | None, bytes] = (-1, None, b"")

    # ---- what requests read (no I/O) --------------------------------------------------------

    @property
    def keys(self) -> KeySet:
        return self._set

    @property
    def generation(self) -> int:
        """Changes whenever the loaded keys do (the verifier drops its claims cache then)."""
        return self._set.generation

    def signer(self) -> ManagedKey | None:
        return self._set.signer(self.clock())

    def verifying(self, kid: str) -> ManagedKey | None:
        return self._set.verifying(kid, self.clock())

    def jwks(self) -> bytes:
        """The JWK Set document, rebuilt only when the keys or a key's state changed."""
        now = self.clock()
        generation, valid_until, body = self._jwks
        if generation == self._set.generation and (valid_until is None or now < valid_until):
            return body
        body = self._set.jwks(now)
        # The next moment a published key's state can change (a retiring key leaves).
        edges = [k.removes_at for k in self._set.keys if k.removes_at is not None and k.removes_at > now]
        self._jwks = (self._set.generation, min(edges) if edges else None, body)
        return body

    # ---- loading ----------------------------------------------------------------------------

    async def load(self) -> KeySet:
        """Advance the stored states, then read every key that is not removed."""
        now = self.clock()
        async with self._sessions() as session, session.begin():
            await session.execute(select(func.pg_advisory_xact_lock(_LOCK)))
            await _advance(session, now, self.retire_after)
            rows = (await session.execute(select(SigningKey).where(_T.state != "removed"))).scalars().all()
            keys = [self._held(row) for row in rows]
        loaded = KeySet.of(keys, self._set.generation + 1)
        if loaded.keys != self._set.keys or self._set.generation == 0:
            self._set = loaded
        return self._set

    def _held(self, row: SigningKey) -> ManagedKey:
        private = None
        if row.private_key is not None and row.state in ("next", "active"):
            try:
                private = unwrap_private(row.algorithm, row.kid, row.private_key, self._wrap_key)
            except (InvalidTag, ValueError):
                # SECRET_KEY changed since the key was made: it can still verify, never sign.
                log.error(
                    "signing_key.unwrap_failed", kid=row.kid, hint="SECRET_KEY differs from the one it was made with"
                )
        return ManagedKey(
            kid=row.kid,
            algorithm=row.algorithm,
            public_jwk=dict(row.public_jwk),
            activates_at=row.activates_at,
            retired_at=row.retired_at,
            removes_at=row.removes_at,
            removed_at=row.removed_at,
            created_at=row.created_at,
            private=private,
            public=import_public(row.public_jwk),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Reload every `refresh_seconds` until `stop` is set; a failed load keeps the last keys."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.refresh_seconds)
            if stop.is_set():
                return
            try:
                await self.load()
            except Exception as exc:  # the database away: keep signing and verifying with what we have
                log.warning("signing_keys.refresh_failed", error=type(exc).__name__)

    # ---- commands (CLI, start-up) -----------------------------------------------------------

    async def ensure(self, actor: Actor | None = None) -> ManagedKey | None:
        """Make a first key, active at once, when no key may sign; the new key, else None.
        With an actor (`just init`), the audit log says so. Either way the ring is reloaded: an
        instance that lost the race to another one's first key signs with that key at once."""
        now = self.clock()
        made: ManagedKey | None = None
        async with self._sessions() as session, session.begin():
            await session.execute(select(func.pg_advisory_xact_lock(_LOCK)))
            live = await session.scalar(
                select(func.count()).select_from(SigningKey).where(_T.state.in_(("next", "active")))
            )
            if not live:
                made = await self._insert(session, now, now)
                if actor is not None:
                    await record(session, actor, _entry("key.create", made))
        await self.load()
        return made

    async def rotate(self, actor: Actor, *, now_too: bool = False) -> ManagedKey:
        """Add a `next` key that signs after KEY_ROTATION_DELAY (at once with `now_too`, or when
        no key signs)."""
        now = self.clock()
        async with self._sessions() as session, session.begin():
            await session.execute(select(func.pg_advisory_xact_lock(_LOCK)))
            await _advance(session, now, self.retire_after)
            waiting = await session.scalar(select(SigningKey).where(_T.state == "next"))
            if waiting is not None:
                raise RotationRefused(
                    f"key {waiting.kid} already waits to sign from {waiting.activates_at:%Y-%m-%d %H:%M:%S} UTC; "
                    f"retire it first (just keys retire {waiting.kid}) or wait"
                )
            signing = await session.scalar(select(func.count()).select_from(SigningKey).where(_T.state == "active"))
            now_too = now_too or not signing  # nothing signs yet: no one can hold tokens of the old key
            made = await self._insert(session, now, now if now_too else now + self.rotation_delay)
            if now_too:
                await _advance(session, now, self.retire_after)
            await record(session, actor, _entry("key.rotate", made, immediate=now_too))
        await self.load()
        return made

    async def retire(self, kid: str, actor: Actor) -> tuple[ManagedKey, ManagedKey | None]:
        """Remove a key now (unpublished, its tokens refused, its private key erased). When it
        was the one signing, the waiting `next` key signs at once, else a new key does.

        Returns:
            (the retired key, the key that signs instead or None).

        Raises:
            RotationRefused: no such key, or already removed.
        """
        now = self.clock()
        async with self._sessions() as session, session.begin():
            await session.execute(select(func.pg_advisory_xact_lock(_LOCK)))
            await _advance(session, now, self.retire_after)
            row = await session.get(SigningKey, kid, with_for_update=True)
            if row is None or row.state == "removed":
                raise RotationRefused(f"no published key {kid!r} (just keys list shows them)")
            retired = self._held(row)
            was_signing = row.state == "active"
            row.state, row.removed_at, row.private_key = "removed", now, None
            row.removes_at = row.removes_at or now
            await session.flush()
            successor: ManagedKey | None = None
            if was_signing:
                waiting = await session.scalar(select(SigningKey).where(_T.state == "next").with_for_update())
                if waiting is not None:
                    waiting.activates_at, waiting.state = now, "active"
                    await session.flush()
                    successor = self._held(waiting)
                else:
                    successor = await self._insert(session, now, now)
            details = {"successor": successor.kid} if successor is not None else {}
            await record(session, actor, _entry("key.retire", retired, **details))
        await self.load()
        return retired, successor

    async def listing(self) -> list[ManagedKey]:
        """Every key, removed ones too, newest first (for `just keys list`)."""
        await self.load()
        async with self._sessions() as session:
            rows = (await session.execute(select(SigningKey).order_by(_T.created_at.desc()))).scalars().all()
            return [
                ManagedKey(
                    kid=r.kid,
                    algorithm=r.algorithm,
                    public_jwk=dict(r.public_jwk),
                    activates_at=r.activates_at,
                    retired_at=r.retired_at,
                    removes_at=r.removes_at,
                    removed_at=r.removed_at,
                    created_at=r.created_at,
                )
                for r in rows
            ]

    async def _insert(self, session: AsyncSession, now: dt.datetime, activates_at: dt.datetime) -> ManagedKey:
        material = await asyncio.to_thread(generate, self.algorithm, self._wrap_key)  # RSA takes a while
        values: dict[str, Any] = {
            "kid": material.kid,
            "algorithm": material.algorithm,
            "state": "active" if activates_at <= now else "next",
            "public_jwk": material.public_jwk,
            "private_key": material.private_key,
            "created_at": now,
            "activates_at": activates_at,
        }
        await session.execute(insert(SigningKey).values(**values))
        log.info("signing_key.created", kid=material.kid, algorithm=material.algorithm, activates_at=str(activates_at))
        return ManagedKey(
            kid=material.kid,
            algorithm=material.algorithm,
            public_jwk=material.public_jwk,
            activates_at=activates_at,
            created_at=now,
        )


def _entry(action: str, key: ManagedKey, **details: Any) -> AuditEntry:
    info = {"algorithm": key.algorithm, "activates_at": key.activates_at.isoformat(), **details}
    return AuditEntry(action, key.kid, info, target_type="signing_key")


async def _advance(session: AsyncSession, now: dt.datetime, retire_after: dt.timedelta) -> None:
    """next -> active once activated; every active key but the newest -> retiring (until the
    newest's activation plus `retire_after`); retiring -> removed once that has passed."""
    await session.execute(update(SigningKey).where(_T.state == "next", _T.activates_at <= now).values(state="active"))
    newest = select(func.max(_T.activates_at)).where(_T.state == "active").scalar_subquery()
    await session.execute(
        update(SigningKey)
        .where(_T.state == "active", _T.activates_at < newest)
        .values(
            state="retiring",
            retired_at=newest,
            removes_at=newest + func.make_interval(0, 0, 0, 0, 0, 0, retire_after.total_seconds()),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(SigningKey)
        .where(_T.state == "retiring", and_(_T.removes_at.is_not(None), _T.removes_at <= now))
        .values(state="removed", removed_at=now, private_key=None)
        .execution_options(synchronize_session=False)
    )
