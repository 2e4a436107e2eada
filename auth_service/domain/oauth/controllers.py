"""The provider's endpoints under /oauth2: authorize (and its consent page), token, userinfo,
revoke, introspect, logout. They speak OAuth's error format (domain/oauth/protocol.py), not the
service's envelope, and are not in the API document's JSON-envelope contract."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from litestar import Controller, Request, Response, get, post, route
from litestar.di import NamedDependency, Provide
from litestar.enums import HttpMethod, MediaType
from litestar.response import Redirect
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.auth.deps import provide_auth_service
from auth_service.domain.auth.service import AuthService
from auth_service.domain.auth.verify import TokenVerifier
from auth_service.domain.oauth.browser import (
    AUTHORIZE_PATH,
    LOGIN_PATH,
    SESSION_COOKIE,
    BrowserCookies,
    browser_cookies,
    form_action,
)
from auth_service.domain.oauth.clients import ClientStore, OAuthClientRow
from auth_service.domain.oauth.codes import CodeGrant, CodeStore
from auth_service.domain.oauth.protocol import (
    NO_STORE,
    OAuthError,
    client_credentials_of,
    oauth_error_response,
    scope_list,
    single,
    valid_challenge,
)
from auth_service.domain.oauth.provider import GRANTS, Provider
from auth_service.domain.oauth.store import BrowserSession, OAuthStore
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.sessions.service import SessionService
from auth_service.lib.audit import Actor
from auth_service.lib.crypto.tokens import TokenService
from auth_service.lib.errors import RateLimited, ServiceUnavailable, TokenExpired, TokenInvalid, TokenRevoked
from auth_service.lib.keyring import KeyRing
from auth_service.lib.pages import page
from auth_service.settings import Settings
from observability import metrics

__all__ = ["OAuthController"]

log = structlog.get_logger()

_SCOPE_WORDS = {
    "openid": "Know who you are (your account's id)",
    "profile": "See your username",
    "email": "See your e-mail address",
    "offline_access": "Stay signed in when you are away (a refresh token)",
}
_CONSENT_TTL = 600


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2.1)."""

    client: OAuthClientRow
    redirect_uri: str
    scopes: list[str]
    state: str
    nonce: str | None
    code_challenge: str
    prompt: frozenset[str]
    max_age: int | None
    login_hint: str | None
    login_after: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.code_challenge,
        }


async def provide_provider(
    db_session: NamedDependency[AsyncSession],
    auth: NamedDependency[AuthService],
    tokens: NamedDependency[TokenService],
    keyring: NamedDependency[KeyRing],
    verifier: NamedDependency[TokenVerifier],
    revocation: NamedDependency[RevocationStore],
    redis: NamedDependency[Redis],
    settings: NamedDependency[Settings],
    actor: NamedDependency[Actor],
) -> Provider:
    return Provider(
        store=OAuthStore(db_session),
        clients=ClientStore(db_session, revocation, redis),
        codes=CodeStore(redis, settings.redis.key_prefix),
        auth=auth,
        sessions=SessionService(db_session, revocation, actor),
        tokens=tokens,
        keyring=keyring,
        verifier=verifier,
        revocation=revocation,
        issuer=settings.app.base_url,
        refresh_ttl=settings.tokens.refresh_ttl,
    )


def provide_cookies(settings: NamedDependency[Settings]) -> BrowserCookies:
    return browser_cookies(settings)


def _with_query(uri: str, params: dict[str, str]) -> str:
    joiner = "&" if urlsplit(uri).query else "?"
    return f"{uri}{joiner}{urlencode(params)}"


def _error_page(error: str, description: str, status: int = 400) -> Response[str]:
    metrics.oauth_authorizations.add(1, {"outcome": "error"})
    return page("oauth_error", status=status, error=error, description=description)


