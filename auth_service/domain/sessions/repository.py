"""The session store (refresh-token families), the access-token blacklist, and the user-row
statements of the revocation protocol (domain/sessions/revocation.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple
from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.models import RefreshToken, TokenBlacklist, User
from db.sql import param, refresh_tokens, users

__all__ = [
    "RefreshOwner",
    "RefreshTokenRepository",
    "Rotation",
    "SpentToken",
    "TokenBlacklistRepository",
    "UserStateRepository",
]


class RefreshOwner(NamedTuple):
    """The family and owner of a presented refresh token, read under the owner's share lock, and
    the OAuth client it was granted to (None: a session of our own API)."""

    family_id: UUID
    user_id: UUID
    client_id: str | None = None


class Rotation(NamedTuple):
    """A refresh token that was just spent, and its owner (None fields when the user is gone).

    The successor was written only when the owner exists and is active.
    """

    family_id: UUID
    user_id: UUID
    username: str | None
    roles: list[str] | None
    is_active: bool | None
    amr: list[str] | None = None
    client_id: str | None = None
    scope: str | None = None


class SpentToken(NamedTuple):
    """A refresh token that is not live, its successor (if any) and its owner, read in one query."""

    family_id: UUID
    user_id: UUID
    spent_at: dt.datetime | None
    revoked_at: dt.datetime | None
    replaced_by_id: UUID | None
    successor_hash: str | None
    successor_revoked_at: dt.datetime | None
    successor_expires_at: dt.datetime | None
    username: str | None
    roles: list[str] | None
    is_active: bool | None
    amr: list[str] | None = None
    client_id: str | None = None
    scope: str | None = None


def _rotate() -> Select[Any]:
    """Spend a live token and write its successor, in one statement.

    The UPDATE's row lock makes a concurrent spend of the same token wait, then re-check
    `spent_at` and match nothing, so its INSERT (fed by the UPDATE's RETURNING) writes nothing:
    only one caller ever mints a successor. The successor is written only for an active owner.
    """
    t, u = refresh_tokens.c, users.c
    now = param("now", t.spent_at)
    successor_id = param("successor_id", t.id)
    spent = (
        update(refresh_tokens)
        .where(
            t.token_hash == bindparam("presented_hash"),
            t.spent_at.is_(None),
            t.revoked_at.is_(None),
            t.expires_at > now,
        )
        .values(spent_at=now, replaced_by_id=successor_id)
        .returning(
            t.family_id,
            t.user_id,
            t.ip_address,
            t.user_agent,
            t.session_started_at,
            t.issued_at,
            t.amr,
            t.client_id,
            t.scope,
        )
        .cte("spent")
    )
    successor = insert(refresh_tokens).from_select(
        [
            "id",
            "token_hash",
            "family_id",
            "user_id",
            "issued_at",
            "expires_at",
            "ip_address",
            "user_agent",
            "session_started_at",
            "amr",
            "client_id",
            "scope",
        ],
        select(
            successor_id,
            bindparam("successor_hash", type_=t.token_hash.type),
            spent.c.family_id,
            spent.c.user_id,
            now,
            param("successor_expires_at", t.expires_at),
            spent.c.ip_address,
            spent.c.user_agent,
            # Sessions from before the column: their first known token's issue time.
            func.coalesce(spent.c.session_started_at, spent.c.issued_at),
            spent.c.amr,
            spent.c.client_id,
            spent.c.scope,
        )
        .join_from(spent, users, u.id == spent.c.user_id)
        .where(u.is_active.is_(True)),
    )
    return (
        select(
            spent.c.family_id,
            spent.c.user_id,
            u.username,
            u.roles,
            u.is_active,
            spent.c.amr,
            spent.c.client_id,
            spent.c.scope,
        )
        .join_from(spent, users, u.id == spent.c.user_id, isouter=True)
        .add_cte(successor.cte("successor"))
    )


_ROTATE = _rotate()


def _not_live() -> Select[Any]:
    t = refresh_tokens.c
    follower = refresh_tokens.alias("successor")
    return (
        select(
            t.family_id,
            t.user_id,
            t.spent_at,
            t.revoked_at,
            t.replaced_by_id,
            follower.c.token_hash,
            follower.c.revoked_at,
            follower.c.expires_at,
            users.c.username,
            users.c.roles,
            users.c.is_active,
            t.amr,
            t.client_id,
            t.scope,
        )
        .select_from(refresh_tokens)
        .outerjoin(follower, follower.c.id == t.replaced_by_id)
        .outerjoin(users, users.c.id == t.user_id)
        .where(t.token_hash == bindparam("presented_hash"))
    )


_NOT_LIVE = _not_live()

_LOCK_OWNER = (
    select(refresh_tokens.c.family_id, refresh_tokens.c.user_id, refresh_tokens.c.client_id)
    .join_from(refresh_tokens, users, users.c.id == refresh_tokens.c.user_id)
    .where(refresh_tokens.c.token_hash == bindparam("presented_hash"))
    .with_for_update(read=True, of=users)
)


class UserStateRepository(SQLAlchemyAsyncRepository[User]):
    """A user's row as revocation sees it: active flag, tokens_valid_after, and its lock."""

    model_type = User

    async def revocation_state(
        self, user_id: UUID, *, share_lock: bool = False
    ) -> tuple[bool, dt.datetime | None] | None:
        """(is_active, tokens_valid_after) of a user, or None when the user is gone; with
        `share_lock`, the row stays share-locked until the transaction ends (the refill)."""
        stmt = select(User.is_active, User.tokens_valid_after).where(User.id == user_id)
        if share_lock:
            stmt = stmt.with_for_update(read=True)
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row[0], row[1])

    async def lock_for_update(self, user_id: UUID) -> tuple[bool, dt.datetime | None] | None:
        """Lock the user's row for this transaction (every revocation's first statement)."""
        stmt = select(User.is_active, User.tokens_valid_after).where(User.id == user_id).with_for_update()
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row[0], row[1])

    async def set_tokens_valid_after(self, user_id: UUID, now: dt.datetime) -> None:
        await self.session.execute(update(User).where(User.id == user_id).values(tokens_valid_after=now))


