"""Recovery codes: ten single-use codes shown once at TOTP enrolment, stored only as HMACs.

A code is 10 characters of Crockford's base32 alphabet (digits and lowercase letters without
i, l, o, u), 50 random bits, shown as `xxxx-xxxx-xx`. What the user types is normalised before
hashing: case, spaces and dashes are ignored, and the letters Crockford reads as digits (o as 0;
i and l as 1) are read so, so a code copied by hand still matches. 50 bits of a key-bound
HMAC-SHA256 (the `recovery-code` purpose key) cannot be searched offline from a database dump,
and a fast hash is enough for random codes (no password stretching needed). The user's id is
in the MAC: a row copied to another account matches nothing there.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from uuid import UUID

__all__ = [
    "ALPHABET",
    "CODE_COUNT",
    "CODE_LENGTH",
    "generate_codes",
    "hash_code",
    "lookup_hash",
    "matching_hash",
    "normalize_code",
]

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lowercase: 5 bits a character
CODE_COUNT = 10
CODE_LENGTH = 10  # 50 bits
_GROUPS = (4, 4, 2)  # xxxx-xxxx-xx
_READ_AS = str.maketrans({"o": "0", "i": "1", "l": "1"})
_IGNORED = str.maketrans("", "", " -\t")
_ALLOWED = frozenset(ALPHABET)


def generate_codes(count: int = CODE_COUNT) -> list[str]:
    """`count` fresh codes, formatted for display (`xxxx-xxxx-xx`), all different."""
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH)))
    return [_format(code) for code in codes]


def _format(code: str) -> str:
    parts, start = [], 0
    for size in _GROUPS:
        parts.append(code[start : start + size])
        start += size
    return "-".join(parts)


def normalize_code(typed: str) -> str | None:
    """The code's canonical form (10 characters, no dashes), or None when it cannot be one."""
    if len(typed) > 64:  # a code is 12 characters; don't translate a megabyte
        return None
    code = typed.lower().translate(_IGNORED).translate(_READ_AS)
    if len(code) != CODE_LENGTH or not set(code) <= _ALLOWED:
        return None
    return code


def hash_code(key: bytes, code: str, user_id: UUID) -> str:
    """The stored form of a code: hex HMAC-SHA256 (64 characters) of its canonical form.

    Args:
        key: the `recovery-code` purpose key.
        code: a code as generated (or as typed: it is normalised).
        user_id: its owner.

    Raises:
        ValueError: `code` is not a recovery code.
    """
    canonical = normalize_code(code)
    if canonical is None:
        raise ValueError("not a recovery code")
    return hmac.new(key, user_id.bytes + canonical.encode(), hashlib.sha256).hexdigest()


def lookup_hash(key: bytes, typed: str, user_id: UUID) -> str | None:
    """The hash to look up (and mark used) for what the user typed; None: malformed, no lookup."""
    try:
        return hash_code(key, typed, user_id)
    except ValueError:
        return None


def matching_hash(key: bytes, typed: str, user_id: UUID, unused_hashes: Iterable[str]) -> str | None:
    """Which of the user's unused stored hashes `typed` is, compared in constant time against
    every one of them (for a caller that loaded the set rather than querying by hash)."""
    wanted = lookup_hash(key, typed, user_id)
    if wanted is None:
        return None  # malformed input says nothing about the stored codes
    found: str | None = None
    for stored in unused_hashes:
        if hmac.compare_digest(stored.encode(), wanted.encode()):
            found = stored
    return found
