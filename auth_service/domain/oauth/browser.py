"""The browser's sign-in for the authorization endpoint: a minimal server-rendered `/login`
(until the hosted pages land), its second step, and the cookie that names the sign-in session.

The form logs in through the same AuthService as POST /api/v1/auth/login (the per-IP and
per-username limits, the failure floor, login records, new-device mails) and the same second
step as POST /api/v1/auth/mfa (TOTP or a recovery code here; passkeys need the hosted pages'
script). The session it opens is a refresh family like any other, so it shows in
/users/me/sessions and dies with logout everywhere, a password change or a deactivation; the
`auth_session` cookie (HttpOnly, SameSite=Lax, Secure over https) holds only its family and
user, signed with the `cookie` purpose key. Each form carries a CSRF token: the HMAC of a random
`auth_csrf` cookie, compared in constant time.

`return_to` is followed only to our own authorization endpoint: no open redirect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect

from auth_service.domain.auth.deps import provide_auth_service, provide_client, provide_second_step
from auth_service.domain.auth.mfa.step import Proof, SecondStep
from auth_service.domain.auth.service import AuthService, ClientInfo, IssuedTokens
from auth_service.lib.crypto.tokens import family_of
from auth_service.lib.errors import (
    EmailUnverified,
    InvalidCredentials,
    InvalidInput,
    MfaInvalid,
    MfaRequired,
    RateLimited,
    ServiceUnavailable,
)
from auth_service.lib.pages import page
from auth_service.settings import Settings

__all__ = ["AUTHORIZE_PATH", "SESSION_COOKIE", "BrowserCookies", "LoginPage"]

AUTHORIZE_PATH = "/oauth2/authorize"
LOGIN_PATH = "/login"
SESSION_COOKIE = "auth_session"
CSRF_COOKIE = "auth_csrf"
_MAX_RETURN_TO = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class BrowserCookies:
    """Signs and reads the sign-in cookie and the CSRF tokens with the `cookie` purpose key."""

    def __init__(self, key: bytes, *, secure: bool, max_age: int) -> None:
        self._key = key
        self.secure = secure
        self.max_age = max_age

    def _mac(self, *parts: str) -> str:
        return _b64(hmac.new(self._key, "|".join(parts).encode(), hashlib.sha256).digest())

    def session_value(self, family_id: uuid.UUID, user_id: uuid.UUID) -> str:
        return f"v1.{family_id.hex}.{user_id.hex}.{self._mac('session', family_id.hex, user_id.hex)}"

    def session_of(self, value: str | None) -> tuple[uuid.UUID, uuid.UUID] | None:
        """(family, user) of a cookie we signed, else None."""
        if not value or len(value) > 256:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != "v1":
            return None
        _, family, user, mac = parts
        if not hmac.compare_digest(mac, self._mac("session", family, user)):
            return None
        try:
            return uuid.UUID(hex=family), uuid.UUID(hex=user)
        except ValueError:
            return None

    def session_cookie(self, family_id: uuid.UUID, user_id: uuid.UUID) -> Cookie:
        return Cookie(
            key=SESSION_COOKIE,
            value=self.session_value(family_id, user_id),
            max_age=self.max_age,
            path="/",
            httponly=True,
            secure=self.secure,
            samesite="lax",
        )

    def cleared_session(self) -> Cookie:
        return Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/", httponly=True, secure=self.secure)

    def csrf(self, request: Request[Any, Any, Any]) -> tuple[str, Cookie | None]:
        """The form's CSRF token, and the cookie to set when the browser has none yet."""
        seed = request.cookies.get(CSRF_COOKIE)
        cookie = None
        if not seed or len(seed) > 64:
            seed = secrets.token_urlsafe(32)
            cookie = Cookie(key=CSRF_COOKIE, value=seed, path="/", httponly=True, secure=self.secure, samesite="strict")
        return self._mac("csrf", seed), cookie

    def csrf_ok(self, request: Request[Any, Any, Any], presented: str) -> bool:
        seed = request.cookies.get(CSRF_COOKIE)
        if not seed or not presented or len(presented) > 64:
            return False
        return hmac.compare_digest(presented, self._mac("csrf", seed))


