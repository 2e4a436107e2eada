"""Signed, expiring links for e-mails ("this wasn't me"). Single use is enforced by the caller."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from uuid import UUID

__all__ = ["TOKEN_MAX_LENGTH", "TOKEN_MIN_LENGTH", "TOKEN_PATTERN", "LinkSigner", "SignedLink"]


@dataclass(frozen=True, slots=True)
class SignedLink:
    notification_id: UUID
    user_id: UUID
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(notification_id: UUID, user_id: UUID, expires: int) -> str:
    return _b64(json.dumps({"n": str(notification_id), "u": str(user_id), "e": expires}).encode())


# What a token looks like, for the API document (pages.py): base64url(payload) "." base64url(MAC),
# measured on the format itself. The payload's length depends only on the expiry's digits: 10
# (2001-2286) or 11.
_NIL = UUID(int=0)
_PAYLOAD_LENGTHS = [len(_payload(_NIL, _NIL, 10**digits)) for digits in (9, 10)]
_MAC_LENGTH = len(_b64(bytes(hashlib.sha256().digest_size)))
TOKEN_PATTERN = rf"^[A-Za-z0-9_-]{{{_PAYLOAD_LENGTHS[0]},{_PAYLOAD_LENGTHS[1]}}}\.[A-Za-z0-9_-]{{{_MAC_LENGTH}}}$"
TOKEN_MIN_LENGTH = _PAYLOAD_LENGTHS[0] + 1 + _MAC_LENGTH
TOKEN_MAX_LENGTH = _PAYLOAD_LENGTHS[1] + 1 + _MAC_LENGTH


class LinkSigner:
    """HMAC-SHA256 over a small JSON payload.

    Args:
        key: the `not-me-link` purpose key (derive.py).
        ttl_seconds: how long a link stays usable.
    """

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self._ttl = ttl_seconds

    def sign(self, notification_id: UUID, user_id: UUID, now: float | None = None) -> str:
        payload = _payload(notification_id, user_id, int((now or time.time()) + self._ttl))
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float | None = None) -> SignedLink | None:
        """The link's content, or None when forged, malformed or expired."""
        payload, _, mac = token.partition(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
                return None
            data = json.loads(_unb64(payload))
            link = SignedLink(UUID(data["n"]), UUID(data["u"]), int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return link if link.expires_at > (now or time.time()) else None

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
