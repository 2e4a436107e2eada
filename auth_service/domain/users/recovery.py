"""Password reset by e-mail: a single-use, expiring link, stored only as a hash.

Requesting answers the same whatever the address (the caller runs `request` after the response
is sent, so even its timing says nothing). Confirming spends the link with one atomic UPDATE
under the user's row lock, so of any number of concurrent confirmations exactly one wins; the
new password replaces the old, every session and access token of the user dies (the revocation
protocol: lock, PostgreSQL, Redis, commit), and a "password changed" mail goes through the outbox.

Every account link (reset, invitation, verification) is made for one address: its row keeps
that address's identity key, its mail goes to that address (not to whatever the account's
address is when the worker sends it), and it is valid only while that is still the account's
address. A change of address ends every live link of the account, and a new password (reset,
change, an operator's) ends its other reset links: `end_links` is the one place that does it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from typing import Any

import structlog
from redis.exceptions import RedisError
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.lib.audit import Actor, AuditEntry, record
from auth_service.lib.crypto.account_links import AccountLinks, token_hash
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.errors import LinkInvalid, ServiceUnavailable
from auth_service.lib.jobs import add_jobs
from auth_service.lib.queue import JobName, QueuedJob
from db.models import identity_key
from db.sql import notifications, user_tokens, users
from observability.metrics import record_password_reset

__all__ = ["RESET", "PasswordReset", "end_links", "link_mail", "new_link", "write_mail"]

log = structlog.get_logger()
RESET = "reset"


async def write_mail(
    session: AsyncSession, user_id: uuid.UUID, kind: str, details: dict[str, Any], token_id: uuid.UUID | None = None
) -> None:
    """Write an account mail's outbox row in the session's transaction; its job is enqueued when
    that commits (lib/jobs.py)."""
    note_id = uuid.uuid4()
    payload = {"user_id": str(user_id), "kind": kind, "details": details, "token_id": token_id and str(token_id)}
    await session.execute(
        insert(notifications).values(
            id=note_id, kind=kind, job=JobName.SEND_ACCOUNT_EMAIL.value, user_id=user_id, payload=payload, attempts=0
        )
    )
    job = QueuedJob(JobName.SEND_ACCOUNT_EMAIL, f"notification:{note_id}", {**payload, "notification_id": str(note_id)})
    add_jobs(session, job)


async def new_link(
    session: AsyncSession,
    links: AccountLinks,
    purpose: str,
    user_id: uuid.UUID,
    ttl: dt.timedelta,
    email: str,
) -> uuid.UUID:
    """Write a single-use link's row (only its token's hash, and the identity key of `email`, the
    address it is mailed to and valid for) and return its id (no commit)."""
    token_id = uuid.uuid4()
    await session.execute(
        insert(user_tokens).values(
            id=token_id,
            purpose=purpose,
            token_hash=token_hash(links.token(token_id, purpose)),
            user_id=user_id,
            expires_at=dt.datetime.now(dt.UTC) + ttl,
            email=identity_key(email),
        )
    )
    return token_id


async def link_mail(
    session: AsyncSession,
    links: AccountLinks,
    purpose: str,
    user_id: uuid.UUID,
    ttl: dt.timedelta,
    email: str,
    kind: str,
    details: dict[str, Any],
) -> None:
    """A new link for `email` and the outbox row of its mail, addressed to `email` (no commit):
    the worker sends it there even if the account has moved on meanwhile."""
    token_id = await new_link(session, links, purpose, user_id, ttl, email)
    await write_mail(session, user_id, kind, {**details, "to": email}, token_id)


async def end_links(session: AsyncSession, user_id: uuid.UUID, purposes: Collection[str] | None = None) -> None:
    """Spend every live link of the user (of these purposes; None: all of them), so none outlives
    the change that made it stale: a new address (every link was mailed to the old one) or a new
    password (a reset link would undo it). The caller holds the user's row lock."""
    t = user_tokens.c
    live = [t.user_id == user_id, t.used_at.is_(None)]
    if purposes is not None:
        live.append(t.purpose.in_(list(purposes)))
    await session.execute(update(user_tokens).where(*live).values(used_at=dt.datetime.now(dt.UTC)))