class TokenBlacklistRepository(SQLAlchemyAsyncRepository[TokenBlacklist]):
    model_type = TokenBlacklist

    async def blacklist(self, jti: str, user_id: UUID, expires_at: dt.datetime) -> None:
        """Insert a jti; a second logout with the same token changes nothing."""
        stmt = (
            pg_insert(TokenBlacklist)
            .values(token_jti=jti, user_id=user_id, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[TokenBlacklist.token_jti])
        )
        await self.session.execute(stmt)

    async def is_blacklisted(self, jti: str) -> bool:
        stmt = select(TokenBlacklist.id).where(TokenBlacklist.token_jti == jti).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def live_for_user(self, user_id: UUID, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        stmt = select(TokenBlacklist.token_jti, TokenBlacklist.expires_at).where(
            TokenBlacklist.user_id == user_id, TokenBlacklist.expires_at > now
        )
        return [(row[0], row[1]) for row in await self.session.execute(stmt)]

    async def delete_expired(self, now: dt.datetime, batch_size: int) -> int:
        doomed = select(TokenBlacklist.id).where(TokenBlacklist.expires_at <= now).limit(batch_size)
        result = await self.session.execute(
            delete(TokenBlacklist).where(TokenBlacklist.id.in_(doomed.scalar_subquery()))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class RefreshTokenRepository(SQLAlchemyAsyncRepository[RefreshToken]):
    model_type = RefreshToken

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        return await self.get_one_or_none(RefreshToken.token_hash == token_hash)

    async def lock_owner(self, token_hash: str) -> RefreshOwner | None:
        """The family and owner of a refresh token (live or not), share-locking the owner's row
        to the end of the transaction: a rotation and a revocation of the same user never
        interleave (the revocation locks the row for update first). None when unknown."""
        row = (await self.session.execute(_LOCK_OWNER, {"presented_hash": token_hash})).first()
        return None if row is None else RefreshOwner(*row)

    async def rotate(
        self, token_hash: str, *, successor_id: UUID, successor_hash: str, now: dt.datetime, expires_at: dt.datetime
    ) -> Rotation | None:
        """Atomically spend a live token and write its successor (for an active owner) in one
        statement; None when the token was not live.

        The row lock of the UPDATE makes a concurrent second spend wait, then find `spent_at`
        set and match nothing: only one caller ever wins.
        """
        params = {
            "presented_hash": token_hash,
            "successor_id": successor_id,
            "successor_hash": successor_hash,
            "now": now,
            "successor_expires_at": expires_at,
        }
        row = (await self.session.execute(_ROTATE, params)).first()
        return None if row is None else Rotation(*row)

    async def not_live(self, token_hash: str) -> SpentToken | None:
        """A token that could not be spent, with its successor and owner; None when unknown."""
        row = (await self.session.execute(_NOT_LIVE, {"presented_hash": token_hash})).first()
        return None if row is None else SpentToken(*row)

    async def revoke_family(self, family_id: UUID, now: dt.datetime) -> int:
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int((await self.session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]

    async def revoke_user(self, user_id: UUID, now: dt.datetime) -> int:
        """Revoke every token of the user; returns how many sessions (families) still had one."""
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(RefreshToken.family_id)
        )
        return len(set((await self.session.execute(stmt)).scalars()))

    async def family_revoked(self, family_id: UUID) -> bool:
        stmt = select(RefreshToken.id).where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None))
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def families_revoked_since(self, user_id: UUID, since: dt.datetime) -> list[UUID]:
        stmt = (
            select(RefreshToken.family_id)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at > since)
            .distinct()
        )
        return list((await self.session.execute(stmt)).scalars())

    async def delete_expired(self, now: dt.datetime, revoked_before: dt.datetime, batch_size: int) -> int:
        doomed = (
            select(RefreshToken.id)
            .where((RefreshToken.expires_at <= now) | (RefreshToken.revoked_at <= revoked_before))
            .limit(batch_size)
        )
        result = await self.session.execute(delete(RefreshToken).where(RefreshToken.id.in_(doomed.scalar_subquery())))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