def provide_browser_cookies(settings: NamedDependency[Settings]) -> BrowserCookies:
    return browser_cookies(settings)


def browser_cookies(settings: Settings) -> BrowserCookies:
    return BrowserCookies(
        settings.purpose_keys.key("cookie"),
        secure=settings.app.base_url.startswith("https://"),
        max_age=settings.tokens.refresh_ttl,
    )


def safe_return_to(value: str | None) -> str | None:
    """`return_to` when it is our own authorization endpoint (a path, no host), else None."""
    if not value or len(value) > _MAX_RETURN_TO or "\\" in value or any(ord(c) < 0x20 for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path != AUTHORIZE_PATH or value.startswith("//"):
        return None
    return value


def form_action(return_to: str | None) -> str:
    """The page's CSP `form-action`: ourselves, and the origin the authorization will redirect
    to (browsers apply form-action to the redirects that follow a form's POST)."""
    sources = ["'self'"]
    if return_to:
        redirect = (parse_qs(urlsplit(return_to).query).get("redirect_uri") or [""])[0]
        parts = urlsplit(redirect)
        if parts.scheme in ("http", "https") and parts.netloc and all(c not in parts.netloc for c in " ;,'\""):
            sources.append(f"{parts.scheme}://{parts.netloc}")
        elif parts.scheme and parts.scheme.replace(".", "").replace("-", "").replace("+", "").isalnum():
            sources.append(f"{parts.scheme}:")
    return " ".join(sources)


def _csp(return_to: str | None) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; form-action {form_action(return_to)}; "
            "frame-ancestors 'none'"
        )
    }


class LoginForm(msgspec.Struct):
    username: str = ""
    password: str = ""
    csrf: str = ""
    return_to: str = ""


class MfaForm(msgspec.Struct):
    mfa_token: str = ""
    code: str = ""
    recovery_code: str = ""
    csrf: str = ""
    return_to: str = ""


def _with_cookie(response: Response[Any], cookie: Cookie | None) -> Response[Any]:
    if cookie is not None:
        response.set_cookie(cookie)
    return response


