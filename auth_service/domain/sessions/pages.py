""" "This wasn't me": the page linked from login e-mails.

GET shows the page and changes nothing (mail scanners open links); the form's POST
revokes every session of the user, once. These answer HTML for people, not the JSON
envelope for API clients.

The document describes the token exactly (links.py's format): one that does not fit it is a
malformed request (400); one that fits but carries no valid signature, or has expired, is a
well-formed request refused (403).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType, RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import Body, QueryParameter

from auth_service.domain.sessions.deps import provide_session_service
from auth_service.domain.sessions.service import SessionService
from auth_service.lib.crypto.links import TOKEN_MAX_LENGTH, TOKEN_MIN_LENGTH, TOKEN_PATTERN, LinkSigner
from auth_service.lib.http import error_responses
from auth_service.lib.pages import page
from auth_service.lib.urls import NOT_ME_PATH

__all__ = ["NotMeController", "NotMeForm"]

_TOKEN_TEXT = "The signed link token from the e-mail: base64url payload, a dot, base64url HMAC-SHA256."
_TOKEN = Annotated[
    str,
    msgspec.Meta(
        min_length=TOKEN_MIN_LENGTH, max_length=TOKEN_MAX_LENGTH, pattern=TOKEN_PATTERN, description=_TOKEN_TEXT
    ),
]


class NotMeForm(msgspec.Struct):
    token: _TOKEN


def _invalid_link(_: Request[Any, Any, Any], __: ValidationException) -> Response[str]:
    """A person who followed a mangled link gets the page, not the API's JSON envelope."""
    return page("not_me_invalid", status=400)


def _html(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=str, media_type=MediaType.HTML, description=description, generate_examples=False)


_BAD_LINK = {
    400: _html("The token is missing or not in the link format (HTML page); nothing was changed"),
    403: _html("The link is forged or expired (HTML page); nothing was changed"),
}


class NotMeController(Controller):
    path = NOT_ME_PATH
    tags = ["auth"]
    include_in_schema = True
    exception_handlers = {ValidationException: _invalid_link}

    @get(
        summary='"This wasn\'t me" page',
        description="Shows the confirmation form (HTML; a 403 page for a forged or expired link). Changes nothing.",
        media_type=MediaType.HTML,
        responses={**error_responses(429), **_BAD_LINK},
    )
    async def show(
        self,
        links: NamedDependency[LinkSigner],
        token: Annotated[
            str,
            QueryParameter(
                name="token",
                min_length=TOKEN_MIN_LENGTH,
                max_length=TOKEN_MAX_LENGTH,
                pattern=TOKEN_PATTERN,
                description=_TOKEN_TEXT,
            ),
        ],
    ) -> Response[str]:
        link = links.verify(token)
        if link is None:
            return page("not_me_invalid", status=403)
        return page("not_me_confirm", token=token)

    @post(
        summary='Revoke every session ("this wasn\'t me")',
        description="Single use. Revokes every refresh family and live access token of the link's user.",
        dependencies={"sessions": Provide(provide_session_service)},
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
        links: NamedDependency[LinkSigner],
        sessions: NamedDependency[SessionService],
        data: Annotated[NotMeForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[str]:
        link = links.verify(data.token)
        if link is None:
            return page("not_me_invalid", status=403)
        if not await sessions.disavow(link):
            return page("not_me_used", status=410)
        return page("not_me_done")
