""" "This wasn't me": the page linked from login e-mails.

GET shows the page and changes nothing (mail scanners open links); the form's POST
revokes every session of the user, once. These answer HTML for people, not the JSON
envelope for API clients.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType, RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import Body, QueryParameter

from auth_service.auth.deps import provide_auth_service
from auth_service.auth.services import AuthService
from auth_service.openapi import error_responses

__all__ = ["NotMeController", "NotMeForm"]

_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_TOKEN = Annotated[str, msgspec.Meta(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9_.=-]+$")]


class NotMeForm(msgspec.Struct):
    token: _TOKEN


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head>
<body><h1>{html.escape(title)}</h1>{body}</body></html>"""
    return Response(document, status_code=status, media_type=MediaType.HTML, headers=_HEADERS)


_INVALID = ("This link is not valid", "<p>The link is malformed or has expired. Nothing was changed.</p>")


def _invalid_link(_: Request[Any, Any, Any], __: ValidationException) -> Response[str]:
    """A person who followed a mangled link gets the page, not the API's JSON envelope."""
    return _page(*_INVALID, status=400)


def _html(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=str, media_type=MediaType.HTML, description=description, generate_examples=False)


_BAD_LINK = {400: _html("The link is malformed, forged or expired (HTML page); nothing was changed")}


class NotMeController(Controller):
    path = "/api/v1/auth/not-me"
    tags = ["auth"]
    include_in_schema = True
    exception_handlers = {ValidationException: _invalid_link}

    @get(
        summary='"This wasn\'t me" page',
        description="Shows the confirmation form (HTML; a 400 page for a bad or expired link). Changes nothing.",
        media_type=MediaType.HTML,
        responses={**error_responses(429), **_BAD_LINK},
    )
    async def show(
        self, state: State, token: Annotated[str, QueryParameter(name="token", max_length=1024)]
    ) -> Response[str]:
        link = state.resources.links.verify(token)
        if link is None:
            return _page(*_INVALID, status=400)
        return _page(
            "Wasn't you?",
            "<p>If you did not sign in recently, secure your account: this signs you out everywhere, "
            "revoking every session and token.</p>"
            f'<form method="post"><input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
            '<button type="submit">Sign me out everywhere</button></form>',
        )

    @post(
        summary='Revoke every session ("this wasn\'t me")',
        description="Single use. Revokes every refresh family and live access token of the link's user.",
        dependencies={"auth": Provide(provide_auth_service)},
        status_code=200,
        media_type=MediaType.HTML,
        responses={
            **error_responses(413, 429, 503),
            **_BAD_LINK,
            410: _html("The link was used before (HTML page); nothing more was changed"),
        },
    )
    async def confirm(
        self,
        state: State,
        auth: NamedDependency[AuthService],
        data: Annotated[NotMeForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[str]:
        link = state.resources.links.verify(data.token)
        if link is None:
            return _page(*_INVALID, status=400)
        if not await auth.disavow(link):
            return _page("Link already used", "<p>This link was used before; nothing more was changed.</p>", status=410)
        return _page(
            "You are signed out everywhere",
            "<p>Every session and token of your account was revoked. "
            "<strong>Change your password now</strong>, and sign in again.</p>",
        )
