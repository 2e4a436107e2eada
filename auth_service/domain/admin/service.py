"""User administration (the admin API and the CLI): every change is the change, its audit event
and, where tokens must die, the revocation protocol, in one transaction.

- A role change or a deactivation ends every token of the user at once: roles are in the access
  tokens, so the old ones must not outlive the change (revocation.py: lock the row, write
  PostgreSQL, drop the user's Redis state, commit; every instance reads the same Redis).
- The last active admin cannot be deactivated, deleted or lose `admin`. Only admins who can
  sign in count: active, with a password (not an invitation still unused) and, when
  REGISTRATION_REQUIRE_VERIFIED_EMAIL is on, a verified address. A change that would remove an
  active admin takes one transaction-scoped advisory lock before it counts the others, so of two
  concurrent requests that each remove one of two admins the second counts after the first has
  committed, and is refused. A refusal is recorded (`admin.denied`, reason `last_admin`) in a
  transaction of its own, since the change's own was rolled back.
- Without a password, a created user gets an unusable one (`unusable_password()`: no password
  matches it, a login against it costs what any other failure does) and an invitation: a
  set-password link on the reset page, valid INVITATION_TTL_HOURS; using it verifies the address.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import structlog
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from redis.exceptions import RedisError
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.admin._users import BASE_COLUMNS, COLUMNS, AdminUserRead, LastAdmin, parse_id, read_user
from auth_service.domain.admin.schemas import AdminUserCreate, AdminUserPatch
from auth_service.domain.auth.mfa.notify import factor_changed
from auth_service.domain.auth.mfa.store import FactorStore
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.domain.users.recovery import RESET, end_links, link_mail, write_mail
from auth_service.domain.users.schemas import UserExistsError, UserNotFound, stored_email
from auth_service.lib.audit import Actor, AuditEntry, denied, record
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import UNUSABLE_PREFIX, PasswordHasher, unusable_password
from auth_service.lib.errors import Conflict, ServiceUnavailable
from auth_service.settings import LinkSettings
from db.models import identity_key
from db.sql import users
from observability.metrics import record_session_revoked

__all__ = [
    "ADMIN_ROLE",
    "COLUMNS",
    "AdminService",
    "AdminUserRead",
    "LastAdmin",
    "parse_id",
    "read_user",
]

log = structlog.get_logger()
ADMIN_ROLE = "admin"
# pg_advisory_xact_lock key of "the set of active admins" ("admins" in ASCII).
_ADMINS_LOCK = 0x61646D696E73


_u = users.c


class AdminService:
    """The admin's changes to users; commits its own session.

    Args:
        links: account links, for invitations and reset mails (None: the CLI, which sends neither).
        lifetimes: how long the links an admin has mailed live (reset, invitation).
    """

    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        revocation: RevocationStore,
        policy: PasswordPolicy,
        links: AccountLinks | None = None,
        lifetimes: LinkSettings = LinkSettings(),
        require_verified_email: bool = True,
    ) -> None:
        self._session = session
        self._hasher = hasher
        self._revocation = revocation
        self._policy = policy
        self._links = links
        self._reset_ttl = dt.timedelta(minutes=lifetimes.password_reset_ttl_minutes)
        self._invite_ttl = dt.timedelta(hours=lifetimes.invitation_ttl_hours)
        self._require_verified = require_verified_email

    # ---- reads --------------------------------------------------------------------------------

    async def get(self, user_id: uuid.UUID) -> AdminUserRead:
        row = (await self._session.execute(select(*COLUMNS).where(_u.id == user_id))).first()
        await self._session.rollback()
        if row is None:
            raise UserNotFound("no user with that id")
        return read_user(row)

    async def id_of(self, username: str) -> uuid.UUID:
        """The id of a user by name (the CLI's way in)."""
        found = await self._session.execute(select(_u.id).where(_u.username_key == identity_key(username)))
        user_id = found.scalar_one_or_none()
        await self._session.rollback()
        if user_id is None:
            raise UserNotFound(f"no user named {username!r}")
        return uuid.UUID(str(user_id))

    # ---- changes ------------------------------------------------------------------------------

    async def create(self, data: AdminUserCreate, actor: Actor) -> AdminUserRead:
        """A new user, verified when it has a password, else invited (the invitation mail's job
        goes with the commit).

        Raises:
            InvalidUserData: the address, normalised, is not one e-mail address that fits.
            PasswordPolicyError: the password breaks the policy.
            Conflict: the username or e-mail is taken.
        """
        email = stored_email(data.email)
        if await self._taken(data.username, email):
            raise UserExistsError("a user with that username or e-mail already exists")
        invited = data.password is None
        if data.password is not None:
            self._policy.check(data.password, username=data.username, email=email)
        if invited and self._links is None:
            raise Conflict("an invitation needs the API (it mails a link); give a password instead")
        password_hash = unusable_password() if data.password is None else await self._hasher.hash(data.password)
        user_id = uuid.uuid4()
        now = dt.datetime.now(dt.UTC)
        roles = sorted(set(data.roles))
        try:
            row = (
                await self._session.execute(
                    insert(users)
                    .values(
                        id=user_id,
                        username=data.username,
                        username_key=identity_key(data.username),
                        email=email,
                        email_key=identity_key(email),
                        password_hash=password_hash,
                        is_active=True,
                        email_verified=not invited,
                        roles=roles,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(*BASE_COLUMNS)
                )
            ).one()
            if invited:
                assert self._links is not None
                hours = int(self._invite_ttl.total_seconds() // 3600)
                await link_mail(
                    self._session,
                    self._links,
                    RESET,
                    user_id,
                    self._invite_ttl,
                    row.email,
                    "invitation",
                    {"hours": hours},
                )
            details = {"username": data.username, "roles": roles, "invited": invited}
            await record(self._session, actor, AuditEntry("user.create", user_id, details))
            await self._session.commit()
        except (IntegrityError, RepositoryIntegrityError):
            await self._session.rollback()  # the same name was created meanwhile: the unique keys decide
            raise UserExistsError("a user with that username or e-mail already exists") from None
        log.info("admin.user_created", user_id=str(user_id), invited=invited, via=actor.via or "api")
        return read_user(row)

    async def update(self, user_id: uuid.UUID, patch: AdminUserPatch, actor: Actor) -> AdminUserRead:
        """Change e-mail, roles and the active flag (only those given). A role change or a
        deactivation ends every token of the user; an activation leaves the old ones dead.

        Raises:
            InvalidUserData (the address, normalised, is not one that fits), UserNotFound,
            LastAdmin, Conflict (address taken), ServiceUnavailable (Redis).
        """
        email = stored_email(patch.email) if patch.email is not msgspec.UNSET else None
        current = await self._lock(user_id)
        values: dict[str, Any] = {}
        entries: list[AuditEntry] = []
        moved_from: str | None = None
        if email is not None and email != current.email:
            # A verified account's new address is verified (the admin vouches, as when creating a
            # user with a password); an unverified one stays unverified.
            values.update(email=email, email_key=identity_key(email), email_verified=current.email_verified)
            entries.append(AuditEntry("user.update", user_id, {"fields": ["email"]}))
            if identity_key(email) != identity_key(current.email):  # another mailbox, not another spelling
                moved_from = current.email
        roles = list(current.roles or [])
        if patch.roles is not msgspec.UNSET and sorted(set(patch.roles)) != sorted(roles):
            new_roles = sorted(set(patch.roles))
            values["roles"] = new_roles
            added = sorted(set(new_roles) - set(roles))
            removed = sorted(set(roles) - set(new_roles))
            entries.append(AuditEntry("user.roles", user_id, {"added": added, "removed": removed}))
            roles = new_roles
        active = current.is_active
        if patch.is_active is not msgspec.UNSET and patch.is_active != current.is_active:
            active = patch.is_active
            values["is_active"] = active
            entries.append(AuditEntry("user.activate" if active else "user.deactivate", user_id))
        if not values:
            await self._session.rollback()
            return read_user(current)
        was_admin = current.is_active and ADMIN_ROLE in (current.roles or [])
        if was_admin and not (active and ADMIN_ROLE in roles):
            await self._keep_an_admin(user_id, actor, "user.deactivate" if not active else "user.roles")
        values["updated_at"] = dt.datetime.now(dt.UTC)
        try:
            row = (
                await self._session.execute(update(users).where(_u.id == user_id).values(**values).returning(*COLUMNS))
            ).one()
        except (IntegrityError, RepositoryIntegrityError):
            await self._session.rollback()
            raise UserExistsError("another account has that e-mail address") from None
        if "roles" in values or values.get("is_active") is False:
            await self._revocation.revoke_everything(self._session, user_id)
        if moved_from is not None:
            await self._moved(user_id, moved_from)
        await record(self._session, actor, *entries)
        await self._commit(user_id)
        log.info("admin.user_updated", user_id=str(user_id), actions=[e.action for e in entries])
        return read_user(row)

    async def set_password(self, user_id: uuid.UUID, password: str, actor: Actor) -> AdminUserRead:
        """A new password set by an operator (policy applies); every token and every reset link of
        the user dies.

        Raises:
            UserNotFound, PasswordPolicyError, ServiceUnavailable (Redis).
        """
        found = await self.get(user_id)
        self._policy.check(password, username=found.username, email=found.email)
        password_hash = await self._hasher.hash(password)
        await self._lock(user_id)
        now = dt.datetime.now(dt.UTC)
        row = (
            await self._session.execute(
                update(users)
                .where(_u.id == user_id)
                .values(password_hash=password_hash, updated_at=now)
                .returning(*COLUMNS)
            )
        ).one()
        await end_links(self._session, user_id, [RESET])  # a reset link would undo the operator's password
        await self._revocation.revoke_everything(self._session, user_id)
        await record(self._session, actor, AuditEntry("user.update", user_id, {"fields": ["password"]}))
        await self._commit(user_id)
        return read_user(row)

    async def delete(self, user_id: uuid.UUID, actor: Actor) -> None:
        """Remove the user (its sessions and links with it; login records keep their rows with
        user_id null and the typed username).

        Raises:
            UserNotFound, LastAdmin, ServiceUnavailable (Redis).
        """
        current = await self._lock(user_id)
        if current.is_active and ADMIN_ROLE in (current.roles or []):
            await self._keep_an_admin(user_id, actor, "user.delete")
        await self._session.execute(delete(users).where(_u.id == user_id))
        await record(self._session, actor, AuditEntry("user.delete", user_id, {"username": current.username}))
        await self._commit(user_id)
        log.info("admin.user_deleted", user_id=str(user_id))

    async def logout_all(self, user_id: uuid.UUID, actor: Actor) -> int:
        """Revoke every session and access token of the user; returns how many sessions were live."""
        await self._lock(user_id)
        sessions = await self._revocation.revoke_everything(self._session, user_id)
        await record(self._session, actor, AuditEntry("user.logout_all", user_id, {"sessions": sessions}))
        await self._commit(user_id)
        if sessions:
            record_session_revoked("admin", sessions)
        return sessions

    async def send_reset(self, user_id: uuid.UUID, actor: Actor) -> None:
        """Mail the user a password-reset link.

        Raises:
            UserNotFound; Conflict when the user is deactivated (the mail could never be used).
        """
        current = await self._lock(user_id)
        if not current.is_active:
            await self._session.rollback()
            raise Conflict("the user is deactivated: activate it first")
        assert self._links is not None
        minutes = int(self._reset_ttl.total_seconds() // 60)
        await link_mail(
            self._session,
            self._links,
            RESET,
            user_id,
            self._reset_ttl,
            current.email,
            "password_reset",
            {"minutes": minutes},
        )
        await record(self._session, actor, AuditEntry("user.password_reset_sent", user_id))
        await self._session.commit()

    async def reset_mfa(self, user_id: uuid.UUID, actor: Actor) -> int:
        """Emergency access: remove every second factor of the user (TOTP, passkeys, recovery
        codes) and end every session, audited and mailed, in one transaction (the revocation
        protocol's). Returns how many factors went (TOTP 1, each passkey 1, a code set 1).

        Raises:
            UserNotFound, ServiceUnavailable (Redis).
        """
        await self._lock(user_id)
        store = FactorStore(self._session)
        totp_removed = await store.delete_totp(user_id)
        passkeys = await store.delete_passkeys(user_id)
        codes = await store.delete_codes(user_id)
        removed = int(totp_removed) + passkeys + int(codes > 0)
        sessions = await self._revocation.revoke_everything(self._session, user_id)
        details = {"factors_removed": removed, "totp": totp_removed, "webauthn": passkeys, "sessions": sessions}
        await factor_changed(self._session, actor, user_id, "user.mfa_reset", "reset", details)
        await self._commit(user_id)
        if sessions:
            record_session_revoked("admin", sessions)
        log.info("admin.mfa_reset", user_id=str(user_id), factors_removed=removed, via=actor.via or "api")
        return removed

    # ---- helpers ------------------------------------------------------------------------------

    async def _moved(self, user_id: uuid.UUID, old_email: str) -> None:
        """The address changed: every live link (reset, invitation, verification) was mailed to
        the old one and dies; the old address is told."""
        await end_links(self._session, user_id)
        now = dt.datetime.now(dt.UTC)
        await write_mail(
            self._session, user_id, "email_changed", {"to": old_email, "timestamp": f"{now:%Y-%m-%d %H:%M:%S}"}
        )

    async def _taken(self, username: str, email: str) -> bool:
        stmt = select(_u.id).where(or_(_u.username_key == identity_key(username), _u.email_key == identity_key(email)))
        taken = (await self._session.execute(stmt.limit(1))).first() is not None
        await self._session.rollback()  # no transaction open while hashing
        return taken

    async def _lock(self, user_id: uuid.UUID) -> Any:
        """The revocation protocol's step 1 (the user's row FOR UPDATE), reading the row."""
        row = (await self._session.execute(select(*COLUMNS).where(_u.id == user_id).with_for_update())).first()
        if row is None:
            await self._session.rollback()
            raise UserNotFound("no user with that id")
        return row

    async def _keep_an_admin(self, user_id: uuid.UUID, actor: Actor, action: str) -> None:
        """Refuse (409) unless another admin who can sign in stays; serialised by one advisory
        lock. A refusal is audited (`admin.denied`) and logged."""
        await self._session.execute(select(func.pg_advisory_xact_lock(_ADMINS_LOCK)))
        can_sign_in = [_u.is_active.is_(True), ~_u.password_hash.startswith(UNUSABLE_PREFIX, autoescape=True)]
        if self._require_verified:
            can_sign_in.append(_u.email_verified.is_(True))
        others = await self._session.execute(
            select(func.count())
            .select_from(users)
            .where(and_(_u.roles.contains([ADMIN_ROLE]), _u.id != user_id, *can_sign_in))
        )
        if int(others.scalar_one()) == 0:
            await self._session.rollback()
            await denied(self._session, actor, action, user_id, "last_admin")
            raise LastAdmin("this is the last admin who can sign in: make another user admin first")

    async def _commit(self, user_id: uuid.UUID) -> None:
        try:
            await self._revocation.commit(self._session, user_id)
        except RedisError:
            raise ServiceUnavailable from None  # rolled back: nothing changed, a retry is safe
