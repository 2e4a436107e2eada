"""Login and refresh: the business rules, free of HTTP (logout is domain/sessions/service.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from functools import cached_property

import structlog
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.attempt import LoginAttempt, failure_reason
from auth_service.domain.auth.issue import ClientInfo, IssuedTokens, issue_pair
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.mfa.challenge import raise_challenge, second_factor_required
from auth_service.domain.auth.mfa.factors import MfaKit
from auth_service.domain.auth.refresh import RefreshRotation
from auth_service.domain.auth.repository import LoginRecordRepository, LoginUser
from auth_service.domain.auth.suspicious import LoginHistory, SuspicionRules, suspicious_reasons
from auth_service.domain.notifications.repository import NotificationRepository, OutboxRow
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicyError
from auth_service.domain.users.service import CredentialsChanged, UserNotFound, UserService
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.passwords import HasherBusyError, PasswordHasher, VerifyResult
from auth_service.lib.crypto.tokens import (
    TokenService,
    hash_refresh_token,
    new_refresh_token,
)
from auth_service.lib.errors import (
    EmailUnverified,
    InvalidCredentials,
    ServiceUnavailable,
    TokenRevoked,
)
from auth_service.lib.jobs import add_jobs
from auth_service.lib.principal import Subject
from auth_service.lib.queue import JobName, QueuedJob
from observability import metrics

__all__ = ["NO_TRANSACTION", "AuthService", "ClientInfo", "IssuedTokens", "LoginAttempt"]

log = structlog.get_logger()
tracer = trace.get_tracer("auth_service")

_USER_AGENT_MAX = 512
# A read (or a conditional write) that needs no atomicity with another statement: without BEGIN
# and COMMIT, two round trips fewer (the connection goes back to the pool in its default mode).
NO_TRANSACTION = {"isolation_level": "AUTOCOMMIT"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthService:
    """The token lifecycle for one request.

    Args:
        session: the request's database session; this service commits it.
        hasher: password hashing pool.
        tokens: JWT and refresh-token primitives.
        revocation: Redis/PostgreSQL revocation state.
        limits: the rate-limit policy.
        refresh_ttl: refresh token lifetime in seconds.
        reuse_grace: seconds during which a spent refresh token gets its successor back.
        suspicion: when a successful login also sends a suspicious-login alert.
    """

    def __init__(
        self,
        session: AsyncSession,
        *,
        hasher: PasswordHasher,
        tokens: TokenService,
        revocation: RevocationStore,
        limits: EndpointLimits,
        refresh_ttl: int,
        reuse_grace: int,
        suspicion: SuspicionRules | None = None,
        require_verified_email: bool = False,
        mfa: MfaKit | None = None,
    ) -> None:
        self._require_verified = require_verified_email
        self._mfa = mfa
        self._session = session
        self._limits = limits
        self._suspicion = suspicion or SuspicionRules()
        self._hasher = hasher
        self._tokens = tokens
        self._revocation = revocation
        self._refresh_ttl = refresh_ttl
        self._grace = dt.timedelta(seconds=reuse_grace)

    # Repositories are built on first use: a request needs one or two of them, and building costs
    # time (4 % of a refresh's CPU in a py-spy profile when all five were built up front).
    @cached_property
    def _notifications(self) -> NotificationRepository:
        return NotificationRepository(session=self._session)

    @cached_property
    def records(self) -> LoginRecordRepository:
        return LoginRecordRepository(session=self._session)

    async def login(self, username: str, password: str, client: ClientInfo) -> IssuedTokens:
        """Check a password and open a session, in three steps: authenticate (limits, user,
        password) → challenge (where a second factor goes) → open the session (record,
        outbox, tokens).

        Unknown user, wrong password and disabled account fail alike, in the same time;
        the real reason is kept in login_records.

        Raises:
            InvalidCredentials: any credential failure.
            RateLimited: over the per-IP or per-username limit (checked before any work).
            ServiceUnavailable: Redis is down, or the hashing pool is saturated.
        """
        attempt = await self.authenticate(username, password, client)
        await self.challenge(attempt)
        return await self.open_session(attempt)

    async def change_password(
        self, subject: Subject, current: str, new: str, client: ClientInfo, users: UserService
    ) -> IssuedTokens:
        """The owner changes their password: `current` is checked like a login's (the same limits
        and per-username failure budget; a wrong one is AUTH_INVALID_CREDENTIALS and counts), every
        token of the user dies, and the caller gets a fresh pair on a new session.

        Raises:
            InvalidCredentials: `current` is wrong (or the token's user is not the password's), or
                the password changed between its check and this change (another change or a reset
                won): refused, recorded and counted like a login that raced a password change.
            PasswordPolicyError: `new` breaks the policy; nothing changed.
        """
        attempt = await self.authenticate(subject.username, current, client)
        if str(attempt.user.id) != subject.user_id:
            await self._fail_login(
                attempt.user, subject.username, client, attempt.user_agent, "credentials_changed", attempt.result
            )
        try:
            await users.change_own_password(attempt.user.id, new, attempt.user.password_hash)
        except CredentialsChanged:
            await self._fail_login(
                attempt.user, subject.username, client, attempt.user_agent, "credentials_changed", attempt.result
            )
            raise
        except (PasswordPolicyError, UserNotFound):
            # The current password was right: its budget slot goes back, as after a login.
            await self._limits.after_login(client.ip, subject.username, attempt.gate, user_id=subject.user_id)
            raise
        metrics.record_password_change()
        fresh = await self.records.for_login(attempt.user.username)
        if fresh is None or not fresh.is_active:
            raise TokenRevoked
        # The caller's session was proven as its token says: the new one keeps that.
        amr = tuple(subject.claims.amr) if subject.claims is not None else attempt.amr
        reopened = replace(attempt, user=fresh, result=VerifyResult(ok=True), amr=amr)
        issued = await self.open_session(reopened)
        log.info("password.changed", user_id=subject.user_id)
        return issued

    async def change_email(
        self,
        subject: Subject,
        current: str,
        email: str,
        client: ClientInfo,
        users: UserService,
        links: AccountLinks,
    ) -> None:
        """The owner changes their address, `current` checked like a login's password.

        Raises:
            InvalidCredentials: `current` is wrong, or the password changed between its check and
                this change (as for `change_password`).
            InvalidUserData, UserExistsError: the address is malformed or another account's.
        """
        attempt = await self.authenticate(subject.username, current, client)
        if str(attempt.user.id) != subject.user_id:
            await self._fail_login(
                attempt.user, subject.username, client, attempt.user_agent, "credentials_changed", attempt.result
            )
        try:
            await users.change_own_email(attempt.user.id, email, links, attempt.user.password_hash)
        except CredentialsChanged:
            await self._fail_login(
                attempt.user, subject.username, client, attempt.user_agent, "credentials_changed", attempt.result
            )
            raise
        except BaseException:
            # The current password was right: its budget slot goes back, as after a login.
            await self._limits.after_login(client.ip, subject.username, attempt.gate, user_id=subject.user_id)
            raise
        await self._limits.after_login(client.ip, subject.username, attempt.gate, user_id=subject.user_id)

    async def authenticate(self, username: str, password: str, client: ClientInfo) -> LoginAttempt:
        """Step 1: the limits, the user, the password. Raises InvalidCredentials (after the
        failure floor, with the failure recorded) unless the password is right for an active user."""
        gate = await self._limits.before_login(client.ip, username)
        user, result = await self._authenticate(username, password)
        user_agent = (client.user_agent or "")[:_USER_AGENT_MAX] or None
        failure = failure_reason(user, result.ok)
        if failure is not None or user is None:
            await self._fail_login(user, username, client, user_agent, failure or "unknown_user", result)
        assert user is not None
        return LoginAttempt(user, username, client, user_agent, result, gate)

    async def challenge(self, attempt: LoginAttempt) -> None:
        """Step 2: what the user must prove besides the password before a session opens: a
        verified address (REGISTRATION_REQUIRE_VERIFIED_EMAIL), then a second factor (TOTP,
        recovery code, passkey) or, for a role in MFA_REQUIRED_ROLES, its enrolment.

        Raises:
            EmailUnverified: the password was right, the address is not verified.
            MfaRequired: the password was right; the login goes on at POST /auth/mfa with the
                pending login's token (no session, no record, no notification yet).
        """
        if self._require_verified and not attempt.user.email_verified:
            user, client = attempt.user, attempt.client
            await self._session.rollback()
            await self.records.record_failure(
                user_id=user.id,
                username=attempt.username[:255],
                ip=client.ip[:45],
                user_agent=attempt.user_agent,
                reason="email_unverified",
            )
            await self._session.commit()
            # The password was right: its budget slot goes back, as after a login.
            await self._limits.after_login(client.ip, attempt.username, attempt.gate, user_id=str(user.id))
            metrics.login_attempts.add(1, {"outcome": "failure", "reason": "email_unverified"})
            raise EmailUnverified
        # A second factor follows a password; a passkey login has proven its key already.
        methods = second_factor_required(self._mfa, attempt.user) if attempt.amr == ("pwd",) else []
        if methods:
            assert self._mfa is not None
            if attempt.result.new_hash:
                await self._rehash(attempt.user, attempt.result.new_hash)
            # The password was right: its budget slot goes back, but the IP is not "known" for
            # the account until the second step succeeds (after_login then).
            await self._limits.refund(attempt.gate)
            await raise_challenge(
                self._mfa, attempt.user, methods, username=attempt.username, ip=attempt.client.ip, ua=attempt.user_agent
            )

    async def open_session(self, attempt: LoginAttempt) -> IssuedTokens:
        """Step 3: the session, its login record and its notifications, then the tokens."""
        user, username, client, user_agent = attempt.user, attempt.username, attempt.client, attempt.user_agent
        opened = await self._open_session(user, username, client, user_agent, list(attempt.amr))
        if opened is None:
            # The password was right for a user who changed meanwhile (password change, logout
            # everywhere, deactivation committed during the hash): no session for it.
            await self._fail_login(user, username, client, user_agent, "credentials_changed", attempt.result)
        assert opened is not None
        family_id, refresh_token, notes = opened
        user_id = str(user.id)
        if attempt.result.new_hash:
            await self._rehash(user, attempt.result.new_hash)
        await self._limits.after_login(client.ip, username, attempt.gate, user_id=user_id)
        metrics.login_attempts.add(1, {"outcome": "success", "reason": "none"})
        log.info("login.succeeded", user_id=user_id, ip=client.ip, alerts=len(notes) - 1)
        return issue_pair(
            self._tokens,
            user.id,
            user.username,
            user.roles,
            family_id,
            refresh_token,
            self._refresh_ttl,
            list(attempt.amr),
        )

    async def _authenticate(self, username: str, password: str) -> tuple[LoginUser | None, VerifyResult]:
        """The user a login names and whether the password matches it (a dummy hash for none)."""
        # One statement with nothing to keep atomic: read it outside a transaction (two round
        # trips fewer, BEGIN and COMMIT), and give the connection back before hashing: a login
        # waiting for the hash pool must hold no pooled connection, or a burst of logins starves
        # every other endpoint.
        await self._session.connection(execution_options=NO_TRANSACTION)
        user = await self.records.for_login(username)
        await self._session.commit()
        try:
            with tracer.start_as_current_span("auth.password.verify"):
                result = await self._hasher.verify(user.password_hash if user else None, password)
        except HasherBusyError:
            metrics.login_attempts.add(1, {"outcome": "failure", "reason": "busy"})
            raise ServiceUnavailable(headers={"Retry-After": "1"}) from None
        return user, result

    async def _fail_login(
        self,
        user: LoginUser | None,
        username: str,
        client: ClientInfo,
        user_agent: str | None,
        reason: str,
        result: VerifyResult,
    ) -> None:
        """Record a failed login and raise InvalidCredentials, after the failure floor: every
        failure takes the same time, whatever the account and its stored hash."""
        await self._session.rollback()
        await self.records.record_failure(
            user_id=user.id if user else None,
            username=username[:255],
            ip=client.ip[:45],
            user_agent=user_agent,
            reason=reason,
        )
        await self._session.commit()
        metrics.login_attempts.add(1, {"outcome": "failure", "reason": reason})
        log.info("login.failed", reason=reason, ip=client.ip)
        await self._hasher.pad_failure(result)
        raise InvalidCredentials

    async def _open_session(
        self, user: LoginUser, username: str, client: ClientInfo, user_agent: str | None, amr: list[str]
    ) -> tuple[uuid.UUID, str, list[OutboxRow]] | None:
        """Write the session, its login record and its notifications, only while the user is as
        the password check saw it; None when not (nothing written)."""
        now = _now()
        family_id = uuid.uuid4()
        refresh_token = new_refresh_token(family_id)
        expires_at = now + dt.timedelta(seconds=self._refresh_ttl)
        when = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        notice = OutboxRow(
            uuid.uuid4(),
            "login",
            JobName.SEND_LOGIN_NOTIFICATION_EMAIL.value,
            {"user_id": str(user.id), "ip_address": client.ip, "timestamp": when, "user_agent": user_agent},
        )
        rules = self._suspicion
        # One statement writes the refresh token, the login record and the notification's outbox
        # row, and reads the history as it was before this login: they commit together or not at all.
        outcome = await self.records.record_success(
            user_id=user.id,
            username=username[:255],
            ip=client.ip[:45],
            user_agent=user_agent,
            refresh_token=(uuid.uuid4(), hash_refresh_token(refresh_token), family_id, now, expires_at),
            note=notice,
            success_since=now - dt.timedelta(days=rules.new_device_days),
            failures_since=now - dt.timedelta(minutes=rules.failure_window_minutes),
            checked_hash=user.password_hash,
            checked_valid_after=user.tokens_valid_after,
            amr=amr,
        )
        if outcome is None:
            return None
        notes = [notice]
        history = LoginHistory(
            has_earlier_success=outcome.has_earlier_success,
            seen_this_device=outcome.seen_this_device,
            recent_failures=outcome.recent_failures,
        )
        if reasons := suspicious_reasons(history, rules):
            details = {
                "reasons": reasons,
                "new_device_days": rules.new_device_days,  # the mail states the window it was judged by
                "ip_address": client.ip,
                "user_agent": user_agent,
                "timestamp": when,
                "recent_failures": history.recent_failures,
            }
            alert = OutboxRow(
                uuid.uuid4(),
                "suspicious",
                JobName.SEND_SUSPICIOUS_LOGIN_ALERT.value,
                {"user_id": str(user.id), "details": details},
            )
            await self._notifications.add_outbox(user.id, alert)
            notes.append(alert)
            log.warning("login.suspicious", user_id=str(user.id), reasons=reasons, ip=client.ip)
        # Each notification's job goes with the commit that writes its outbox row (lib/jobs.py).
        add_jobs(
            self._session,
            *(
                QueuedJob(JobName(n.job), f"notification:{n.id}", {**n.payload, "notification_id": str(n.id)})
                for n in notes
            ),
        )
        await self._session.commit()
        return family_id, refresh_token, notes

    async def _rehash(self, user: LoginUser, new_hash: str) -> None:
        """Store the upgraded hash (its own transaction, after the session is open: the session's
        share lock must not be turned into an update lock, which two logins would deadlock on)."""
        if await self.records.rehash(user.id, user.password_hash, new_hash, _now()):
            log.info("login.password_rehashed", user_id=str(user.id))
        await self._session.commit()

    async def refresh(self, presented: str, client: ClientInfo, *, oauth_client: str | None = None) -> IssuedTokens:
        """Rotate a refresh token (domain/auth/refresh.py); `oauth_client`: the client a token
        presented at /oauth2/token must have been granted to."""
        return await RefreshRotation(
            self._session, self._tokens, self._revocation, self._limits, self._refresh_ttl, self._grace
        ).refresh(presented, client, oauth_client=oauth_client)
