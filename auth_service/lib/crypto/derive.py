"""Purpose keys: every secret that is not a signing key, derived from one master secret.

HKDF-SHA256 (RFC 5869) over `SECRET_KEY` with the purpose as the `info` label, so each purpose
has its own key, none is the master, and none depends on the signing key: rotating the JWT key
(or, later, the managed signing keys) breaks no refresh grace, no e-mailed link and no stored
ciphertext. One purpose, one key; a new purpose is a new label here, nothing else.

An install that has only `JWT_SECRET_KEY` (no `SECRET_KEY`) keeps working: the three purposes it
had derive exactly as before (an HMAC of the signing material with their old labels), so refresh
tokens and links issued before the upgrade stay valid after it; purposes that are new derive by
HKDF from the signing material until `SECRET_KEY` is set. Setting `SECRET_KEY` later moves every
purpose to it once (links and refresh graces of that moment end, as with any key change).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal, get_args

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["PURPOSES", "Purpose", "PurposeKeys"]

Purpose = Literal[
    "refresh-successor",
    "account-link",
    "not-me-link",
    "database-service-password",
    "totp",
    "signing-key-wrap",
    "cookie",
    "recovery-code",
]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)
_INFO_PREFIX = b"auth-service/v1/"
# How these three were keyed before purpose keys (HMAC-SHA256 of the signing material).
_LEGACY_LABELS: dict[str, bytes] = {
    "refresh-successor": b"refresh-rotation",
    "account-link": b"account-link-v1",
    "not-me-link": b"email-link-v1",
    "database-service-password": b"database-service-password",
}


class PurposeKeys:
    """32-byte keys by purpose.

    Args:
        master: SECRET_KEY's bytes, or None for an install that has none yet.
        signing_material: the JWT secret (or private key bytes): the legacy source.
    """

    def __init__(self, master: bytes | None, signing_material: bytes) -> None:
        self._master = master
        self._legacy = signing_material
        self._keys: dict[str, bytes] = {}

    @property
    def from_master(self) -> bool:
        return self._master is not None

    def key(self, purpose: Purpose) -> bytes:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {purpose!r}")
        if purpose not in self._keys:
            self._keys[purpose] = self._derive(purpose)
        return self._keys[purpose]

    def _derive(self, purpose: Purpose) -> bytes:
        if self._master is None and purpose in _LEGACY_LABELS:
            return hmac.new(self._legacy, _LEGACY_LABELS[purpose], hashlib.sha256).digest()
        source = self._master if self._master is not None else self._legacy
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO_PREFIX + purpose.encode()).derive(
            source
        )
