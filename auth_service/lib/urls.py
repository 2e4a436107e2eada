"""Every public URL the service hands out (in e-mails, pages, redirects), built in one place
from PUBLIC_BASE_URL, and the paths the routes that answer them are mounted on."""

from __future__ import annotations

__all__ = ["NOT_ME_PATH", "PublicUrls"]

NOT_ME_PATH = "/api/v1/auth/not-me"


class PublicUrls:
    """URLs under the service's external base (PUBLIC_BASE_URL)."""

    __slots__ = ("_base",)

    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/")

    def not_me(self, token: str) -> str:
        """The "This wasn't me" page for a signed link token (URL-safe by construction: links.py)."""
        return f"{self._base}{NOT_ME_PATH}?token={token}"
