"""Tokens of the account links in e-mails (password reset; later e-mail verification and
invitations): random ids made unguessable by an HMAC, stored only as a SHA-256.

A token is `<id as 32 hex digits>.<base64url HMAC-SHA256 of purpose and id>`. The key is the
`account-link` purpose key (derive.py), shared by the API and the worker, so the worker that mails
a link can rebuild its token from the id alone: no raw token is ever stored, in the outbox or
anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from uuid import UUID

__all__ = ["TOKEN_MAX_LENGTH", "TOKEN_PATTERN", "AccountLinks", "token_hash"]

TOKEN_PATTERN = r"^[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$(?!\n)"
TOKEN_MAX_LENGTH = 76
_SHAPE = re.compile(r"[0-9a-f]{32}\.[A-Za-z0-9_-]{43}")


def token_hash(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class AccountLinks:
    """Makes and checks account-link tokens for one purpose each (`reset`, `verify`, `invite`)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def token(self, token_id: UUID, purpose: str) -> str:
        return f"{token_id.hex}.{self._mac(token_id.hex, purpose)}"

    def parse(self, token: str, purpose: str) -> UUID | None:
        """The token's id when it is one of ours for `purpose` (its row decides if it is live)."""
        if not isinstance(token, str) or not _SHAPE.fullmatch(token):
            return None
        hex_id, _, mac = token.partition(".")
        if not hmac.compare_digest(mac, self._mac(hex_id, purpose)):
            return None
        return UUID(hex=hex_id)

    def _mac(self, hex_id: str, purpose: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{hex_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
