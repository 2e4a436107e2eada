"""The statements of the client registry: the `oauth_clients` rows, and the revocation of the
sessions (refresh families) opened through a client."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import Row, Select, bindparam, delete, insert, literal, select, tuple_, update

from db.models import OAuthClient, RefreshToken, User

__all__ = ["COLUMNS", "ClientRepository"]

_c = OAuthClient
# Every column but the secret's hash, which only `authenticate` reads.
COLUMNS = (
    _c.client_id,
    _c.name,
    _c.client_type,
    _c.redirect_uris,
    _c.post_logout_redirect_uris,
    _c.grant_types,
    _c.scopes,
    _c.first_party,
    _c.is_active,
    _c.created_at,
    _c.updated_at,
)


@functools.cache
def _one_statement(active_only: bool, lock: str | None, with_secret: bool) -> Select[Any]:
    """The read of one client by id, built once per variant on the table's own columns (labelled
    as the attributes are): every token, introspection and authorization request makes one, and
    an ORM select built per call cost about as much as the rest of a refresh's SQL together."""
    attributes = (*COLUMNS, _c.secret_hash) if with_secret else COLUMNS
    table = OAuthClient.__table__
    stmt = select(*(table.c[a.property.columns[0].key].label(a.key) for a in attributes)).where(
        table.c.client_id == bindparam("client_id")
    )
    if active_only:
        stmt = stmt.where(table.c.is_active.is_(True))
    if lock is not None:
        stmt = stmt.with_for_update(read=lock == "share")
    return stmt


class ClientRepository(SQLAlchemyAsyncRepository[OAuthClient]):
    """One statement per method; the caller owns the transaction."""

    model_type = OAuthClient

    async def insert(self, values: dict[str, Any]) -> Row[Any]:
        return (await self.session.execute(insert(OAuthClient).values(**values).returning(*COLUMNS))).one()

    async def one(
        self, client_id: str, *, active_only: bool = False, lock: str | None = None, with_secret: bool = False
    ) -> Row[Any] | None:
        """A client's row; `lock` "update" or "share" holds it to the end of the transaction."""
        stmt = _one_statement(active_only, lock, with_secret)
        return (await self.session.execute(stmt, {"client_id": client_id})).first()

    async def page(self, limit: int, after: tuple[dt.datetime, str] | None) -> list[Row[Any]]:
        """Newest first, `limit + 1` rows (the extra one says a next page exists)."""
        stmt = select(*COLUMNS)
        if after is not None:
            at, client_id = after
            position = tuple_(literal(at, _c.created_at.type), literal(client_id, _c.client_id.type))
            stmt = stmt.where(tuple_(_c.created_at, _c.client_id) < position)
        stmt = stmt.order_by(_c.created_at.desc(), _c.client_id.desc()).limit(limit + 1)
        return list((await self.session.execute(stmt)).all())

    async def change(self, client_id: str, values: dict[str, Any]) -> Row[Any]:
        stmt = update(OAuthClient).where(_c.client_id == client_id).values(**values).returning(*COLUMNS)
        return (await self.session.execute(stmt)).one()

    async def remove(self, client_id: str) -> None:
        """Delete the row; its consents go with it (ON DELETE CASCADE)."""
        await self.session.execute(delete(OAuthClient).where(_c.client_id == client_id))

    # ---- the sessions opened through a client -----------------------------------------------

    @staticmethod
    def _families(client_id: str) -> Any:
        # Every family that ever had a token of this client: a successor that did not copy the
        # column (a rotation by /auth/refresh) still belongs to the family and dies with it.
        return select(RefreshToken.family_id).where(RefreshToken.client_id == client_id)

    async def lock_owners(self, client_id: str) -> list[uuid.UUID]:
        """Lock (FOR UPDATE, in id order, so two such revocations never deadlock) the rows of
        the users who hold a live token of a session opened through the client: the revocation
        protocol's step 1 (domain/sessions/revocation.py) for each of them."""
        owners = select(RefreshToken.user_id).where(
            RefreshToken.family_id.in_(self._families(client_id)), RefreshToken.revoked_at.is_(None)
        )
        stmt = select(User.id).where(User.id.in_(owners)).order_by(User.id).with_for_update(of=User)
        return [uuid.UUID(str(user_id)) for user_id in (await self.session.execute(stmt)).scalars()]

    async def lock_users(self, user_ids: Iterable[uuid.UUID]) -> None:
        ids = sorted(user_ids)
        if ids:
            stmt = select(User.id).where(User.id.in_(ids)).order_by(User.id).with_for_update()
            await self.session.execute(stmt)

    async def revoke_sessions(self, client_id: str, now: dt.datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """Revoke every token of every family opened through the client; returns the (family,
        user) pairs that still had a token alive."""
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.family_id.in_(self._families(client_id)), RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(RefreshToken.family_id, RefreshToken.user_id)
        )
        rows = (await self.session.execute(stmt)).all()
        return sorted({(uuid.UUID(str(family)), uuid.UUID(str(user))) for family, user in rows})
