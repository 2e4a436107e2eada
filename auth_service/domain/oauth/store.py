"""The provider's statements: the sign-in session a browser cookie names, the sessions a code
exchange opens, consents, and what userinfo, revocation and introspection read.

A session opened through OAuth is a refresh family like any other (`refresh_tokens` with its
`client_id` and `scope`): /users/me/sessions lists it, and logout everywhere, a password change,
an admin deactivation and "this wasn't me" end it by the same revocation protocol. It is opened
by one INSERT … SELECT that share-locks the user's row (after the caller share-locked the
client's) and writes only while the user is active with the `tokens_valid_after` the
authorization saw: a revocation or a client's deletion that committed since, or commits
meanwhile (it takes the rows for update first), leaves no session behind.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import OAuthConsent
from db.sql import refresh_tokens, users

__all__ = ["BrowserSession", "OAuthStore", "SessionRef", "UserClaims"]

_T, _U = refresh_tokens.c, users.c


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """A live sign-in session of the browser, and its user as the authorization needs it."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    username: str
    amr: list[str]
    auth_time: dt.datetime
    tokens_valid_after: dt.datetime | None


@dataclass(frozen=True, slots=True)
class UserClaims:
    user_id: uuid.UUID
    username: str
    email: str | None
    email_verified: bool
    roles: list[str]
    is_active: bool


@dataclass(frozen=True, slots=True)
class SessionRef:
    """The session a refresh token belongs to, live or not."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    client_id: str | None
    scope: str | None
    live: bool
    expires_at: dt.datetime
    issued_at: dt.datetime
    username: str | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OAuthStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def commit(self) -> None:
        await self._session.commit()

    async def rollback(self) -> None:
        await self._session.rollback()

    async def browser_session(self, family_id: uuid.UUID, user_id: uuid.UUID) -> BrowserSession | None:
        """The sign-in session the cookie names, if it is live and its user active."""
        stmt = (
            select(_T.family_id, _U.id, _U.username, _T.amr, _T.session_started_at, _T.issued_at, _U.tokens_valid_after)
            .join_from(refresh_tokens, users, _U.id == _T.user_id)
            .where(
                _T.family_id == family_id,
                _T.user_id == user_id,
                _T.client_id.is_(None),
                _T.revoked_at.is_(None),
                _T.spent_at.is_(None),
                _T.expires_at > func.now(),
                _U.is_active.is_(True),
            )
            .limit(1)
        )
        row = (await self._session.execute(stmt)).first()
        if row is None:
            return None
        family, uid, username, amr, started, issued, valid_after = row
        return BrowserSession(family, uid, username, list(amr or ["pwd"]), started or issued, valid_after)

    async def open_session(
        self,
        *,
        family_id: uuid.UUID,
        token_hash: str,
        user_id: uuid.UUID,
        tokens_valid_after: dt.datetime | None,
        client_id: str,
        scope: str,
        amr: list[str],
        ip: str,
        user_agent: str | None,
        started_at: dt.datetime,
        expires_at: dt.datetime,
    ) -> UserClaims | None:
        """Write the session's first refresh token while the user is as the authorization saw
        it; the user's claims, or None (nothing written). The caller holds the client's share
        lock already (ClientStore.get(share_lock=True): client first, then user, the order a
        client's deletion takes too)."""
        now = _now()
        owner = (
            select(_U.id, _U.username, _U.email, _U.email_verified, _U.roles, _U.is_active)
            .where(
                _U.id == user_id,
                _U.is_active.is_(True),
                _U.tokens_valid_after.is_(None)
                if tokens_valid_after is None
                else _U.tokens_valid_after == tokens_valid_after,
            )
            .with_for_update(read=True, of=users)
            .cte("owner")
        )
        values = select(
            literal(uuid.uuid4(), _T.id.type),
            literal(token_hash, _T.token_hash.type),
            literal(family_id, _T.family_id.type),
            owner.c.id,
            literal(now, _T.issued_at.type),
            literal(expires_at, _T.expires_at.type),
            literal(ip[:45], _T.ip_address.type),
            literal(user_agent, _T.user_agent.type),
            literal(started_at, _T.session_started_at.type),
            literal(amr, _T.amr.type),
            literal(client_id, _T.client_id.type),
            literal(scope, _T.scope.type),
        ).select_from(owner)
        columns = [
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
        ]
        written = pg_insert(refresh_tokens).from_select(columns, values).returning(_T.user_id).cte("written")
        stmt = select(owner.c.id, owner.c.username, owner.c.email, owner.c.email_verified, owner.c.roles).where(
            exists(select(written.c.user_id))
        )
        row = (await self._session.execute(stmt)).first()
        if row is None:
            return None
        return UserClaims(row[0], row[1], row[2], bool(row[3]), list(row[4] or []), True)

    async def user(self, user_id: uuid.UUID) -> UserClaims | None:
        stmt = select(_U.id, _U.username, _U.email, _U.email_verified, _U.roles, _U.is_active).where(_U.id == user_id)
        row = (await self._session.execute(stmt)).first()
        return None if row is None else UserClaims(row[0], row[1], row[2], bool(row[3]), list(row[4] or []), row[5])

    async def consented(self, user_id: uuid.UUID, client_id: str) -> set[str]:
        stmt = select(OAuthConsent.scopes).where(OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_id)
        scopes = (await self._session.execute(stmt)).scalar_one_or_none()
        return set(scopes or [])

    async def consent(self, user_id: uuid.UUID, client_id: str, scopes: list[str]) -> None:
        """Remember the scopes granted (added to those granted before)."""
        stmt = pg_insert(OAuthConsent).values(user_id=user_id, client_id=client_id, scopes=scopes)
        merged = func.array(
            select(func.unnest(func.array_cat(OAuthConsent.scopes, stmt.excluded.scopes))).distinct().scalar_subquery()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[OAuthConsent.user_id, OAuthConsent.client_id],
            set_={"scopes": merged, "granted_at": func.now()},
        )
        await self._session.execute(stmt)

    async def session_of(self, token_hash: str) -> SessionRef | None:
        """The session a refresh token belongs to (any state), and its owner."""
        stmt = (
            select(
                _T.family_id,
                _T.user_id,
                _T.client_id,
                _T.scope,
                and_(_T.revoked_at.is_(None), _T.spent_at.is_(None), _T.expires_at > func.now(), _U.is_active),
                _T.expires_at,
                _T.issued_at,
                _U.username,
            )
            .join_from(refresh_tokens, users, _U.id == _T.user_id, isouter=True)
            .where(_T.token_hash == token_hash)
        )
        row = (await self._session.execute(stmt)).first()
        if row is None:
            return None
        return SessionRef(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7])

    async def family_owner(self, family_id: uuid.UUID) -> uuid.UUID | None:
        stmt = select(_T.user_id).where(_T.family_id == family_id).limit(1)
        return (await self._session.execute(stmt)).scalar_one_or_none()

    async def family_live(self, family_id: uuid.UUID) -> bool:
        """Whether a session still has a live token (introspection of its access tokens)."""
        stmt = select(
            exists().where(
                _T.family_id == family_id,
                _T.revoked_at.is_(None),
                or_(_T.spent_at.is_(None), _T.expires_at > func.now()),
            )
        )
        return bool((await self._session.execute(stmt)).scalar())
