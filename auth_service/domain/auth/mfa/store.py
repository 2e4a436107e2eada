"""The second factors in PostgreSQL (the truth): TOTP authenticators, recovery codes and the
count of passkeys, every statement the challenge, the enrolment and the admin reset run.

The checks that must not race are conditional statements, not read-then-write:
- a TOTP step is claimed by `UPDATE ... WHERE last_used_step IS NULL OR last_used_step < :step
  RETURNING`: of two requests with the same code (on any two instances) one row comes back;
- a recovery code is spent by `UPDATE ... WHERE used_at IS NULL RETURNING`: once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, NamedTuple

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.sql import mfa_recovery_codes, mfa_totp, param, webauthn_credentials

__all__ = ["FactorState", "FactorStore", "TotpRow", "factor_columns"]

_t, _c, _w = mfa_totp.c, mfa_recovery_codes.c, webauthn_credentials.c


class TotpRow(NamedTuple):
    secret_ciphertext: bytes
    confirmed: bool
    last_used_step: int | None


class FactorState(NamedTuple):
    """A user's factors as /users/me shows them."""

    totp: bool
    passkeys: int
    recovery_codes_left: int


def factor_columns(users: Table) -> tuple[Any, ...]:
    """A user's factors as columns of a statement over `users` (labels mfa_totp, mfa_passkeys,
    mfa_codes_left): correlated subqueries, each an index lookup."""
    return (
        select(_t.user_id)
        .where(_t.user_id == users.c.id, _t.confirmed_at.is_not(None))
        .correlate(users)
        .exists()
        .label("mfa_totp"),
        select(func.count()).where(_w.user_id == users.c.id).correlate(users).scalar_subquery().label("mfa_passkeys"),
        select(func.count())
        .where(_c.user_id == users.c.id, _c.used_at.is_(None))
        .correlate(users)
        .scalar_subquery()
        .label("mfa_codes_left"),
    )


# The TOTP row's read (enrolment, disabling) and the step's claim (also the second step's), built once:
# no statement or cache key made per request.
_TOTP = select(_t.secret_ciphertext, _t.confirmed_at.is_not(None), _t.last_used_step).where(
    _t.user_id == param("user_id", _t.user_id)
)


def _claim(*, confirming: bool) -> Any:
    """Set :b_step as the last accepted step, only over an earlier one, on a confirmed authenticator
    (a pending one when `confirming`, which confirms it at :b_now)."""
    step = param("b_step", _t.last_used_step)  # (an UPDATE's own parameters may not be named as columns)
    values: dict[str, Any] = {"last_used_step": step}
    state = _t.confirmed_at.is_(None) if confirming else _t.confirmed_at.is_not(None)
    if confirming:
        values["confirmed_at"] = param("b_now", _t.confirmed_at)
    return (
        update(mfa_totp)
        .where(
            _t.user_id == param("b_user_id", _t.user_id),
            state,
            or_(_t.last_used_step.is_(None), _t.last_used_step < step),
        )
        .values(**values)
        .returning(_t.user_id)
    )


_CLAIM = {False: _claim(confirming=False), True: _claim(confirming=True)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FactorStore:
    """One user's factors, on the caller's session (the caller commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def state(self, user_id: uuid.UUID) -> FactorState:
        """TOTP confirmed?, passkeys, unused recovery codes: one statement."""
        stmt = select(
            select(_t.user_id).where(_t.user_id == user_id, _t.confirmed_at.is_not(None)).exists(),
            select(func.count()).where(_w.user_id == user_id).scalar_subquery(),
            select(func.count()).where(_c.user_id == user_id, _c.used_at.is_(None)).scalar_subquery(),
        )
        row = (await self._session.execute(stmt)).one()
        return FactorState(bool(row[0]), int(row[1]), int(row[2]))

    async def totp(self, user_id: uuid.UUID) -> TotpRow | None:
        row = (await self._session.execute(_TOTP, {"user_id": user_id})).first()
        return None if row is None else TotpRow(bytes(row[0]), bool(row[1]), row[2])

    async def put_pending_totp(self, user_id: uuid.UUID, ciphertext: bytes) -> bool:
        """Start (or restart) an enrolment; False when a confirmed authenticator exists (it
        stays: disabling it is its own, checked, request)."""
        stmt = (
            pg_insert(mfa_totp)
            .values(user_id=user_id, secret_ciphertext=ciphertext, confirmed_at=None, last_used_step=None)
            .on_conflict_do_update(
                index_elements=[_t.user_id],
                set_={"secret_ciphertext": ciphertext, "last_used_step": None, "created_at": func.now()},
                where=_t.confirmed_at.is_(None),
            )
            .returning(_t.user_id)
        )
        return (await self._session.execute(stmt)).first() is not None

    async def claim_step(self, user_id: uuid.UUID, step: int, *, confirming: bool) -> bool:
        """Record `step` as the last accepted one, only if it is later than the stored one (and
        the authenticator is confirmed, or pending when `confirming`, which confirms it)."""
        params: dict[str, Any] = {"b_user_id": user_id, "b_step": step}
        if confirming:
            params["b_now"] = _now()
        return (await self._session.execute(_CLAIM[confirming], params)).first() is not None

    async def delete_totp(self, user_id: uuid.UUID) -> bool:
        stmt = delete(mfa_totp).where(_t.user_id == user_id).returning(_t.user_id)
        return (await self._session.execute(stmt)).first() is not None

    async def replace_codes(self, user_id: uuid.UUID, hashes: list[str]) -> None:
        """The new set, and the old one gone, in the caller's transaction."""
        await self._session.execute(delete(mfa_recovery_codes).where(_c.user_id == user_id))
        await self._session.execute(
            insert(mfa_recovery_codes).values(
                [{"id": uuid.uuid4(), "user_id": user_id, "code_hash": h} for h in hashes]
            )
        )

    async def delete_codes(self, user_id: uuid.UUID) -> int:
        result = await self._session.execute(delete(mfa_recovery_codes).where(_c.user_id == user_id).returning(_c.id))
        return len(result.all())

    async def use_code(self, user_id: uuid.UUID, code_hash: str) -> bool:
        """Spend the code with this hash; True for the one request that did."""
        stmt = (
            update(mfa_recovery_codes)
            .where(_c.user_id == user_id, _c.code_hash == code_hash, _c.used_at.is_(None))
            .values(used_at=_now())
            .returning(_c.id)
        )
        return (await self._session.execute(stmt)).first() is not None

    async def codes_left(self, user_id: uuid.UUID) -> int:
        stmt = select(func.count()).where(_c.user_id == user_id, _c.used_at.is_(None))
        return int((await self._session.execute(stmt)).scalar_one())

    async def delete_passkeys(self, user_id: uuid.UUID) -> int:
        result = await self._session.execute(delete(webauthn_credentials).where(_w.user_id == user_id).returning(_w.id))
        return len(result.all())
