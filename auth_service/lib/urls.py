"""Every public URL the service hands out (in e-mails, pages, redirects), built in one place
from PUBLIC_BASE_URL, and the paths the routes that answer them are mounted on."""

from __future__ import annotations

__all__ = ["NOT_ME_PATH", "RESET_PASSWORD_PATH", "VERIFY_EMAIL_PATH", "PublicUrls"]

NOT_ME_PATH = "/api/v1/auth/not-me"
RESET_PASSWORD_PATH = "/reset-password"  # the hosted page a reset mail links to
VERIFY_EMAIL_PATH = "/verify-email"  # the hosted page a verification mail links to


class PublicUrls:
    """URLs under the service's external base (PUBLIC_BASE_URL)."""

    __slots__ = ("_base",)

    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/")

    def reset_password(self, token: str | None = None) -> str:
        """The hosted reset page; with a token (hex and base64url: URL-safe), its link."""
        return f"{self._base}{RESET_PASSWORD_PATH}" + (f"?token={token}" if token else "")

    def verify_email(self, token: str) -> str:
        return f"{self._base}{VERIFY_EMAIL_PATH}?token={token}"

    def not_me(self, token: str) -> str:
        """The "This wasn't me" page for a signed link token (URL-safe by construction: links.py)."""
        return f"{self._base}{NOT_ME_PATH}?token={token}"
