"""TOTP second factor (RFC 6238): secrets, the enrolment URI and QR code, the secret's encryption
at rest, and the check of a code.

One algorithm, no options: SHA-1, 6 digits, 30-second steps, ±1 step of clock drift — what every
authenticator app implements (pyotp computes the codes). A code is accepted only for a step later
than the last one accepted (`last_used_step`, kept by the caller in PostgreSQL), so a code cannot
be replayed within its window. Secrets are stored encrypted with AES-GCM under the `totp` purpose
key (derive.py), bound to their user by the associated data: a ciphertext copied to another
account's row does not decrypt.
"""

from __future__ import annotations

import hmac
import io
import os
import re
import time
from uuid import UUID

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DIGITS",
    "DRIFT_STEPS",
    "STEP_SECONDS",
    "UndecryptableSecretError",
    "current_step",
    "decrypt_secret",
    "encrypt_secret",
    "matching_step",
    "new_secret",
    "otpauth_uri",
    "qr_svg",
]

DIGITS = 6
STEP_SECONDS = 30
DRIFT_STEPS = 1  # the previous and the next step are accepted too
_SECRET_BASE32_CHARS = 32  # 160 bits, RFC 4226's recommended length
_NONCE_BYTES = 12  # 96 bits, AES-GCM's standard nonce
_CODE = re.compile(r"[0-9]{6}")  # ASCII only: str.isdigit() would take "١٢٣٤٥٦"


class UndecryptableSecretError(ValueError):
    """A stored secret does not decrypt under this key for this user (wrong key, row or tampering)."""


def new_secret() -> str:
    """A fresh secret: 160 random bits, base32 without padding (what authenticator apps take)."""
    return pyotp.random_base32(_SECRET_BASE32_CHARS)


def otpauth_uri(secret: str, *, account_name: str, issuer: str) -> str:
    """The `otpauth://totp/...` URI an authenticator app reads (Google's Key URI format)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The URI as a QR code in one SVG element: no XML declaration, no width or height (it scales
    to its container, the viewBox keeps the shape), no line breaks: ready for a JSON string or
    an HTML page."""
    qr = segno.make(uri, error="m", micro=False)
    out = io.BytesIO()
    qr.save(out, kind="svg", xmldecl=False, svgns=True, omitsize=True, nl=False, border=4)
    return out.getvalue().decode()


def encrypt_secret(key: bytes, secret: str, user_id: UUID) -> bytes:
    """The secret as stored: nonce (12 bytes) || AES-GCM ciphertext and tag, the user's id as
    associated data.

    Args:
        key: the `totp` purpose key (32 bytes).
        secret: the base32 secret.
        user_id: its owner.
    """
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode(), user_id.bytes)


def decrypt_secret(key: bytes, stored: bytes, user_id: UUID) -> str:
    """The base32 secret back from `encrypt_secret`'s bytes.

    Raises:
        UndecryptableSecretError: wrong key, another user's row, or altered bytes.
    """
    if len(stored) <= _NONCE_BYTES:
        raise UndecryptableSecretError("stored TOTP secret is too short")
    try:
        plain = AESGCM(key).decrypt(stored[:_NONCE_BYTES], stored[_NONCE_BYTES:], user_id.bytes)
    except InvalidTag:
        raise UndecryptableSecretError("stored TOTP secret does not decrypt for this user") from None
    return plain.decode()


def current_step(now: float | None = None) -> int:
    """The RFC 6238 time step of `now` (Unix seconds; default: the clock)."""
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(secret: str, code: str, now: float, last_used_step: int | None) -> int | None:
    """The time step `code` is valid for, or None.

    A step within ±1 of `now`'s that is later than `last_used_step` (None: none used yet); the
    caller stores the returned step as the new `last_used_step` (atomically, so two requests with
    the same code cannot both win). Every candidate is computed and compared in constant time,
    whichever matches. Spaces are ignored ("123 456", as apps show it); anything else that is
    not six ASCII digits is refused.

    Args:
        secret: the base32 secret (decrypted).
        code: what the user typed.
        now: Unix seconds.
        last_used_step: the step of the last accepted code.
    """
    typed = code.replace(" ", "")
    if not _CODE.fullmatch(typed):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    step = current_step(now)
    matched: int | None = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if candidate < 0:
            continue
        equal = hmac.compare_digest(totp.generate_otp(candidate).encode(), typed.encode())
        fresh = last_used_step is None or candidate > last_used_step
        if equal and fresh and matched is None:
            matched = candidate
    return matched