class LoginPage(Controller):
    """`/login`: the sign-in form the authorization endpoint sends a browser to."""

    path = LOGIN_PATH
    include_in_schema = False
    dependencies = {
        "browser_cookies": Provide(provide_browser_cookies, sync_to_thread=False),
        "client": Provide(provide_client, sync_to_thread=False),
    }

    def _form(
        self,
        request: Request[Any, Any, Any],
        cookies: BrowserCookies,
        *,
        return_to: str | None,
        username: str = "",
        problem: str = "",
        status: int = 200,
    ) -> Response[str]:
        token, cookie = cookies.csrf(request)
        response = page(
            "login",
            status=status,
            headers=_csp(return_to),
            csrf=token,
            return_to=return_to or "",
            username=username,
            problem=problem,
        )
        return _with_cookie(response, cookie)

    @get(media_type=MediaType.HTML)
    async def show(
        self,
        request: Request[Any, Any, Any],
        browser_cookies: NamedDependency[BrowserCookies],
        return_to: Annotated[str, QueryParameter(name="return_to", max_length=_MAX_RETURN_TO)] = "",
        login_hint: Annotated[str, QueryParameter(name="login_hint", max_length=255)] = "",
    ) -> Response[str]:
        cookies = browser_cookies
        return self._form(request, cookies, return_to=safe_return_to(return_to), username=login_hint)

    @post(
        media_type=MediaType.HTML,
        status_code=200,
        opt={"rate_limit": "login"},
        dependencies={"auth": Provide(provide_auth_service)},
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        browser_cookies: NamedDependency[BrowserCookies],
        auth: NamedDependency[AuthService],
        client: NamedDependency[ClientInfo],
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        cookies = browser_cookies
        return_to = safe_return_to(data.return_to)
        if not cookies.csrf_ok(request, data.csrf):
            return self._form(request, cookies, return_to=return_to, problem="The form expired; try again.", status=403)
        try:
            issued = await auth.login(data.username[:255], data.password[:4096], client)
        except MfaRequired as exc:
            challenge = exc.mfa
            assert challenge is not None
            return self._mfa_form(request, cookies, challenge.mfa_token, challenge.methods, return_to)
        except (InvalidCredentials, InvalidInput):
            return self._form(
                request, cookies, return_to=return_to, username=data.username[:255],
                problem="Wrong username or password.", status=401,
            )  # fmt: skip
        except EmailUnverified:
            return self._form(
                request, cookies, return_to=return_to, problem="Verify your e-mail address first.", status=403
            )
        except RateLimited:
            return self._form(
                request, cookies, return_to=return_to, problem="Too many attempts; wait a minute.", status=429
            )
        except ServiceUnavailable:
            return self._form(request, cookies, return_to=return_to, problem="Try again in a moment.", status=503)
        return _signed_in(cookies, issued, return_to)

    def _mfa_form(
        self,
        request: Request[Any, Any, Any],
        cookies: BrowserCookies,
        mfa_token: str,
        methods: list[str],
        return_to: str | None,
        *,
        problem: str = "",
        status: int = 200,
    ) -> Response[str]:
        token, cookie = cookies.csrf(request)
        response = page(
            "login_mfa",
            status=status,
            headers=_csp(return_to),
            csrf=token,
            mfa_token=mfa_token,
            enroll="enroll" in methods,
            # A login whose only factor is a passkey cannot finish here (the hosted pages' script can).
            passkey_only=bool(methods) and not {"totp", "recovery_code", "enroll"} & set(methods),
            return_to=return_to or "",
            problem=problem,
        )
        return _with_cookie(response, cookie)

    @post(
        "/mfa",
        media_type=MediaType.HTML,
        status_code=200,
        dependencies={"auth": Provide(provide_auth_service), "step": Provide(provide_second_step)},
    )
    async def second_step(
        self,
        request: Request[Any, Any, Any],
        browser_cookies: NamedDependency[BrowserCookies],
        step: NamedDependency[SecondStep],
        client: NamedDependency[ClientInfo],
        data: Annotated[MfaForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        cookies = browser_cookies
        return_to = safe_return_to(data.return_to)
        if not cookies.csrf_ok(request, data.csrf):
            return self._form(request, cookies, return_to=return_to, problem="The form expired; try again.", status=403)
        try:
            code, recovery = data.code.strip()[:64], data.recovery_code.strip()[:64]
            proof = Proof.of(code or msgspec.UNSET, recovery or msgspec.UNSET)
            issued = await step.finish(data.mfa_token[:256], proof, client)
        except (MfaInvalid, InvalidInput):
            return self._mfa_form(
                request, cookies, data.mfa_token[:256], [], return_to,
                problem="That code did not work.", status=401,
            )  # fmt: skip
        except RateLimited:
            return self._form(
                request, cookies, return_to=return_to, problem="Too many attempts; wait a minute.", status=429
            )
        except ServiceUnavailable:
            return self._form(request, cookies, return_to=return_to, problem="Try again in a moment.", status=503)
        return _signed_in(cookies, issued, return_to)


def _signed_in(cookies: BrowserCookies, issued: IssuedTokens, return_to: str | None) -> Response[Any]:
    family = family_of(issued.refresh_token)
    assert family is not None
    cookie = cookies.session_cookie(uuid.UUID(hex=family), uuid.UUID(issued.user_id))
    if return_to:
        response: Response[Any] = Redirect(return_to, status_code=303)
    else:
        response = page("login_done")
    response.set_cookie(cookie)
    return response
