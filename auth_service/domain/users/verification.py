"""E-mail verification: a single-use link that proves the account's current address.

A link records the address it was sent to (its identity key), its mail goes to that address,
and using it verifies the account only while that is still the account's address, so a link
sent before an e-mail change can never verify the new one (the change also ends it). Spending
is one atomic UPDATE, as for reset links.
"""

from __future__ import annotations

import datetime as dt
import uuid

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.users.recovery import link_mail
from auth_service.lib.crypto.account_links import AccountLinks, token_hash
from auth_service.lib.errors import LinkInvalid
from auth_service.settings import LinkSettings
from db.sql import user_tokens, users
from observability.metrics import record_verification

__all__ = ["VERIFY", "EmailVerification"]

log = structlog.get_logger()
VERIFY = "verify"


class EmailVerification:
    """Sends and checks verification links; the caller commits `link`'s writes."""

    def __init__(self, session: AsyncSession, links: AccountLinks, lifetimes: LinkSettings) -> None:
        self._session = session
        self._links = links
        self._ttl = dt.timedelta(hours=lifetimes.email_verify_ttl_hours)

    async def link(self, user_id: uuid.UUID, email: str, kind: str = "verify_email") -> None:
        """Write a verification token for `email` and its mail's outbox row (no commit)."""
        hours = int(self._ttl.total_seconds() // 3600)
        await link_mail(self._session, self._links, VERIFY, user_id, self._ttl, email, kind, {"hours": hours})

    async def resend(self, user_id: uuid.UUID) -> None:
        """A new link for an active, unverified account (None: nothing to verify)."""
        u = users.c
        row = (
            await self._session.execute(
                select(u.email).where(u.id == user_id, u.is_active.is_(True), u.email_verified.is_(False))
            )
        ).first()
        if row is None:
            await self._session.rollback()
            return
        await self.link(user_id, row.email)
        await self._session.commit()

    async def confirm(self, token: str) -> None:
        """Spend the link and mark the address verified.

        Raises:
            LinkInvalid: not a live verification link for the account's current address.
        """
        token_id = self._links.parse(token, VERIFY)
        if token_id is None:
            raise LinkInvalid
        t, u = user_tokens.c, users.c
        now = dt.datetime.now(dt.UTC)
        spent = (
            await self._session.execute(
                update(user_tokens)
                .where(
                    t.id == token_id,
                    t.token_hash == token_hash(token),
                    t.purpose == VERIFY,
                    t.used_at.is_(None),
                    t.expires_at > now,
                    t.user_id == u.id,
                    u.is_active.is_(True),
                    u.email_key == t.email,
                )
                .values(used_at=now)
                .returning(t.user_id)
            )
        ).first()
        if spent is None:
            await self._session.rollback()
            raise LinkInvalid
        await self._session.execute(update(users).where(u.id == spent.user_id).values(email_verified=True))
        await self._session.commit()
        record_verification()
        log.info("email.verified", user_id=str(spent.user_id))
