"""The OAuth 2.1 / OpenID Connect Core provider's decisions: authorization, the three grants,
ID tokens, userinfo, revocation (RFC 7009) and introspection (RFC 7662).

Written by hand on authlib's and joserfc's pieces (PKCE, at_hash, JOSE): authlib's
AuthorizationServer calls its storage hooks (query_client, save_token, …) synchronously, which
on this async stack would block the event loop on every database read; everything else here is
the RFCs' rules. A session opened through OAuth is a refresh family like any other
(domain/oauth/store.py); the refresh grant is /auth/refresh's rotation with its reuse detection
and grace (domain/auth/refresh.py), bound to the client the session was granted to.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from joserfc import jwt

from auth_service.domain.auth.issue import ClientInfo
from auth_service.domain.auth.service import AuthService
from auth_service.domain.auth.verify import TokenVerifier
from auth_service.domain.oauth.clients import ClientStore, OAuthClientRow
from auth_service.domain.oauth.codes import CodeStore
from auth_service.domain.oauth.protocol import OAuthError, at_hash, invalid_client, pkce_matches
from auth_service.domain.oauth.store import OAuthStore
from auth_service.domain.oauth.well_known import SCOPES
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.sessions.service import SessionService
from auth_service.lib.crypto.tokens import (
    AccessClaims,
    SigningKeyUnavailable,
    TokenExpiredError,
    TokenInvalidError,
    TokenService,
    family_of,
    hash_refresh_token,
    new_refresh_token,
)
from auth_service.lib.errors import RateLimited, ServiceUnavailable, TokenExpired, TokenInvalid, TokenRevoked
from auth_service.lib.keyring import KeyRing
from observability import metrics

__all__ = ["GRANTS", "OIDC_SCOPES", "Provider", "TokenResponse"]

log = structlog.get_logger()

GRANTS = ("authorization_code", "refresh_token", "client_credentials")
OIDC_SCOPES = frozenset(SCOPES)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """RFC 6749 §5.1 (and OIDC Core §3.1.3.3's id_token)."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Provider:
    """One request's provider.

    Args:
        store, clients, codes: the provider's statements, the registered clients, the codes.
        auth: the login service (its refresh rotation).
        tokens, keyring: access tokens; the managed keys that sign ID tokens.
        verifier: access-token verification with revocation (userinfo, introspection).
        issuer: PUBLIC_BASE_URL.
    """

    def __init__(
        self,
        *,
        store: OAuthStore,
        clients: ClientStore,
        codes: CodeStore,
        auth: AuthService,
        sessions: SessionService,
        tokens: TokenService,
        keyring: KeyRing,
        verifier: TokenVerifier,
        revocation: RevocationStore,
        issuer: str,
        refresh_ttl: int,
    ) -> None:
        self.store = store
        self.clients = clients
        self.codes = codes
        self._auth = auth
        self._sessions = sessions
        self._tokens = tokens
        self._keyring = keyring
        self._verifier = verifier
        self._revocation = revocation
        self.issuer = issuer
        self._refresh_ttl = refresh_ttl

    # ---- clients ----------------------------------------------------------------------------

    async def authenticate_client(self, client_id: str, secret: str | None, method: str) -> OAuthClientRow:
        """The client a token-endpoint request comes from.

        Raises:
            OAuthError: invalid_client (unknown, inactive, wrong secret, a method its type does not use).
        """
        if method == "none":
            client = await self.clients.get(client_id)
            if client is None or not client.is_public:
                raise invalid_client()
            return client
        client = await self.clients.authenticate(client_id, secret)
        if client is None:
            raise invalid_client()
        return client

    # ---- the authorization code grant -------------------------------------------------------

    async def exchange_code(
        self, client: OAuthClientRow, code: str | None, redirect_uri: str | None, verifier: str | None
    ) -> TokenResponse:
        if not code or not redirect_uri or not verifier:
            raise OAuthError("invalid_request", "code, redirect_uri and code_verifier are required")
        family_id = uuid.uuid4()
        redeemed = await self.codes.redeem(code, family_id)
        if redeemed.outcome == "reused":
            if redeemed.family_to_revoke is not None:
                await self._end_session_of_family(redeemed.family_to_revoke, "authorization_code_reuse")
            log.warning("oauth.code_reused", client_id=client.client_id)
            raise OAuthError("invalid_grant", "The authorization code was already used")
        grant = redeemed.grant
        if redeemed.outcome != "redeemed" or grant is None:
            raise OAuthError("invalid_grant", "The authorization code is unknown or expired")
        # The code is spent from here on, whatever follows (a wrong verifier burns it).
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "The authorization code was issued to another client")
        if grant.redirect_uri != redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request's")
        if not pkce_matches(grant.code_challenge, verifier):
            raise OAuthError("invalid_grant", "The code_verifier does not match the code_challenge")
        scopes = grant.scope.split(" ") if grant.scope else []
        with_refresh = "offline_access" in scopes and client.allows_grant("refresh_token")
        refresh_token = new_refresh_token(family_id) if with_refresh else None
        now = _now()
        lifetime = self._refresh_ttl if with_refresh else self._tokens.access_ttl
        user_id = uuid.UUID(grant.user_id)
        valid_after = dt.datetime.fromisoformat(grant.tokens_valid_after) if grant.tokens_valid_after else None
        # The client's share lock first, then the user's (the order its deletion takes): a client
        # deleted or deactivated meanwhile leaves no session behind.
        if await self.clients.get(client.client_id, share_lock=True) is None:
            await self.store.rollback()
            raise OAuthError("invalid_grant", "The client is no longer active")
        user = await self.store.open_session(
            family_id=family_id,
            # Without offline_access the session has no refresh token: its row is named by a hash
            # of nothing anyone holds, and it ends with its access tokens.
            token_hash=hash_refresh_token(refresh_token or new_refresh_token(family_id)),
            user_id=user_id,
            tokens_valid_after=valid_after,
            client_id=client.client_id,
            scope=grant.scope,
            amr=grant.amr,
            ip=grant.ip,
            user_agent=grant.user_agent,
            started_at=dt.datetime.fromtimestamp(grant.auth_time, dt.UTC),
            expires_at=now + dt.timedelta(seconds=lifetime),
        )
        if user is None:
            await self.store.rollback()
            raise OAuthError("invalid_grant", "The user or the client changed since the authorization")
        await self.store.commit()
        if not await self.codes.settle(code):
            await self._end_session_of_family(family_id, "authorization_code_reuse")
            raise OAuthError("invalid_grant", "The authorization code was already used")
        access, _ = self._issue_access(
            user.user_id, user.username, user.roles, family_id, grant.amr, client, grant.scope
        )
        id_token = None
        if "openid" in scopes:
            id_token = self.id_token(
                user_id=str(user.user_id),
                client_id=client.client_id,
                nonce=grant.nonce,
                auth_time=grant.auth_time,
                amr=grant.amr,
                access_token=access,
                session_id=str(family_id),
                claims=_profile_claims(user, scopes),
            )
        metrics.tokens_issued.add(1, {"type": "access"})
        if refresh_token is not None:
            metrics.tokens_issued.add(1, {"type": "refresh"})
        log.info("oauth.code_exchanged", client_id=client.client_id, user_id=str(user.user_id))
        return TokenResponse(access, self._tokens.access_ttl, grant.scope, refresh_token, id_token)

    def _issue_access(
        self,
        user_id: uuid.UUID | str,
        username: str,
        roles: list[str],
        family_id: uuid.UUID | str,
        amr: list[str],
        client: OAuthClientRow,
        scope: str,
    ) -> tuple[str, AccessClaims]:
        try:
            return self._tokens.issue_access(
                user_id=str(user_id),
                username=username,
                roles=list(roles),
                session_id=str(family_id),
                amr=amr,
                client_id=client.client_id,
                scope=scope,
            )
        except SigningKeyUnavailable:
            raise OAuthError("temporarily_unavailable", "No signing key may sign now", status=503) from None

    def id_token(
        self,
        *,
        user_id: str,
        client_id: str,
        nonce: str | None,
        auth_time: int,
        amr: list[str],
        access_token: str | None,
        session_id: str,
        claims: dict[str, Any],
    ) -> str:
        """An ID token (OIDC Core §2), signed by the managed key that signs now."""
        key = self._keyring.signer()
        if key is None or key.private is None:
            raise OAuthError("temporarily_unavailable", "No signing key may sign now", status=503)
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user_id,
            "aud": client_id,
            "azp": client_id,
            "exp": now + self._tokens.access_ttl,
            "iat": now,
            "auth_time": auth_time,
            "amr": amr,
            "sid": session_id,
            **claims,
        }
        if nonce is not None:
            payload["nonce"] = nonce
        if access_token is not None:
            payload["at_hash"] = at_hash(access_token, key.algorithm)
        header = {"alg": key.algorithm, "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, payload, key.private, algorithms=[key.algorithm])

    # ---- the refresh token grant ------------------------------------------------------------

    async def refresh(self, client: OAuthClientRow, presented: str | None, scope: str | None, ip: str) -> TokenResponse:
        if not presented:
            raise OAuthError("invalid_request", "refresh_token is required")
        asked = scope.split(" ") if scope else None
        if asked is not None:
            # RFC 6749 §6: a refresh may narrow the scope, never widen it; checked before the
            # rotation, so a refused request leaves the client its token.
            ref = await self.store.session_of(hash_refresh_token(presented))
            if (
                ref is not None
                and ref.client_id == client.client_id
                and not set(asked) <= set((ref.scope or "").split(" "))
            ):
                raise OAuthError("invalid_scope", "A refresh cannot widen the granted scope")
        try:
            issued = await self._auth.refresh(presented, ClientInfo(ip, None), oauth_client=client.client_id)
        except (TokenInvalid, TokenExpired, TokenRevoked):
            raise OAuthError(
                "invalid_grant", "The refresh token is invalid, expired, revoked or another client's"
            ) from None
        except RateLimited:
            raise OAuthError("invalid_request", "Too many refreshes of this session; retry later", status=429) from None
        except ServiceUnavailable:
            raise OAuthError("temporarily_unavailable", "Retry shortly", status=503) from None
        granted = issued.scope or ""
        if asked is not None and set(asked) < set(granted.split(" ")):
            # A narrower access token; the session keeps what it was granted.
            narrow = " ".join(s for s in granted.split(" ") if s in asked)
            claims = self._tokens.verify_access(issued.access_token)
            access, _ = self._issue_access(
                claims.sub, claims.username, claims.roles, claims.sid, claims.amr, client, narrow
            )
            return TokenResponse(access, issued.access_expires_in, narrow, issued.refresh_token)
        return TokenResponse(issued.access_token, issued.access_expires_in, granted, issued.refresh_token)

    # ---- the client credentials grant -------------------------------------------------------

    def client_credentials(self, client: OAuthClientRow, scope: str | None) -> TokenResponse:
        if client.is_public:
            raise OAuthError("unauthorized_client", "A public client cannot use client_credentials")
        allowed = [s for s in client.scopes if s not in OIDC_SCOPES]
        asked = scope.split(" ") if scope else allowed
        if not set(asked) <= set(allowed):
            raise OAuthError("invalid_scope", "The client may not ask for that scope")
        granted = " ".join(dict.fromkeys(asked))
        try:
            access, _ = self._tokens.issue_access(
                user_id=client.client_id,
                username=client.client_id,
                roles=[],
                session_id=uuid.uuid4().hex,  # no session: the token lives until its exp
                amr=[],
                client_id=client.client_id,
                scope=granted,
            )
        except SigningKeyUnavailable:
            raise OAuthError("temporarily_unavailable", "No signing key may sign now", status=503) from None
        metrics.tokens_issued.add(1, {"type": "access"})
        return TokenResponse(access, self._tokens.access_ttl, granted)

    # ---- userinfo, revocation, introspection ------------------------------------------------

    async def userinfo(self, token: str, ip: str) -> dict[str, Any]:
        """OIDC Core §5.3 for a live access token granted with `openid`."""
        claims = await self._verifier.verify(token, ip=ip, endpoint="userinfo")
        scopes = (claims.scope or "").split(" ")
        if claims.client_id is None or "openid" not in scopes:
            raise OAuthError("insufficient_scope", "The token was not granted the openid scope", status=403)
        user = await self.store.user(uuid.UUID(claims.sub))
        if user is None or not user.is_active:
            raise TokenRevoked
        return {"sub": str(user.user_id), **_profile_claims(user, scopes)}

    async def revoke(self, client: OAuthClientRow, token: str | None) -> None:
        """RFC 7009: end the session of a refresh or access token issued to this client. Unknown
        tokens and other clients' tokens change nothing (and say nothing: the answer is 200)."""
        if not token:
            raise OAuthError("invalid_request", "token is required")
        if family_of(token) is not None:
            ref = await self.store.session_of(hash_refresh_token(token))
            if ref is not None and ref.client_id == client.client_id:
                await self._sessions.revoke_session(ref.user_id, ref.family_id, reason="oauth_revoke")
            return
        claims = self._claims_or_none(token)  # an expired token cannot be used anyway: nothing to end
        if claims is None or claims.client_id != client.client_id:
            return
        try:
            user_id, family_id = uuid.UUID(claims.sub), uuid.UUID(claims.sid)
        except ValueError:
            return  # a client_credentials token: it has no session, and lives until its exp
        await self._sessions.revoke_session(user_id, family_id, reason="oauth_revoke")

    async def introspect(self, client: OAuthClientRow, token: str | None, ip: str) -> dict[str, Any]:
        """RFC 7662 for a confidential client: access tokens of any client (it may be a resource
        server), refresh tokens of its own sessions only."""
        if not token:
            raise OAuthError("invalid_request", "token is required")
        if family_of(token) is not None:
            ref = await self.store.session_of(hash_refresh_token(token))
            if ref is None or not ref.live or ref.client_id != client.client_id:
                return {"active": False}
            return {
                "active": True,
                "token_type": "refresh_token",
                "client_id": ref.client_id,
                "scope": ref.scope or "",
                "sub": str(ref.user_id),
                "username": ref.username,
                "exp": int(ref.expires_at.timestamp()),
                "iat": int(ref.issued_at.timestamp()),
                "iss": self.issuer,
            }
        claims = self._claims_or_none(token)
        if claims is None:
            return {"active": False}
        machine = False
        try:
            uuid.UUID(claims.sub)
        except ValueError:
            # A client_credentials token: live while its client is; no user, so no username.
            if claims.client_id is None or await self.clients.get(claims.client_id) is None:
                return {"active": False}
            machine = True
        else:
            try:
                claims = await self._verifier.verify(token, ip=ip, endpoint="introspect")
            except (TokenInvalid, TokenExpired, TokenRevoked):
                return {"active": False}
        body: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "sub": claims.sub,
            **({} if machine else {"username": claims.username}),
            "exp": claims.exp,
            "iat": claims.iat,
            "iss": claims.iss,
            "aud": claims.aud,
            "jti": claims.jti,
        }
        if claims.client_id is not None:
            body |= {"client_id": claims.client_id, "scope": claims.scope or ""}
        return body

    def _claims_or_none(self, token: str) -> AccessClaims | None:
        try:
            # Through the verifier's cache of verified claims: introspection then checks the
            # signature once, not twice (the verifier's revocation check reads the same cache).
            return self._verifier.claims_of(token)
        except (TokenExpiredError, TokenInvalidError):
            return None

    async def end_session(self, user_id: uuid.UUID, family_id: uuid.UUID, reason: str) -> None:
        """End one session by the revocation protocol (audited as `session.revoke`)."""
        await self._sessions.revoke_session(user_id, family_id, reason=reason)

    async def _end_session_of_family(self, family_id: uuid.UUID, reason: str) -> None:
        owner = await self.store.family_owner(family_id)
        if owner is not None:
            await self._sessions.revoke_session(owner, family_id, reason=reason)


def _profile_claims(user: Any, scopes: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims |= {"preferred_username": user.username, "name": user.username}
    if "email" in scopes and user.email:
        claims |= {"email": user.email, "email_verified": bool(user.email_verified)}
    return claims