def _sign(key: bytes, payload: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
    mac = hmac.new(key, f"consent|{body}".encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _unsign(key: bytes, value: str) -> dict[str, Any] | None:
    body, _, mac = value.rpartition(".")
    if not body or len(value) > 8192:
        return None
    if not hmac.compare_digest(mac, hmac.new(key, f"consent|{body}".encode(), hashlib.sha256).hexdigest()):
        return None
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data if data.get("exp", 0) > time.time() else None


class OAuthController(Controller):
    path = "/oauth2"
    include_in_schema = False
    dependencies = {
        "auth": Provide(provide_auth_service),
        "provider": Provide(provide_provider),
        "browser_cookies": Provide(provide_cookies, sync_to_thread=False),
    }

    # ---- authorize --------------------------------------------------------------------------

    @get("/authorize", media_type=MediaType.HTML)
    async def authorize(
        self,
        request: Request[Any, Any, Any],
        provider: NamedDependency[Provider],
        browser_cookies: NamedDependency[BrowserCookies],
    ) -> Response[Any]:
        cookies = browser_cookies
        params = {k: request.query_params.getall(k) for k in request.query_params}
        try:
            client_id = single(params, "client_id")
            redirect_uri = single(params, "redirect_uri")
        except OAuthError as exc:
            return _error_page(exc.error, exc.description)
        client = await provider.clients.get(client_id) if client_id else None
        if client is None:
            return _error_page("invalid_client", "The application is not registered (unknown client_id).")
        if not redirect_uri or not client.allows_redirect_uri(redirect_uri):
            # Never redirect to a URI we did not match (RFC 9700 §4.1): a page says so instead.
            return _error_page("invalid_request", "The redirect_uri is not one the application registered.")
        state = (params.get("state") or [None])[0]
        try:
            authz = self._validate(client, redirect_uri, params)
        except OAuthError as exc:
            return self._redirect_error(provider, redirect_uri, exc, state)
        browser = await self._browser_session(request, provider, cookies)
        needed_after = authz.login_after
        if authz.max_age is not None:
            needed_after = max(needed_after, int(time.time()) - authz.max_age)
        if "login" in authz.prompt:
            needed_after = max(needed_after, int(time.time()))
        if browser is None or int(browser.auth_time.timestamp()) < needed_after:
            if "none" in authz.prompt:
                return self._redirect_error(
                    provider, redirect_uri, OAuthError("login_required", "Sign-in needed"), state
                )
            metrics.oauth_authorizations.add(1, {"outcome": "login"})
            return self._to_login(request, authz)
        if not client.first_party:
            granted = await provider.store.consented(browser.user_id, client.client_id)
            if "consent" in authz.prompt or not set(authz.scopes) <= granted:
                if "none" in authz.prompt:
                    error = OAuthError("consent_required", "The user has not granted these scopes")
                    return self._redirect_error(provider, redirect_uri, error, state)
                metrics.oauth_authorizations.add(1, {"outcome": "consent"})
                return self._consent_page(request, cookies, authz, browser)
        return await self._issue_code(request, provider, authz, browser)

    def _validate(
        self, client: OAuthClientRow, redirect_uri: str, params: dict[str, list[str]]
    ) -> AuthorizationRequest:
        for name in ("request", "request_uri"):
            if params.get(name):
                raise OAuthError(f"{name}_not_supported", f"{name} is not supported")
        response_type = single(params, "response_type")
        if response_type != "code":
            raise OAuthError("unsupported_response_type", "Only response_type=code is supported")
        if not client.allows_grant("authorization_code"):
            raise OAuthError("unauthorized_client", "The application may not use the authorization code flow")
        state = single(params, "state")
        if not state:
            raise OAuthError("invalid_request", "state is required")
        challenge, method = single(params, "code_challenge"), single(params, "code_challenge_method")
        if not challenge or method != "S256":
            raise OAuthError("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
        if not valid_challenge(challenge):
            raise OAuthError("invalid_request", "code_challenge is malformed")
        scopes = scope_list(single(params, "scope"))
        if not scopes or not set(scopes) <= set(client.scopes):
            raise OAuthError("invalid_scope", "The application may not ask for that scope")
        prompt = frozenset((single(params, "prompt") or "").split())
        if not prompt <= {"none", "login", "consent", "select_account"} or ("none" in prompt and len(prompt) > 1):
            raise OAuthError("invalid_request", "prompt is malformed")
        max_age_text = single(params, "max_age")
        max_age = None
        if max_age_text is not None:
            if not max_age_text.isdigit() or len(max_age_text) > 9:
                raise OAuthError("invalid_request", "max_age must be a whole number of seconds")
            max_age = int(max_age_text)
        login_after_text = single(params, "login_after") or "0"
        login_after = int(login_after_text) if login_after_text.isdigit() and len(login_after_text) < 12 else 0
        nonce = single(params, "nonce")
        return AuthorizationRequest(
            client=client,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            prompt=prompt,
            max_age=max_age,
            login_hint=single(params, "login_hint"),
            login_after=login_after,
        )

    def _redirect_error(
        self, provider: Provider, redirect_uri: str, exc: OAuthError, state: str | None
    ) -> Response[Any]:
        metrics.oauth_authorizations.add(1, {"outcome": "denied" if exc.error == "access_denied" else "error"})
        params = {"error": exc.error, "error_description": exc.description, "iss": provider.issuer}
        if state:
            params["state"] = state
        return Redirect(_with_query(redirect_uri, params), status_code=302, headers=NO_STORE)

    async def _browser_session(
        self, request: Request[Any, Any, Any], provider: Provider, cookies: BrowserCookies
    ) -> BrowserSession | None:
        named = cookies.session_of(request.cookies.get(SESSION_COOKIE))
        if named is None:
            return None
        return await provider.store.browser_session(*named)

    def _to_login(self, request: Request[Any, Any, Any], authz: AuthorizationRequest) -> Response[Any]:
        params = [(k, v) for k in request.query_params for v in request.query_params.getall(k)]
        kept = [(k, v) for k, v in params if k not in ("prompt", "login_after", "max_age")]
        if "none" in authz.prompt:
            kept.append(("prompt", "none"))
        kept.append(("login_after", str(int(time.time()))))
        return_to = f"{AUTHORIZE_PATH}?{urlencode(kept)}"
        query = {"return_to": return_to} | ({"login_hint": authz.login_hint} if authz.login_hint else {})
        return Redirect(f"{LOGIN_PATH}?{urlencode(query)}", status_code=302, headers=NO_STORE)

    def _consent_page(
        self,
        request: Request[Any, Any, Any],
        cookies: BrowserCookies,
        authz: AuthorizationRequest,
        browser: BrowserSession,
    ) -> Response[Any]:
        settings: Settings = request.app.state.resources.settings
        key = settings.purpose_keys.key("cookie")
        signed = _sign(
            key, {**authz.to_dict(), "user_id": str(browser.user_id), "exp": int(time.time()) + _CONSENT_TTL}
        )
        token, cookie = cookies.csrf(request)
        response = page(
            "consent",
            headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                f"form-action {form_action('/?' + urlencode({'redirect_uri': authz.redirect_uri}))}; "
                "frame-ancestors 'none'"
            },
            client_name=authz.client.name,
            scopes=[_SCOPE_WORDS.get(s, s) for s in authz.scopes],
            username=browser.username,
            csrf=token,
            request=signed,
        )
        if cookie is not None:
            response.set_cookie(cookie)
        return response

    async def _issue_code(
        self,
        request: Request[Any, Any, Any],
        provider: Provider,
        authz: AuthorizationRequest | dict[str, Any],
        browser: BrowserSession,
    ) -> Response[Any]:
        data = authz.to_dict() if isinstance(authz, AuthorizationRequest) else authz
        resources = request.app.state.resources
        grant = CodeGrant(
            client_id=data["client_id"],
            redirect_uri=data["redirect_uri"],
            code_challenge=data["code_challenge"],
            user_id=str(browser.user_id),
            browser_session=str(browser.family_id),
            scope=data["scope"],
            nonce=data["nonce"],
            auth_time=int(browser.auth_time.timestamp()),
            amr=browser.amr,
            tokens_valid_after=browser.tokens_valid_after.isoformat() if browser.tokens_valid_after else None,
            ip=resources.authenticator.request_ip(request),
            user_agent=(request.headers.get("user-agent") or "")[:512] or None,
        )
        code = await provider.codes.issue(grant)
        metrics.oauth_authorizations.add(1, {"outcome": "code"})
        params = {"code": code, "state": data["state"], "iss": provider.issuer}
        return Redirect(_with_query(data["redirect_uri"], params), status_code=302, headers=NO_STORE)

    @post("/consent", media_type=MediaType.HTML, status_code=200)
    async def consent(
        self,
        request: Request[Any, Any, Any],
        provider: NamedDependency[Provider],
        browser_cookies: NamedDependency[BrowserCookies],
    ) -> Response[Any]:
        cookies = browser_cookies
        form = await request.form()
        settings: Settings = request.app.state.resources.settings
        data = _unsign(settings.purpose_keys.key("cookie"), str(form.get("request") or ""))
        if data is None or not cookies.csrf_ok(request, str(form.get("csrf") or "")):
            return _error_page("invalid_request", "The consent form expired; start again from the application.")
        browser = await self._browser_session(request, provider, cookies)
        if browser is None or str(browser.user_id) != data["user_id"]:
            return _error_page("login_required", "You are no longer signed in; start again from the application.")
        client = await provider.clients.get(data["client_id"])
        if client is None or not client.allows_redirect_uri(data["redirect_uri"]):
            return _error_page("invalid_client", "The application is no longer registered.")
        if form.get("decision") != "allow":
            error = OAuthError("access_denied", "The user denied the request")
            return self._redirect_error(provider, data["redirect_uri"], error, data["state"])
        scopes = data["scope"].split(" ")
        await provider.store.consent(browser.user_id, client.client_id, scopes)
        await provider.store.commit()
        return await self._issue_code(request, provider, data, browser)

    # ---- token ------------------------------------------------------------------------------

    @post("/token", status_code=200, opt={"rate_limit": "refresh"})
    async def token(self, request: Request[Any, Any, Any], provider: NamedDependency[Provider]) -> Response[Any]:
        grant_type = "other"
        try:
            form = await _form(request)
            grant_type_given = single(form, "grant_type")
            grant_type = grant_type_given if grant_type_given in GRANTS else "other"
            flat = {k: v[0] for k, v in form.items() if len(v) == 1}
            client_id, secret, method = client_credentials_of(request, flat)
            client = await provider.authenticate_client(client_id, secret, method)
            if grant_type_given not in GRANTS:
                raise OAuthError("unsupported_grant_type", "grant_type is missing or not supported")
            if not client.allows_grant(grant_type_given):
                raise OAuthError("unauthorized_client", f"The client may not use {grant_type_given}")
            resources = request.app.state.resources
            ip = resources.authenticator.request_ip(request)
            if grant_type_given != "refresh_token":
                # The refresh grant has its limits (per session, per IP); the others the public one.
                await resources.limits.public(ip, "/oauth2/token")
            if grant_type_given == "authorization_code":
                answer = await provider.exchange_code(
                    client, single(form, "code"), single(form, "redirect_uri"), single(form, "code_verifier")
                )
            elif grant_type_given == "refresh_token":
                answer = await provider.refresh(client, single(form, "refresh_token"), single(form, "scope"), ip)
            else:
                answer = provider.client_credentials(client, single(form, "scope"))
        except OAuthError as exc:
            outcome = exc.error if exc.error in metrics.OAUTH_GRANT_OUTCOMES else "invalid_request"
            metrics.oauth_token_grants.add(1, {"grant_type": grant_type, "outcome": outcome})
            return oauth_error_response(exc)
        except ServiceUnavailable:
            metrics.oauth_token_grants.add(1, {"grant_type": grant_type, "outcome": "temporarily_unavailable"})
            return oauth_error_response(OAuthError("temporarily_unavailable", "Retry shortly", status=503))
        except RateLimited:
            metrics.oauth_token_grants.add(1, {"grant_type": grant_type, "outcome": "invalid_request"})
            return oauth_error_response(OAuthError("invalid_request", "Too many requests; retry later", status=429))
        metrics.oauth_token_grants.add(1, {"grant_type": grant_type, "outcome": "ok"})
        return Response(answer.as_dict(), headers=NO_STORE)

    # ---- userinfo ---------------------------------------------------------------------------

    @route("/userinfo", http_method=[HttpMethod.GET, HttpMethod.POST], status_code=200)
    async def userinfo(self, request: Request[Any, Any, Any], provider: NamedDependency[Provider]) -> Response[Any]:
        headers = request.headers.getall("authorization", [])
        scheme, _, token = (headers[0] if len(headers) == 1 else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _bearer_error("invalid_request", "A Bearer access token is required", 401)
        ip = request.app.state.resources.authenticator.request_ip(request)
        try:
            claims = await provider.userinfo(token.strip(), ip)
        except (TokenInvalid, TokenExpired, TokenRevoked):
            return _bearer_error("invalid_token", "The access token is invalid, expired or revoked", 401)
        except OAuthError as exc:
            return _bearer_error(exc.error, exc.description, exc.status)
        except RateLimited:
            return _bearer_error("invalid_request", "Too many requests", 429)
        return Response(claims, headers=NO_STORE)

    # ---- revoke, introspect -----------------------------------------------------------------

    @post("/revoke", status_code=200)
    async def revoke(self, request: Request[Any, Any, Any], provider: NamedDependency[Provider]) -> Response[Any]:
        try:
            form = await _form(request)
            flat = {k: v[0] for k, v in form.items() if len(v) == 1}
            client = await provider.authenticate_client(*client_credentials_of(request, flat))
            await provider.revoke(client, single(form, "token"))
        except OAuthError as exc:
            return oauth_error_response(exc)
        except ServiceUnavailable:
            return oauth_error_response(OAuthError("temporarily_unavailable", "Retry shortly", status=503))
        return Response(b"", headers=NO_STORE)

    @post("/introspect", status_code=200)
    async def introspect(self, request: Request[Any, Any, Any], provider: NamedDependency[Provider]) -> Response[Any]:
        try:
            form = await _form(request)
            flat = {k: v[0] for k, v in form.items() if len(v) == 1}
            client_id, secret, method = client_credentials_of(request, flat)
            if method == "none":
                raise OAuthError("invalid_client", "Introspection needs a client that authenticates", status=401)
            client = await provider.authenticate_client(client_id, secret, method)
            ip = request.app.state.resources.authenticator.request_ip(request)
            answer = await provider.introspect(client, single(form, "token"), ip)
        except OAuthError as exc:
            if exc.error == "invalid_client":
                metrics.oauth_introspections.add(1, {"outcome": "invalid_client"})
            return oauth_error_response(exc)
        except RateLimited:
            return oauth_error_response(OAuthError("invalid_request", "Too many requests; retry later", status=429))
        except ServiceUnavailable:
            return oauth_error_response(OAuthError("temporarily_unavailable", "Retry shortly", status=503))
        metrics.oauth_introspections.add(1, {"outcome": "active" if answer["active"] else "inactive"})
        return Response(answer, headers=NO_STORE)

    # ---- logout -----------------------------------------------------------------------------

    @route("/logout", http_method=[HttpMethod.GET, HttpMethod.POST], media_type=MediaType.HTML, status_code=200)
    async def logout(
        self,
        request: Request[Any, Any, Any],
        provider: NamedDependency[Provider],
        browser_cookies: NamedDependency[BrowserCookies],
        keyring: NamedDependency[KeyRing],
    ) -> Response[Any]:
        cookies = browser_cookies
        params: dict[str, list[str]] = {k: request.query_params.getall(k) for k in request.query_params}
        if request.method == "POST":
            params |= await _form(request)
        try:
            hint = single(params, "id_token_hint")
            client_id = single(params, "client_id")
            post_logout = single(params, "post_logout_redirect_uri")
            state = single(params, "state")
        except OAuthError as exc:
            return _error_page(exc.error, exc.description)
        hinted = _id_token_claims(hint, keyring, provider.issuer) if hint else None
        if hint and hinted is None:
            return _error_page("invalid_request", "The id_token_hint is not one of our ID tokens.")
        audience = hinted.get("aud") if hinted else None
        if client_id and audience and client_id != audience:
            return _error_page("invalid_request", "client_id differs from the id_token_hint's audience.")
        client_id = client_id or (audience if isinstance(audience, str) else None)
        client = await provider.clients.get(client_id) if client_id else None
        if post_logout and (client is None or not client.allows_post_logout_redirect_uri(post_logout)):
            return _error_page("invalid_request", "The post_logout_redirect_uri is not one the application registered.")
        if hinted is None and request.method == "GET":
            # No proof the application asked: the user confirms (a forged link cannot sign anyone out).
            token, cookie = cookies.csrf(request)
            response = page("logout_confirm", csrf=token, params=urlencode({k: v[0] for k, v in params.items() if v}))
            if cookie is not None:
                response.set_cookie(cookie)
            return response
        if hinted is None and not cookies.csrf_ok(request, (params.get("csrf") or [""])[0]):
            return _error_page("invalid_request", "The sign-out form expired; try again.")
        browser = await self._browser_session(request, provider, cookies)
        ended: set[uuid.UUID] = set()
        if browser is not None:
            await provider.end_session(browser.user_id, browser.family_id, "oauth_logout")
            ended.add(browser.family_id)
        if hinted is not None:
            try:
                family, user = uuid.UUID(str(hinted.get("sid"))), uuid.UUID(str(hinted.get("sub")))
            except ValueError:
                pass
            else:
                if family not in ended and (browser is None or browser.user_id == user):
                    await provider.end_session(user, family, "oauth_logout")
        log.info("oauth.logout", client_id=client_id, sessions=len(ended) + (1 if hinted else 0))
        done: Response[Any]
        if post_logout:
            target = _with_query(post_logout, {"state": state}) if state else post_logout
            done = Redirect(target, status_code=302, headers=NO_STORE)
        else:
            done = page("logged_out")
        done.set_cookie(cookies.cleared_session())
        return done


def _bearer_error(error: str, description: str, status: int) -> Response[Any]:
    challenge = f'Bearer error="{error}", error_description="{description}"'
    return Response(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, "WWW-Authenticate": challenge},
    )


async def _form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "The body must be application/x-www-form-urlencoded")
    try:
        form = await request.form()
    except Exception:  # a body that does not decode
        raise OAuthError("invalid_request", "The body is malformed") from None
    return {k: [str(v) for v in form.getall(k)] for k in form}


def _id_token_claims(token: str, keyring: KeyRing, issuer: str) -> dict[str, Any] | None:
    """The claims of an ID token we signed with a published key (expired ones too: RP-initiated
    logout sends old ones), else None."""
    try:
        header_segment = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
        if not isinstance(header, dict):
            return None
        key = keyring.verifying(str(header.get("kid")))
        if key is None or key.public is None or header.get("alg") != key.algorithm:
            return None
        decoded = jwt.decode(token, key.public, algorithms=[key.algorithm])
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    claims = dict(decoded.claims)
    return claims if claims.get("iss") == issuer else None