class PasswordReset:
    """Requests and confirmations of password resets; commits its own session."""

    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        revocation: RevocationStore,
        policy: PasswordPolicy,
        links: AccountLinks,
        ttl_minutes: int,
        actor: Actor | None = None,
    ) -> None:
        self._actor = actor or Actor()
        self._session = session
        self._hasher = hasher
        self._revocation = revocation
        self._policy = policy
        self._links = links
        self._ttl = dt.timedelta(minutes=ttl_minutes)

    async def request(self, email: str) -> None:
        """A reset link for the active account with this address, if there is one."""
        u = users.c
        found = await self._session.execute(
            select(u.id, u.email).where(u.email_key == identity_key(email), u.is_active.is_(True))
        )
        row = found.first()
        if row is None:
            await self._session.rollback()
            log.info("password_reset.requested", known=False)
            return
        user_id = row.id
        minutes = int(self._ttl.total_seconds() // 60)
        await link_mail(
            self._session, self._links, RESET, user_id, self._ttl, row.email, "password_reset", {"minutes": minutes}
        )
        await self._session.commit()
        record_password_reset("requested")
        log.info("password_reset.requested", known=True, user_id=str(user_id))

    async def confirm(self, token: str, new_password: str) -> None:
        """Spend the link and set the password.

        Raises:
            LinkInvalid: not a live reset link (malformed, forged, used, expired, user disabled, or
                the account's address is no longer the one the link was sent to).
            PasswordPolicyError: the new password breaks the policy (the link stays usable).
            ServiceUnavailable: Redis could not be told; nothing changed and the link stays usable.
        """
        token_id = self._links.parse(token, RESET)
        if token_id is None:
            raise LinkInvalid
        t, u = user_tokens.c, users.c
        now = dt.datetime.now(dt.UTC)
        # Live, and for the account's current address: a reset verifies the address it was sent to.
        live = (
            t.id == token_id,
            t.token_hash == token_hash(token),
            t.purpose == RESET,
            t.used_at.is_(None),
            t.user_id == u.id,
            u.email_key == t.email,
        )
        row = (
            await self._session.execute(
                select(u.id, u.username, u.email)
                .join_from(user_tokens, users, u.id == t.user_id)
                .where(*live, t.expires_at > now, u.is_active.is_(True))
            )
        ).first()
        await self._session.rollback()  # no transaction open while hashing
        if row is None:
            raise LinkInvalid
        self._policy.check(new_password, username=row.username, email=row.email, field="new_password")
        new_hash = await self._hasher.hash(new_password)
        state = await self._revocation.lock(self._session, row.id)
        now = dt.datetime.now(dt.UTC)
        spent = await self._session.execute(
            update(user_tokens).where(*live, t.expires_at > now).values(used_at=now).returning(t.id)
        )
        if state is None or not state.is_active or spent.first() is None:
            await self._session.rollback()  # a concurrent confirmation won, or the user changed
            raise LinkInvalid
        await self._session.execute(
            update(users).where(u.id == row.id).values(password_hash=new_hash, email_verified=True)
        )
        await end_links(self._session, row.id, [RESET])  # the user's other reset links would undo this
        await self._revocation.revoke_everything(self._session, row.id)
        await write_mail(self._session, row.id, "password_changed", {"via": "reset", "timestamp": _stamp(now)})
        await record(self._session, self._actor.as_user(row.id), AuditEntry("password.reset", row.id))
        try:
            await self._revocation.commit(self._session, row.id)
        except RedisError:
            raise ServiceUnavailable from None  # rolled back: the link stays usable, a retry is safe
        record_password_reset("completed")
        log.info("password_reset.completed", user_id=str(row.id))


def _stamp(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%d %H:%M:%S")
