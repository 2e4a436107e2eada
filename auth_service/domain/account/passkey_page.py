"""A minimal page of our own at /passkeys that runs `navigator.credentials` against the API: sign
in with a password, register, list and remove passkeys, and sign in with a passkey. It stands in
until the hosted pages (/account, /login) replace it, and the browser test drives it.

No inline script: the page loads /static/passkeys.js, and its Content-Security-Policy allows
exactly that script and requests to our own origin (the API), nothing else. The tokens live in
the page's memory only (no storage, no cookie): a reload signs out.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.static_files import create_static_files_router

from auth_service.lib.pages import page

__all__ = ["PASSKEYS_PAGE_PATH", "STATIC_PATH", "PasskeysPage", "static_assets_router"]

PASSKEYS_PAGE_PATH = "/passkeys"
STATIC_PATH = "/static"
_STATIC = Path(__file__).resolve().parent.parent.parent / "static"

# The pages' policy, plus our one script and fetch() to our own origin.
_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class PasskeysPage(Controller):
    path = PASSKEYS_PAGE_PATH
    include_in_schema = False

    @get(media_type=MediaType.HTML)
    async def show(self) -> Response[str]:
        return page("passkeys", headers={"Content-Security-Policy": _CSP}, script=f"{STATIC_PATH}/passkeys.js")


def static_assets_router() -> Router:
    """The pages' own assets (auth_service/static), served by the app: no CDN."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[_STATIC],
        include_in_schema=False,
        name="static",
        cache_control=CacheControlHeader(no_cache=True),  # not fingerprinted: revalidate
    )
